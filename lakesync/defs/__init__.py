"""The Dagster wiring: definitions generated from the configuration. Stages know nothing of it."""

from lakesync.defs.factory import LOCATION, build_definitions

__all__ = ["LOCATION", "build_definitions"]

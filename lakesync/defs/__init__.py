"""The Dagster wiring: definitions generated from the configuration. Stages know nothing of it."""

from lakesync.defs.factory import build_definitions

__all__ = ["build_definitions"]

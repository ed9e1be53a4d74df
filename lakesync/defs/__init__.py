"""The Dagster wiring: definitions generated from the configuration. Stages know nothing of it.

``build_definitions`` and ``LOCATION`` are imported when first used, so that what a Dagster
process loads from here alone (the instance's event log, :mod:`lakesync.defs.event_log`) does
not import the definitions' factory.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakesync.defs.factory import LOCATION, build_definitions

__all__ = ["LOCATION", "build_definitions"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lakesync.defs import factory  # noqa: PLC0415 - heavy: imported on first use

        return getattr(factory, name)
    msg = f"module 'lakesync.defs' has no attribute {name!r}"
    raise AttributeError(msg)

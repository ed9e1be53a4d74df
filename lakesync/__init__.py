"""lakesync: keep fragmented data lakes in sync with one Delta lakehouse, on Dagster.

``lakesync.query(sql)`` and ``lakesync.search(text)`` (:mod:`lakesync.api`) are imported when first
used, so ``import lakesync`` stays light.
"""

from typing import Any

__all__ = ["query", "search"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lakesync import api  # noqa: PLC0415 - heavy: imported on first use

        return getattr(api, name)
    msg = f"module 'lakesync' has no attribute {name!r}"
    raise AttributeError(msg)

"""lakesync: keep fragmented data lakes in sync with one Delta lakehouse, on Dagster.

``lakesync.query(sql)``, ``lakesync.search(text)``, ``lakesync.training_set(...)``,
``lakesync.feature_values(...)`` and ``lakesync.get_online_features(...)`` (:mod:`lakesync.api`)
are imported when first used, so ``import lakesync`` stays light.
"""

from typing import Any

__all__ = ["feature_values", "get_online_features", "query", "search", "training_set"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from lakesync import api  # noqa: PLC0415 - heavy: imported on first use

        return getattr(api, name)
    msg = f"module 'lakesync' has no attribute {name!r}"
    raise AttributeError(msg)

"""The online store: each served feature's latest values per entity, for lookups in milliseconds.

``lakehouse.online_store`` says where: an embedded SQLite file (by default ``<lakehouse>/_online/
features.sqlite`` for a lakehouse on local disk; :mod:`store_sqlite`) or a Redis server
(:mod:`store_redis`). After each build of a feature (``online: true``, with an entity: its
``group_by`` or a function's ``entity``) its table's version is published: only the touched
entities when the build was incremental and the store holds the version it started from, else
whole. How far the store is behind its feature
table is :func:`lag` (the feature asset's ``online_store_in_sync`` check).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.config.models import LakesyncConfig
from lakesync.config.storage import RedisOnlineStore
from lakesync.features.build import FeatureBuild, FeatureError, built_from, current_values
from lakesync.features.serving import OnlineStore, Published, Release
from lakesync.features.store_sqlite import SQLiteStore
from lakesync.state.lakehouse import Lakehouse


def store_path(config: LakesyncConfig) -> Path | None:
    """The SQLite file of the online store, or ``None`` (a Redis store, or none)."""
    setting = config.lakehouse.online_store
    if isinstance(setting, RedisOnlineStore):
        return None
    if setting is not None:
        return Path(setting)
    if "://" in config.lakehouse.uri:
        return None
    return Path(config.lakehouse.uri) / "_online" / "features.sqlite"


def has_store(config: LakesyncConfig) -> bool:
    return isinstance(config.lakehouse.online_store, RedisOnlineStore) or store_path(config) is not None


def store_kind(config: LakesyncConfig) -> str:
    return "redis" if isinstance(config.lakehouse.online_store, RedisOnlineStore) else "sqlite"


@functools.lru_cache(maxsize=8)
def _sqlite(path: str) -> SQLiteStore:
    return SQLiteStore(Path(path))


@functools.lru_cache(maxsize=8)
def _redis(settings: str) -> OnlineStore:
    from lakesync.features.store_redis import RedisStore  # noqa: PLC0415 - imported when configured

    return RedisStore(RedisOnlineStore.model_validate_json(settings))


def store_for(config: LakesyncConfig) -> OnlineStore | None:
    """The configured online store (kept open for the next call), or ``None``."""
    setting = config.lakehouse.online_store
    if isinstance(setting, RedisOnlineStore):
        return _redis(setting.model_dump_json())
    path = store_path(config)
    return None if path is None else _sqlite(str(path))


def served(config: LakesyncConfig, name: str) -> bool:
    feature = config.features[name]
    return feature.online and bool(feature.entity_keys) and has_store(config)


def lookup(config: LakesyncConfig, feature: str, entities: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
    """The latest values of ``feature`` for the entities (key column -> values, one per entity,
    or one for all); an entity the store does not hold comes back with nulls."""
    store = store_for(config)
    if store is None:
        msg = "this lakehouse has no online store: set lakehouse.online_store in lakesync.yaml"
        raise FeatureError(msg)
    return store.get(feature, entities)


def publish_feature(
    config: LakesyncConfig, name: str, lakehouse: Lakehouse, built: FeatureBuild | None = None
) -> Published | None:
    """Bring the store's copy of feature ``name`` to its table's current version (``None``: the
    feature is not served, or there is no store). ``built``: the build that made that version,
    whose touched entities are all that is written when the store holds the version before."""
    store = store_for(config)
    if store is None or not served(config, name):
        return None
    snapshot = lakehouse.open(lakehouse.feature_uri(name))
    if snapshot is None:
        return None
    version = snapshot.version()
    held = store.published(name)
    if held is not None and held.version == version:
        return held
    made_it = built is not None and built.delta_version == version
    inputs = built.inputs if built is not None and made_it else built_from(lakehouse, name) or {}
    release = Release(name, tuple(config.features[name].entity_keys), version, inputs)
    change = built.change if built is not None and made_it else None
    if change is not None and held is not None and held.version == change.since:
        done = store.apply(release, change)
        if done is not None:
            return done
    return store.publish(release, current_values(snapshot, config.features[name]).collect())


@dataclass(frozen=True)
class Lag:
    """How far the online store is behind its feature table."""

    feature_version: int
    store_version: int | None
    """``None``: never published."""
    seconds: float
    """In sync: how long after the feature's commit it was published; behind: since the first
    version it does not hold was committed."""

    @property
    def versions_behind(self) -> int:
        held = -1 if self.store_version is None else self.store_version
        return max(self.feature_version - held, 0)


def lag(config: LakesyncConfig, name: str, lakehouse: Lakehouse) -> Lag | None:
    """The store's lag behind feature ``name`` (``None``: not served, or no table yet)."""
    store = store_for(config)
    snapshot = lakehouse.open(lakehouse.feature_uri(name))
    if store is None or snapshot is None or not served(config, name):
        return None
    version = snapshot.version()
    held = store.published(name)
    store_version = None if held is None else held.version
    behind = version - (-1 if store_version is None else store_version)
    commits = {
        int(entry["version"]): datetime.fromtimestamp(int(entry["timestamp"]) / 1000, tz=UTC)
        for entry in snapshot.history(max(behind, 1))
        if "version" in entry and "timestamp" in entry
    }
    if behind <= 0 and held is not None:
        committed = commits.get(version, held.published_at)
        return Lag(version, store_version, max((held.published_at - committed).total_seconds(), 0.0))
    first_missing = commits.get(version - behind + 1) or min(commits.values(), default=datetime.now(tz=UTC))
    return Lag(version, store_version, (datetime.now(tz=UTC) - first_missing).total_seconds())

"""The online store: each feature table's latest values per entity, for lookups in milliseconds.

An embedded SQLite file (``lakehouse.online_store``; by default ``<lakehouse>/_online/
features.sqlite`` for a lakehouse on local disk). A feature is published whole after each build
into a new table swapped in one transaction, so a reader sees one version or the next, never a
mix; ``_lakesync_online`` records which feature version (and input versions) each table holds
and when it was published. Keys are the feature's ``group_by`` (its entity), the primary key.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.config.models import LakesyncConfig
from lakesync.features.build import FeatureError, built_from
from lakesync.state.lakehouse import Lakehouse

META = "_lakesync_online"


def store_path(config: LakesyncConfig) -> Path | None:
    """Where the online store is, or ``None`` (a lakehouse on an object store, none configured)."""
    if config.lakehouse.online_store is not None:
        return Path(config.lakehouse.online_store)
    if "://" in config.lakehouse.uri:
        return None
    return Path(config.lakehouse.uri) / "_online" / "features.sqlite"


@dataclass(frozen=True)
class Published:
    feature: str
    version: int | None
    """The feature table's Delta version the store holds."""
    inputs: dict[str, int]
    published_at: datetime
    rows: int
    entity: tuple[str, ...]


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {META} (feature TEXT PRIMARY KEY, version INTEGER, inputs TEXT, "
        "published_at TEXT, rows INTEGER, entity TEXT, schema TEXT)"
    )
    return connection


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return value


@dataclass(frozen=True)
class Release:
    """One version of a feature table, as published."""

    feature: str
    entity: tuple[str, ...]
    """Its key columns (``group_by``)."""
    version: int | None
    inputs: Mapping[str, int]


def publish(path: Path, release: Release, frame: pl.DataFrame) -> Published:
    """Replace the feature's values in the store with ``frame`` (one row per entity)."""
    feature, keys = release.feature, list(release.entity)
    if keys and frame.select(keys).is_duplicated().any():
        msg = f"feature {feature!r}: more than one row per {', '.join(keys)}: it cannot be served by entity"
        raise FeatureError(msg)
    schema = {name: str(dtype) for name, dtype in frame.schema.items()}
    staging = _quote(f"{feature}__staging")
    columns = ", ".join(_quote(c) for c in frame.columns)
    key = f", PRIMARY KEY ({', '.join(_quote(k) for k in keys)})" if keys else ""
    now = datetime.now(tz=UTC)
    connection = _connect(path)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"DROP TABLE IF EXISTS {staging}")
        connection.execute(f"CREATE TABLE {staging} ({columns}{key})")
        marks = ", ".join("?" for _ in frame.columns)
        connection.executemany(
            f"INSERT INTO {staging} VALUES ({marks})",  # noqa: S608 - names quoted, values bound
            ([_cell(v) for v in row] for row in frame.iter_rows()),
        )
        connection.execute(f"DROP TABLE IF EXISTS {_quote(feature)}")
        connection.execute(f"ALTER TABLE {staging} RENAME TO {_quote(feature)}")
        connection.execute(
            f"INSERT OR REPLACE INTO {META} VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (
                feature,
                release.version,
                json.dumps(dict(release.inputs)),
                now.isoformat(),
                frame.height,
                json.dumps(keys),
                json.dumps(schema),
            ),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()
    return Published(feature, release.version, dict(release.inputs), now, frame.height, tuple(keys))


def published(path: Path, feature: str) -> Published | None:
    """What the store holds of ``feature`` (``None``: never published)."""
    if not path.exists():
        return None
    connection = _connect(path)
    try:
        row = connection.execute(
            "SELECT version, inputs, published_at, rows, entity FROM _lakesync_online WHERE feature = ?",
            (feature,),
        ).fetchone()
    finally:
        connection.close()
    if row is None:
        return None
    version, inputs, at, rows, entity = row
    return Published(
        feature, version, json.loads(inputs), datetime.fromisoformat(at), rows, tuple(json.loads(entity))
    )


_SIMPLE_TYPES: dict[str, pl.DataType] = {
    str(t): t
    for t in (
        pl.Int8(), pl.Int16(), pl.Int32(), pl.Int64(), pl.UInt8(), pl.UInt16(), pl.UInt32(), pl.UInt64(),
        pl.Float32(), pl.Float64(), pl.String(), pl.Boolean(), pl.Date(),
    )
}  # fmt: skip
_DATETIME = re.compile(r"^Datetime\(time_unit='(ns|us|ms)', time_zone=(?:'([^']+)'|None)\)$")
_DECIMAL = re.compile(r"^Decimal\(precision=(\d+), scale=(\d+)\)$")


def _dtype(text: str) -> pl.DataType:
    """A polars dtype from its ``str()`` (the store keeps each column's); text when unknown."""
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    if match := _DATETIME.match(text):
        return pl.Datetime(match.group(1), match.group(2))  # type: ignore[arg-type]
    if match := _DECIMAL.match(text):
        return pl.Decimal(int(match.group(1)), int(match.group(2)))
    return pl.String()


@dataclass(frozen=True)
class _Served:
    """What the store says about one feature: when published, its keys, its columns' types."""

    published_at: str
    keys: tuple[str, ...]
    schema: dict[str, pl.DataType]
    query: str


class OnlineStore:
    """Lookups in one store through one open connection (a serving process keeps one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._served: dict[str, _Served] = {}
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            if not self.path.exists():
                msg = f"the online store {self.path} does not exist yet: sync to build the feature tables"
                raise FeatureError(msg)
            self._connection = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        return self._connection

    def _describe(self, connection: sqlite3.Connection, feature: str) -> _Served:
        """The feature's keys and types, read again only when it was published again."""
        row = connection.execute(
            "SELECT published_at, entity, schema FROM _lakesync_online WHERE feature = ?", (feature,)
        ).fetchone()
        if row is None:
            msg = f"feature {feature!r} is not in the online store {self.path} (built yet? online: true?)"
            raise FeatureError(msg)
        known = self._served.get(feature)
        if known is not None and known.published_at == row[0]:
            return known
        keys = tuple(json.loads(row[1]))
        where = " AND ".join(f"{_quote(k)} = ?" for k in keys)
        query = f"SELECT * FROM {_quote(feature)} WHERE {where}"  # noqa: S608 - names quoted, values bound
        served = _Served(row[0], keys, {k: _dtype(v) for k, v in json.loads(row[2]).items()}, query)
        self._served[feature] = served
        return served

    def get(self, feature: str, entities: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
        """The latest values of ``feature`` for the entities (key column -> values, one per
        entity, or one for all); an entity the store does not hold comes back with nulls."""
        with self._lock:
            connection = self._open()
            served = self._describe(connection, feature)
            keys, schema = served.keys, served.schema
            if sorted(entities) != sorted(keys):
                msg = f"feature {feature!r} is looked up by {', '.join(keys)}, not {', '.join(entities)}"
                raise FeatureError(msg)
            lengths = {len(entities[k]) for k in keys} - {1}
            if len(lengths) > 1:
                msg = f"feature {feature!r}: give each key as many values (or one, for every entity)"
                raise FeatureError(msg)
            count = max(lengths, default=1)
            columns = {k: list(entities[k]) * (count if len(entities[k]) == 1 else 1) for k in keys}
            asked = pl.DataFrame(columns).with_columns(
                [pl.col(k).cast(schema[k], strict=False) for k in keys]
            )
            rows = []
            for values in asked.iter_rows():
                row = connection.execute(served.query, [_cell(v) for v in values]).fetchone()
                rows.append(row if row is not None else (*values, *([None] * (len(schema) - len(keys)))))
        stored = {n: pl.String() if _is_text_stored(t) else t for n, t in schema.items()}
        raw = pl.DataFrame(rows, schema=stored, orient="row")
        return raw.with_columns([_restore(n, t) for n, t in schema.items() if _is_text_stored(t)])


@functools.lru_cache(maxsize=8)
def _store(path: str) -> OnlineStore:
    return OnlineStore(Path(path))


def lookup(path: Path, feature: str, entities: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
    """:meth:`OnlineStore.get` on the store at ``path`` (kept open for the next lookup)."""
    return _store(str(path)).get(feature, entities)


def _is_text_stored(dtype: pl.DataType) -> bool:
    return dtype.is_temporal() or isinstance(dtype, pl.Decimal) or dtype.is_nested()


def _restore(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        return column.str.to_datetime(time_unit=dtype.time_unit, time_zone=dtype.time_zone).alias(name)
    if dtype == pl.Date:
        return column.str.to_date().alias(name)
    return column.cast(dtype, strict=False).alias(name)


def publish_feature(config: LakesyncConfig, name: str, lakehouse: Lakehouse) -> Published | None:
    """Bring the store's copy of feature ``name`` to its table's current version (``None``: the
    feature is not served, or there is no store)."""
    path = store_path(config)
    feature = config.features[name]
    if path is None or not feature.online or not feature.group_by:
        return None
    snapshot = lakehouse.open(lakehouse.feature_uri(name))
    if snapshot is None:
        return None
    held = published(path, name)
    if held is not None and held.version == snapshot.version():
        return held
    frame = pl.read_delta(snapshot)
    release = Release(name, tuple(feature.group_by), snapshot.version(), built_from(lakehouse, name) or {})
    return publish(path, release, frame)

"""The embedded online store: one SQLite file, a table per feature keyed by its entity.

Published whole into a new table swapped in one transaction (a reader sees one version or the
next); an incremental build's touched entities replaced in one transaction. ``_lakesync_online``
records which feature version (and input versions) each table holds and when it was published.
Lookups go through one kept-open read-only connection, with each feature's keys and types
cached until it is published again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.features.build import FeatureError
from lakesync.features.incremental import Change
from lakesync.features.serving import (
    Published,
    Release,
    answer,
    asked,
    cell,
    dtype_of,
    one_row_per_entity,
    schema_of,
)

META = "_lakesync_online"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _record(connection: sqlite3.Connection, release: Release, rows: int, schema: str, now: datetime) -> None:
    connection.execute(
        f"INSERT OR REPLACE INTO {META} VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - our own table
        (
            release.feature,
            release.version,
            json.dumps(dict(release.inputs)),
            now.isoformat(),
            rows,
            json.dumps(list(release.entity)),
            schema,
        ),
    )


class SQLiteStore:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._reader: sqlite3.Connection | None = None
        self._served: dict[str, _Served] = {}
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {META} (feature TEXT PRIMARY KEY, version INTEGER, inputs TEXT, "
            "published_at TEXT, rows INTEGER, entity TEXT, schema TEXT)"
        )
        return connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), rolled back on any error."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            if connection.in_transaction:
                connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def publish(self, release: Release, frame: pl.DataFrame) -> Published:
        """Replace the feature's values with ``frame`` (one row per entity)."""
        feature, keys = release.feature, list(release.entity)
        one_row_per_entity(feature, keys, frame)
        staging = _quote(f"{feature}__staging")
        columns = ", ".join(_quote(c) for c in frame.columns)
        key = f", PRIMARY KEY ({', '.join(_quote(k) for k in keys)})" if keys else ""
        now = datetime.now(tz=UTC)
        with self._transaction() as connection:
            connection.execute(f"DROP TABLE IF EXISTS {staging}")
            connection.execute(f"CREATE TABLE {staging} ({columns}{key})")
            marks = ", ".join("?" for _ in frame.columns)
            connection.executemany(
                f"INSERT INTO {staging} VALUES ({marks})",  # noqa: S608 - names quoted, values bound
                ([cell(v) for v in row] for row in frame.iter_rows()),
            )
            connection.execute(f"DROP TABLE IF EXISTS {_quote(feature)}")
            connection.execute(f"ALTER TABLE {staging} RENAME TO {_quote(feature)}")
            _record(connection, release, frame.height, json.dumps(schema_of(frame)), now)
        return Published(
            feature, release.version, dict(release.inputs), now, frame.height, tuple(keys), "whole"
        )

    def apply(self, release: Release, change: Change) -> Published | None:
        feature, keys = release.feature, list(release.entity)
        one_row_per_entity(feature, keys, change.rows)
        schema = json.dumps(schema_of(change.rows))
        now = datetime.now(tz=UTC)
        with self._transaction() as connection:
            held = connection.execute(
                f"SELECT version, schema FROM {META} WHERE feature = ?",  # noqa: S608 - our own table
                (feature,),
            ).fetchone()
            if held is None or held[0] != change.since or held[1] != schema:
                connection.execute("ROLLBACK")  # nothing written: the caller publishes whole
                return None
            where = " AND ".join(f"{_quote(k)} IS ?" for k in keys)  # IS: a null key too
            touched = pl.concat([change.gone.select(keys), change.rows.select(keys)], how="vertical_relaxed")
            connection.executemany(
                f"DELETE FROM {_quote(feature)} WHERE {where}",  # noqa: S608 - names quoted, values bound
                ([cell(v) for v in row] for row in touched.iter_rows()),
            )
            marks = ", ".join("?" for _ in change.rows.columns)
            names = ", ".join(_quote(c) for c in change.rows.columns)
            connection.executemany(
                f"INSERT INTO {_quote(feature)} ({names}) VALUES ({marks})",  # noqa: S608
                ([cell(v) for v in row] for row in change.rows.iter_rows()),
            )
            _record(connection, release, change.total, schema, now)
        return Published(
            feature, release.version, dict(release.inputs), now, change.total, tuple(keys), "incremental"
        )

    def published(self, feature: str) -> Published | None:
        if not self.path.exists():
            return None
        connection = self._connect()
        try:
            row = connection.execute(
                f"SELECT version, inputs, published_at, rows, entity FROM {META} WHERE feature = ?",  # noqa: S608
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

    def _open(self) -> sqlite3.Connection:
        if self._reader is None:
            if not self.path.exists():
                msg = f"the online store {self.path} does not exist yet: sync to build the feature tables"
                raise FeatureError(msg)
            self._reader = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        return self._reader

    def _describe(self, connection: sqlite3.Connection, feature: str) -> _Served:
        """The feature's keys and types, read again only when it was published again."""
        row = connection.execute(
            f"SELECT published_at, entity, schema FROM {META} WHERE feature = ?",  # noqa: S608
            (feature,),
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
        served = _Served(row[0], keys, {k: dtype_of(v) for k, v in json.loads(row[2]).items()}, query)
        self._served[feature] = served
        return served

    def get(self, feature: str, entities: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
        """The latest values for the entities (nulls for one the store does not hold)."""
        with self._lock:
            connection = self._open()
            served = self._describe(connection, feature)
            wanted = asked(feature, served.keys, served.schema, entities)
            rows = []
            width = len(served.schema) - len(served.keys)
            for values in wanted.iter_rows():
                row = connection.execute(served.query, [cell(v) for v in values]).fetchone()
                rows.append(row if row is not None else (*values, *([None] * width)))
        return answer(rows, served.schema)


class _Served:
    """What the store says about one feature: when published, its keys, its columns' types."""

    def __init__(self, published_at: str, keys: tuple[str, ...], schema: dict[str, pl.DataType], query: str):
        self.published_at, self.keys, self.schema, self.query = published_at, keys, schema, query

"""An online store on a Redis server: each entity a hash, each feature a generation of them.

Keys (``<prefix>`` from the config, so several lakehouses can share a server):

- ``<prefix>:<feature>:meta``: a hash naming the generation served (``gen``), the feature
  version it holds, its input versions, when it was published, its rows, keys and column types;
- ``<prefix>:<feature>:<gen>:<entity>``: one entity's row as a JSON object, as polars' JSON-lines
  writer writes it (times and decimals as text, restored from the column types when read);
  ``<entity>`` is its key values as polars writes them as text, joined by ``\x1f``.

A whole publish writes a new generation, then swaps ``meta`` to it in one command, then
unlinks the other generations (a reader sees one version or the next; a publish that died
half-way leaves a generation the next one removes). An incremental build's touched entities are
replaced in the served generation in one ``MULTI``, checked against the version it was computed
from (``WATCH``). A lookup is one round trip: the served generation's stamp and an ``MGET``.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import redis

from lakesync.config.storage import RedisOnlineStore
from lakesync.features.build import FeatureError
from lakesync.features.incremental import Change
from lakesync.features.serving import (
    FEW_ROWS,
    OnlineStoreError,
    Published,
    Release,
    answer,
    asked,
    cell,
    dtype_of,
    one_row_per_entity,
    restore,
    schema_of,
)

CHUNK = 5_000
"""Entities written per command (``MSET``) and per pipeline round trip."""


def _lines(frame: pl.DataFrame) -> list[str]:
    return frame.write_ndjson().splitlines() if frame.height else []


def _names(frame: pl.DataFrame, keys: Sequence[str]) -> list[str]:
    """Each row's entity as text: its key values as polars writes them, ``\\N`` for null."""
    if frame.height <= FEW_ROWS and all(
        frame.schema[k].is_integer() or frame.schema[k] == pl.String for k in keys
    ):
        # (a lookup's path: Python writes whole numbers and text as polars does)
        return [
            "\x1f".join("\\N" if v is None else str(v) for v in row) for row in frame.select(keys).iter_rows()
        ]
    parts = [pl.col(k).cast(pl.String).fill_null("\\N") for k in keys]
    return frame.select(pl.concat_str(parts, separator="\x1f")).to_series().to_list() if frame.height else []


def _stored_schema(schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
    return {n: pl.String() if t.is_temporal() or isinstance(t, pl.Decimal) else t for n, t in schema.items()}


class RedisStore:
    kind = "redis"

    def __init__(self, settings: RedisOnlineStore) -> None:
        self.where = f"{settings.redis} (keys {settings.prefix}:*)"
        self.prefix = settings.prefix
        password = os.environ.get(settings.password.env) if settings.password is not None else None
        if settings.password is not None and password is None:
            msg = (
                f"the online store {settings.redis} needs its password in ${settings.password.env}, "
                "which is not set"
            )
            raise OnlineStoreError(msg)
        self._client = redis.Redis.from_url(
            settings.redis, password=password, username=settings.username, decode_responses=True,
            socket_timeout=10, socket_connect_timeout=5,
        )  # fmt: skip
        self._served: dict[str, tuple[str, str, tuple[str, ...], dict[str, pl.DataType]]] = {}
        self._lock = threading.Lock()

    def _meta(self, feature: str) -> str:
        return f"{self.prefix}:{feature}:meta"

    def _entity(self, feature: str, generation: str, key: str) -> str:
        return f"{self.prefix}:{feature}:{generation}:{key}"

    def _failed(self, exc: redis.RedisError, doing: str) -> OnlineStoreError:
        return OnlineStoreError(f"{self.where} failed while {doing}: {exc}")

    def _record(
        self, release: Release, generation: str, rows: int, schema: str, now: datetime
    ) -> dict[Any, Any]:
        return {
            "gen": generation,
            "version": "" if release.version is None else str(release.version),
            "inputs": json.dumps(dict(release.inputs)),
            "published_at": now.isoformat(),
            "rows": str(rows),
            "entity": json.dumps(list(release.entity)),
            "schema": schema,
        }

    def _entities(self, feature: str, generation: str, frame: pl.DataFrame, keys: Sequence[str]) -> list[str]:
        return [self._entity(feature, generation, k) for k in _names(frame, keys)]

    def publish(self, release: Release, frame: pl.DataFrame) -> Published:
        feature, keys = release.feature, list(release.entity)
        one_row_per_entity(feature, keys, frame)
        generation = uuid.uuid4().hex[:12]
        now = datetime.now(tz=UTC)
        try:
            names, rows = self._entities(feature, generation, frame, keys), _lines(frame)
            pipe = self._client.pipeline(transaction=False)
            for n, start in enumerate(range(0, len(rows), CHUNK), start=1):
                pipe.mset(dict(zip(names[start : start + CHUNK], rows[start : start + CHUNK], strict=True)))
                if n % 8 == 0:
                    pipe.execute()
            pipe.execute()
            self._client.hset(
                self._meta(feature),
                mapping=self._record(release, generation, frame.height, json.dumps(schema_of(frame)), now),
            )
            self._forget_others(feature, generation)
        except redis.RedisError as exc:
            raise self._failed(exc, f"publishing {feature!r}") from exc
        return Published(
            feature, release.version, dict(release.inputs), now, frame.height, tuple(keys), "whole"
        )

    def _forget_others(self, feature: str, generation: str) -> None:
        """Unlink every generation of ``feature`` but the one served."""
        stale: list[str] = []
        keep = (self._meta(feature), f"{self.prefix}:{feature}:{generation}:")
        for key in self._client.scan_iter(match=f"{self.prefix}:{feature}:*", count=CHUNK):
            if key != keep[0] and not key.startswith(keep[1]):
                stale.append(key)
                if len(stale) >= CHUNK:
                    self._client.unlink(*stale)
                    stale.clear()
        if stale:
            self._client.unlink(*stale)

    def apply(self, release: Release, change: Change) -> Published | None:
        feature, keys = release.feature, list(release.entity)
        one_row_per_entity(feature, keys, change.rows)
        schema = json.dumps(schema_of(change.rows))
        now = datetime.now(tz=UTC)
        meta = self._meta(feature)
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.watch(meta)  # type: ignore[no-untyped-call]
                generation, version, stored = (
                    None if v is None else str(v) for v in pipe.hmget(meta, ["gen", "version", "schema"])
                )
                if generation is None or version != str(change.since) or stored != schema:
                    return None
                pipe.multi()
                gone = self._entities(feature, generation, change.gone, keys)
                if gone:
                    pipe.delete(*gone)
                names, rows = self._entities(feature, generation, change.rows, keys), _lines(change.rows)
                for start in range(0, len(rows), CHUNK):
                    pipe.mset(
                        dict(zip(names[start : start + CHUNK], rows[start : start + CHUNK], strict=True))
                    )
                pipe.hset(meta, mapping=self._record(release, generation, change.total, schema, now))
                pipe.execute()
        except redis.WatchError:  # published by someone else meanwhile: publish whole
            return None
        except redis.RedisError as exc:
            raise self._failed(exc, f"updating {feature!r}") from exc
        return Published(
            feature, release.version, dict(release.inputs), now, change.total, tuple(keys), "incremental"
        )

    def published(self, feature: str) -> Published | None:
        try:
            meta: dict[str, str] = self._client.hgetall(self._meta(feature))  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise self._failed(exc, f"reading what it holds of {feature!r}") from exc
        if not meta:
            return None
        return Published(
            feature,
            int(meta["version"]) if meta["version"] else None,
            json.loads(meta["inputs"]),
            datetime.fromisoformat(meta["published_at"]),
            int(meta["rows"]),
            tuple(json.loads(meta["entity"])),
        )

    def _describe(self, feature: str) -> tuple[str, str, tuple[str, ...], dict[str, pl.DataType]]:
        meta: dict[str, str] = self._client.hgetall(self._meta(feature))  # type: ignore[assignment]
        if not meta:
            msg = f"feature {feature!r} is not in the online store {self.where} (built yet? online: true?)"
            raise FeatureError(msg)
        schema = {k: dtype_of(v) for k, v in json.loads(meta["schema"]).items()}
        served = (meta["gen"], meta["published_at"], tuple(json.loads(meta["entity"])), schema)
        self._served[feature] = served
        return served

    def get(self, feature: str, entities: Mapping[str, Sequence[Any]]) -> pl.DataFrame:
        """The latest values for the entities (nulls for one the store does not hold)."""
        with self._lock:
            try:
                served = self._served.get(feature) or self._describe(feature)
                for _ in range(3):  # published again between two lookups: read its description
                    generation, published_at, keys, schema = served
                    wanted = asked(feature, keys, schema, entities)
                    pipe = self._client.pipeline(transaction=False)
                    pipe.hget(self._meta(feature), "published_at")
                    pipe.mget(self._entities(feature, generation, wanted, keys))
                    now, found = pipe.execute()
                    if now == published_at:
                        break
                    served = self._describe(feature)
            except redis.RedisError as exc:
                raise self._failed(exc, f"looking up {feature!r}") from exc
        rows = []
        for row, key in zip(found, wanted.iter_rows(), strict=True):
            # an entity the store does not hold: its keys, the rest nulls
            values = (
                json.loads(row) if row is not None else {k: cell(v) for k, v in zip(keys, key, strict=True)}
            )
            rows.append(tuple(values.get(name) for name in schema))
        if len(rows) <= FEW_ROWS:
            return answer(rows, schema)
        return restore(pl.DataFrame(rows, schema=_stored_schema(schema), orient="row"), schema)

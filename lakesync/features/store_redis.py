"""An online store on a Redis server: each entity a hash, each feature a generation of them.

Keys (``<prefix>`` from the config, so several lakehouses can share a server):

- ``<prefix>:<feature>:meta``: a hash naming the generation served (``gen``), the feature
  version it holds, its input versions, when it was published, its rows, keys and column types;
- ``<prefix>:<feature>:<gen>:<entity>``: one entity's values (``<entity>`` its key values as
  JSON), one field per non-null column, plus ``_`` so an entity of nulls still exists.

A whole publish writes a new generation, then swaps ``meta`` to it in one command, then
unlinks the other generations (a reader sees one version or the next; a publish that died
half-way leaves a generation the next one removes). An incremental build's touched entities are
replaced in the served generation in one ``MULTI``, checked against the version it was computed
from (``WATCH``). A lookup is one round trip: the served generation and the entities' hashes.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import redis

from lakesync.config.storage import RedisOnlineStore
from lakesync.features.build import FeatureError
from lakesync.features.incremental import Change
from lakesync.features.serving import (
    OnlineStoreError,
    Published,
    Release,
    answer,
    asked,
    cell,
    dtype_of,
    entity_key,
    one_row_per_entity,
    schema_of,
)

CHUNK = 5_000
"""Entities written per pipeline round trip."""
PRESENT = "_"


def _text(value: Any) -> str:
    found = cell(value)
    if isinstance(found, bool):
        return "true" if found else "false"
    if isinstance(found, float):
        return repr(found)
    return str(found)


def _typed(text: str | None, dtype: pl.DataType) -> Any:
    """A stored text as the number or text :func:`serving.answer` expects."""
    if text is None:
        return None
    if dtype == pl.Boolean:
        return text == "true"
    if dtype.is_integer():
        return int(text)
    if dtype.is_float():
        return float(text)
    return text


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

    def _fields(self, row: dict[str, Any]) -> dict[Any, Any]:
        fields: dict[Any, Any] = {name: _text(value) for name, value in row.items() if value is not None}
        fields[PRESENT] = ""
        return fields

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

    def _rows(self, frame: pl.DataFrame, keys: Sequence[str]) -> Iterator[tuple[str, dict[Any, Any]]]:
        for row in frame.iter_rows(named=True):
            yield entity_key([row[k] for k in keys]), self._fields(row)

    def publish(self, release: Release, frame: pl.DataFrame) -> Published:
        feature, keys = release.feature, list(release.entity)
        one_row_per_entity(feature, keys, frame)
        generation = uuid.uuid4().hex[:12]
        now = datetime.now(tz=UTC)
        try:
            pipe = self._client.pipeline(transaction=False)
            for n, (key, fields) in enumerate(self._rows(frame, keys), start=1):
                pipe.hset(self._entity(feature, generation, key), mapping=fields)
                if n % CHUNK == 0:
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
                for values in change.gone.select(keys).iter_rows():
                    pipe.delete(self._entity(feature, generation, entity_key(values)))
                for key, fields in self._rows(change.rows, keys):
                    entity = self._entity(feature, generation, key)
                    pipe.delete(entity)
                    pipe.hset(entity, mapping=fields)
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
                    for values in wanted.iter_rows():
                        pipe.hgetall(self._entity(feature, generation, entity_key(values)))
                    now, *found = pipe.execute()
                    if now == published_at:
                        break
                    served = self._describe(feature)
            except redis.RedisError as exc:
                raise self._failed(exc, f"looking up {feature!r}") from exc
        rows = []
        for values, fields in zip(wanted.iter_rows(), found, strict=True):
            if fields:
                rows.append(tuple(_typed(fields.get(name), dtype) for name, dtype in schema.items()))
            else:
                rows.append((*values, *([None] * (len(schema) - len(keys)))))
        return answer(rows, schema)

"""What every online store shares: what is published, what a lookup asks, how values are kept.

A store (:mod:`store_sqlite`, :mod:`store_redis`) holds each served feature's latest values per
entity (its ``group_by``, or a function's ``entity``) and, beside them, which feature version it
holds (and the input versions, when it was published, the columns' types). A feature is
published whole (a reader sees one version or the next, never a mix) or, after an incremental
build, by applying only the touched entities' rows on top of the version it holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

import polars as pl

from lakesync.features.build import FeatureError
from lakesync.features.incremental import Change


class OnlineStoreError(FeatureError):
    """The online store cannot be read or written (not reachable, refused)."""


@dataclass(frozen=True)
class Release:
    """One version of a feature table, as published."""

    feature: str
    entity: tuple[str, ...]
    """Its key columns (the feature's entity)."""
    version: int | None
    inputs: Mapping[str, int]


@dataclass(frozen=True)
class Published:
    feature: str
    version: int | None
    """The feature table's Delta version the store holds."""
    inputs: dict[str, int]
    published_at: datetime
    rows: int
    entity: tuple[str, ...]
    how: str = "held"
    """``whole`` (every entity written), ``incremental`` (only the touched ones) or ``held``
    (the store already held this version)."""


class OnlineStore(Protocol):
    kind: str
    """``sqlite`` or ``redis`` (the asset's kind in Dagster)."""
    where: str
    """Where it is, as shown to people (never a secret)."""

    def publish(self, release: Release, frame: pl.DataFrame) -> Published: ...

    def apply(self, release: Release, change: Change) -> Published | None:
        """``change`` on top of the version it was computed from; ``None`` (nothing written)
        when the store does not hold that version or the columns differ: publish whole."""
        ...

    def published(self, feature: str) -> Published | None: ...

    def get(self, feature: str, entities: Mapping[str, Sequence[Any]]) -> pl.DataFrame: ...


def schema_of(frame: pl.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.schema.items()}


def one_row_per_entity(feature: str, keys: Sequence[str], frame: pl.DataFrame) -> None:
    if keys and frame.select(keys).is_duplicated().any():
        msg = f"feature {feature!r}: more than one row per {', '.join(keys)}: it cannot be served by entity"
        raise FeatureError(msg)


def cell(value: Any) -> Any:
    """A value as a store keeps it: numbers and text as they are, the rest as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return value


_SIMPLE_TYPES: dict[str, pl.DataType] = {
    str(t): t
    for t in (
        pl.Int8(), pl.Int16(), pl.Int32(), pl.Int64(), pl.UInt8(), pl.UInt16(), pl.UInt32(), pl.UInt64(),
        pl.Float32(), pl.Float64(), pl.String(), pl.Boolean(), pl.Date(),
    )
}  # fmt: skip
_DATETIME = re.compile(r"^Datetime\(time_unit='(ns|us|ms)', time_zone=(?:'([^']+)'|None)\)$")
_DECIMAL = re.compile(r"^Decimal\(precision=(\d+), scale=(\d+)\)$")


def dtype_of(text: str) -> pl.DataType:
    """A polars dtype from its ``str()`` (the store keeps each column's); text when unknown."""
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    if match := _DATETIME.match(text):
        return pl.Datetime(match.group(1), match.group(2))  # type: ignore[arg-type]
    if match := _DECIMAL.match(text):
        return pl.Decimal(int(match.group(1)), int(match.group(2)))
    return pl.String()


def asked(
    feature: str,
    keys: Sequence[str],
    schema: Mapping[str, pl.DataType],
    entities: Mapping[str, Sequence[Any]],
) -> pl.DataFrame:
    """The entities asked for, one row each, typed as the feature's keys."""
    if sorted(entities) != sorted(keys):
        msg = f"feature {feature!r} is looked up by {', '.join(keys)}, not {', '.join(entities)}"
        raise FeatureError(msg)
    lengths = {len(entities[k]) for k in keys} - {1}
    if len(lengths) > 1:
        msg = f"feature {feature!r}: give each key as many values (or one, for every entity)"
        raise FeatureError(msg)
    count = max(lengths, default=1)
    columns = {k: list(entities[k]) * (count if len(entities[k]) == 1 else 1) for k in keys}
    return pl.DataFrame(columns).with_columns([pl.col(k).cast(schema[k], strict=False) for k in keys])


FEW_ROWS = 64
"""Up to this many rows are typed in Python (faster than polars' per-call cost for a lookup)."""


def _python_value(value: Any, dtype: pl.DataType) -> Any:
    if not isinstance(value, str) or dtype == pl.String:
        return value
    if isinstance(dtype, pl.Datetime):
        return datetime.fromisoformat(value)
    if dtype == pl.Date:
        return date.fromisoformat(value)
    if isinstance(dtype, pl.Decimal):
        return Decimal(value)
    if dtype.is_nested():
        return json.loads(value)
    return value


def answer(rows: list[tuple[Any, ...]], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Rows read back (numbers as numbers, times, decimals and nested values as text) typed as
    the feature's columns."""
    if len(rows) <= FEW_ROWS:
        types = list(schema.values())
        typed = [tuple(_python_value(v, t) for v, t in zip(row, types, strict=True)) for row in rows]
        return pl.DataFrame(typed, schema=dict(schema), orient="row")
    stored = {n: pl.String() if _is_text_stored(t) else t for n, t in schema.items()}
    return restore(pl.DataFrame(rows, schema=stored, orient="row"), schema)


def restore(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """``frame``'s columns kept as text (times, decimals, nested values) typed as ``schema``."""
    texts = [n for n, t in schema.items() if frame.schema[n] == pl.String and t != pl.String]
    return frame.with_columns([_restore(n, schema[n]) for n in texts])


def _is_text_stored(dtype: pl.DataType) -> bool:
    return dtype.is_temporal() or isinstance(dtype, pl.Decimal) or dtype.is_nested()


def _restore(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        return column.str.to_datetime(time_unit=dtype.time_unit, time_zone=dtype.time_zone).alias(name)
    if dtype == pl.Date:
        return column.str.to_date().alias(name)
    return column.cast(dtype, strict=False).alias(name)

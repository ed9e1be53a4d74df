"""A feature table keeps its history: each entity's values with the time they became current.

An aggregation feature (``group_by`` + ``aggregations``) is stored as rows of its entity's
values stamped ``_lakesync_valid_from`` (the build that computed them): a build *appends* only
the entities whose values changed, and an entity left with no input row gets a row marked
``_lakesync_removed``. So an update after a small file writes a few rows however large the
table, and the values current at any time can be read back (:func:`current`).

The table is rewritten whole (its history starts again) only when the feature's definition
changed, or when it is built for the first time. A feature computed by a ``function`` keeps
its history the same way when it names its ``entity`` (its result is computed whole, then only
the changed entities are appended); without one it is rewritten whole at every build.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl

VALID_FROM = "_lakesync_valid_from"
REMOVED = "_lakesync_removed"
COLUMNS = (VALID_FROM, REMOVED)
UTC_TIME = pl.Datetime("us", "UTC")


def stamp(rows: pl.DataFrame, at: datetime, *, removed: bool = False) -> pl.DataFrame:
    """``rows`` with the time they became current (and whether they are a removal)."""
    return rows.with_columns(pl.lit(at, UTC_TIME).alias(VALID_FROM), pl.lit(removed).alias(REMOVED))


def next_stamp(previous: datetime | None, now: datetime | None = None) -> datetime:
    """The time a build's rows become current: now, but always after the previous build's (a
    clock that went back on another host must not reorder the history)."""
    now = now or datetime.now(tz=UTC)
    if previous is not None and now <= previous:
        return previous + timedelta(microseconds=1)
    return now


def has_history(columns: Sequence[str]) -> bool:
    return VALID_FROM in columns


def current(history: pl.LazyFrame, keys: Sequence[str], *, as_of: datetime | None = None) -> pl.LazyFrame:
    """The feature's values as they were current at ``as_of`` (default: now): each entity's
    latest row at or before it, unless that row is a removal; sorted by the entity."""
    names = history.collect_schema().names()
    if not has_history(names):  # written by a lakesync without history: it is the current values
        return history
    if as_of is not None:
        history = history.filter(pl.col(VALID_FROM) <= pl.lit(as_of, UTC_TIME))
    if keys:
        latest = history.filter(pl.col(VALID_FROM) == pl.col(VALID_FROM).max().over(list(keys)))
    else:
        latest = history.filter(pl.col(VALID_FROM) == pl.col(VALID_FROM).max())
    found = latest.filter(~pl.col(REMOVED)).drop(list(COLUMNS))
    return found.sort(list(keys)) if keys else found


def values(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without the history's own columns."""
    return frame.drop([c for c in COLUMNS if c in frame.columns])


FLOAT_TOLERANCE = 1e-9
"""Relative difference below which two floats are the same value: a sum kept up to date and
one computed whole differ in their last bits, which is not a change of the feature."""


def _differs(new: pl.Expr, old: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if not dtype.is_float():
        return new.ne_missing(old)
    close = (new - old).abs() <= FLOAT_TOLERANCE * pl.max_horizontal(new.abs(), old.abs())
    same = close | (new.is_nan() & old.is_nan())
    return pl.when(new.is_not_null() & old.is_not_null()).then(~same).otherwise(new.ne_missing(old))


def changed(
    stored: pl.DataFrame, rows: pl.DataFrame, touched: pl.DataFrame, keys: Sequence[str], at: datetime
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """What a build appends: the ``rows`` (new values of the ``touched`` entities) that differ
    from the ``stored`` current values, stamped ``at``, and a removal for each stored entity
    that was touched and has no row any more. Returns (rows to append, the changed rows, the
    removed entities' keys)."""
    keys = list(keys)
    names = [c for c in rows.columns if c not in keys]
    joined = rows.join(stored, on=keys, how="left", suffix="__stored", nulls_equal=True, coalesce=True)
    flag = "__lakesync_known"
    known_stored = stored.select(keys).with_columns(pl.lit(value=True).alias(flag))
    joined = joined.join(known_stored, on=keys, how="left", nulls_equal=True, coalesce=True)
    known = pl.col(flag).fill_null(value=False)
    differences = [_differs(pl.col(n), pl.col(f"{n}__stored"), rows.schema[n]) for n in names]
    differs = pl.any_horizontal(differences) if differences else pl.lit(value=False)
    new = joined.filter(~known | differs).select(rows.columns)
    gone = (
        stored.join(touched, on=keys, how="semi", nulls_equal=True)
        .join(rows.select(keys), on=keys, how="anti", nulls_equal=True)
        .select(keys)
    )
    removals = gone.with_columns([pl.lit(None, rows.schema[n]).alias(n) for n in names]).select(rows.columns)
    appended = pl.concat([stamp(new, at), stamp(removals, at, removed=True)])
    return appended, new, gone

"""Feature tables brought up to date from what changed in their input, not from all of it.

Delta data files never change: the rows that differ between two versions of the input are
those of the files one version has and the other does not. An entity (a ``group_by`` value)
none of whose rows is in those files has the same rows, so the same aggregations, in both
versions: only the *touched* entities are computed again. Two ways, both equal to computing the
feature whole (``lakesync_tests/test_feature_store.py`` compares them after random appends,
merges and erasures):

- **appended rows only**, every aggregation combinable (``count``, ``sum``, ``min``, ``max``):
  the new rows alone are aggregated and combined with the stored values of their entities;
- otherwise (rows deleted or rewritten, ``mean``, ``first``, ``last``, ``n_unique``): the
  touched entities' rows are read from the input (a semi-join) and aggregated again.

A full computation happens instead when the feature's definition changed (its fingerprint is
in the commit metadata), the input is partitioned, files of the older version are gone
(VACUUM), or more than half of the stored entities were touched. Either way only the entities
whose values changed are appended to the feature's history (:mod:`history`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from deltalake import DeltaTable

from lakesync.config.models import AGGREGATION, Feature
from lakesync.features.compute import feature_frame
from lakesync.state.lakehouse import Lakehouse

DEFINITION_KEY = "lakesync.definition"
COMBINABLE = ("count", "sum", "min", "max")
TOUCHED_AT_MOST = 0.5
"""Share of the stored entities above which computing the feature whole is cheaper."""


def definition_fingerprint(feature: Feature) -> str:
    """What the feature's values depend on in its definition."""
    parts = feature.model_dump(include={"inputs", "group_by", "aggregations", "function"})
    if feature.entity:  # (only when given: the fingerprints of features without one stay as they were)
        parts["entity"] = feature.entity
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Changes:
    """The rows of an input that differ between two of its versions, as files."""

    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def appends_only(self) -> bool:
        return not self.removed


@dataclass(frozen=True)
class Change:
    """What one incremental build changed in the feature table, for an online store to apply
    on top of the version it was computed from."""

    since: int
    """The feature table's version the build started from."""
    rows: pl.DataFrame = field(compare=False)
    """The new rows of the entities whose values changed, typed as the table's columns."""
    gone: pl.DataFrame = field(compare=False)
    """The keys of touched entities with no row left (every input row erased)."""
    total: int
    """The feature table's rows after the build."""


def changes(lakehouse: Lakehouse, new: DeltaTable, before: int) -> Changes | None:
    """The files table ``new`` has and its version ``before`` had not, and the other way
    (``None``: the table is partitioned: its files do not hold every column)."""
    options = dict(lakehouse.storage_options) or None
    old = DeltaTable(new.table_uri, version=before, storage_options=options)
    if new.metadata().partition_columns or old.metadata().partition_columns:
        return None
    old_files, new_files = set(old.file_uris()), set(new.file_uris())
    return Changes(tuple(sorted(new_files - old_files)), tuple(sorted(old_files - new_files)))


def _rows(lakehouse: Lakehouse, files: tuple[str, ...], columns: list[str]) -> pl.LazyFrame:
    options = dict(lakehouse.storage_options) or None
    return pl.scan_parquet(list(files), storage_options=options, missing_columns="insert").select(columns)


def _kinds(feature: Feature) -> dict[str, tuple[str, str | None]]:
    found = {}
    for name, text in feature.aggregations.items():
        match = AGGREGATION.match(text)
        assert match is not None  # validated with the config
        found[name] = (match.group(1), match.group(2))
    return found


def _combine(stored: pl.DataFrame, new: pl.DataFrame, feature: Feature) -> pl.DataFrame:
    """Stored values of the touched entities combined with the aggregations of their new rows."""
    keys = list(feature.group_by)
    joined = new.join(stored, on=keys, how="left", suffix="__old", nulls_equal=True)
    combined = []
    for name, (kind, _) in _kinds(feature).items():
        now, old = pl.col(name), pl.col(f"{name}__old")
        if kind == "count":
            value = now + old.fill_null(0).cast(new.schema[name])
        elif kind == "sum":
            value = pl.when(old.is_null()).then(now).when(now.is_null()).then(old).otherwise(now + old)
        else:
            value = pl.max_horizontal(now, old) if kind == "max" else pl.min_horizontal(now, old)
        combined.append(value.alias(name))
    return joined.select([*keys, *combined])


def touched_entities(
    lakehouse: Lakehouse, feature: Feature, found: Changes
) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
    """The entities (``group_by`` values) ``found`` touched, and the added rows' columns the
    aggregations need; ``None``: a file of the older version is gone (VACUUM)."""
    keys = list(feature.group_by)
    needed = sorted({*keys, *(column for _, column in _kinds(feature).values() if column is not None)})
    try:
        added = _rows(lakehouse, found.added, needed).collect() if found.added else None
        removed = _rows(lakehouse, found.removed, keys).collect() if found.removed else None
    except (OSError, pl.exceptions.PolarsError):  # an older file was vacuumed
        return None
    parts = [f.select(keys) for f in (added, removed) if f is not None]
    if not parts:
        return pl.DataFrame(schema=dict.fromkeys(keys, pl.Null)), added
    return pl.concat(parts, how="vertical_relaxed").unique(), added


def recompute(  # noqa: PLR0913 - what one recomputation of the touched entities works from
    feature: Feature,
    touched: pl.DataFrame,
    *,
    added: pl.DataFrame | None,
    stored: pl.DataFrame,
    found: Changes,
    inputs: Mapping[str, pl.LazyFrame],
) -> pl.DataFrame:
    """The touched entities' new rows (an entity whose every row is gone has none), from their
    ``stored`` current values and the added rows when every aggregation combines, else from
    the input's rows of those entities."""

    keys = list(feature.group_by)
    table = feature.inputs[0]
    if touched.height == 0:
        return stored.clear()
    if found.appends_only and added is not None and all(k in COMBINABLE for k, _ in _kinds(feature).values()):
        fresh = feature_frame(feature, {table: added.lazy()}).collect()
        return _combine(stored, fresh, feature)
    rows = inputs[table].join(touched.lazy(), on=keys, how="semi", nulls_equal=True)
    return feature_frame(feature, {table: rows}).collect()

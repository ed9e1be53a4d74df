"""Feature tables: a polars computation over the current versions of unified tables.

A feature table is brought up to date from pinned versions of its inputs in one Delta commit
whose metadata names those versions, so it is always consistent with one version of each
input, and an unchanged input set is not computed again. An aggregation feature's table keeps
its history (:mod:`history`): a build appends only the entities whose values changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lakesync.config.models import Feature, LakesyncConfig
from lakesync.features.compute import FeatureError, checked, feature_frame
from lakesync.features.history import COLUMNS as HISTORY_COLUMNS
from lakesync.features.history import changed, current, has_history, next_stamp, stamp, values
from lakesync.features.incremental import (
    DEFINITION_KEY,
    TOUCHED_AT_MOST,
    Change,
    Changes,
    changes,
    definition_fingerprint,
    recompute,
    touched_entities,
)
from lakesync.state.lakehouse import Lakehouse, commit_properties, row_count

INPUTS_KEY = "lakesync.inputs"
ENTITIES_KEY = "lakesync.entities"
STAMP_KEY = "lakesync.valid_from"
COMPACT_ABOVE_FILES = 32
"""A feature table with more files than this (one per update) is compacted after a build."""


@dataclass(frozen=True)
class FeatureBuild:
    feature: str
    delta_version: int | None
    rows: int
    inputs: dict[str, int]
    """Input table -> the Delta version it was computed from."""
    columns: dict[str, str]
    updated: bool
    """False when the inputs had not changed since the last build (nothing was written)."""
    how: str = "full"
    """``unchanged``, ``incremental`` (only the touched entities computed again) or ``full``."""
    change: Change | None = field(default=None, compare=False)
    """An incremental build's touched entities (for the online store to apply)."""


def input_tables(config: LakesyncConfig, name: str, lakehouse: Lakehouse) -> dict[str, DeltaTable]:
    """The current version of each input table of a feature; raises if one does not exist."""
    found = {}
    for table in config.features[name].inputs:
        snapshot = lakehouse.open(lakehouse.table_uri(table))
        if snapshot is None:
            msg = f"feature {name!r}: input table {table!r} has no data yet; sync it first"
            raise FeatureError(msg)
        found[table] = snapshot
    return found


def input_versions(config: LakesyncConfig, name: str, lakehouse: Lakehouse) -> dict[str, int]:
    """The current Delta version of each input table of a feature; raises if one does not exist."""
    return {table: snapshot.version() for table, snapshot in input_tables(config, name, lakehouse).items()}


NEUTRAL = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})
"""Commits that change no row (so the last build's entity count still holds)."""


@dataclass(frozen=True)
class _Written:
    """The feature table's latest build, as its commit metadata records it."""

    entry: dict[str, object] | None
    latest: bool
    """Nothing but OPTIMIZE/VACUUM committed since (an erasure rewrites rows)."""


def _last_write(snapshot: DeltaTable | None) -> _Written:
    """The commit metadata of the feature table's latest build (``entry`` ``None``: never built)."""
    if snapshot is None:
        return _Written(None, latest=False)
    latest = True
    for entry in snapshot.history(20):
        if INPUTS_KEY in entry:
            return _Written(entry, latest)
        latest = latest and entry.get("operation") in NEUTRAL
    return _Written(None, latest=False)


def _inputs_of(entry: Mapping[str, object] | None) -> dict[str, int] | None:
    value = entry.get(INPUTS_KEY) if entry is not None else None
    found = json.loads(value) if isinstance(value, str) else value
    return {k: int(v) for k, v in found.items()} if isinstance(found, dict) else None


def built_from(lakehouse: Lakehouse, name: str) -> dict[str, int] | None:
    """The input versions the feature table's current version was computed from."""
    return _inputs_of(_last_write(lakehouse.open(lakehouse.feature_uri(name))).entry)


def keeps_history(feature: Feature) -> bool:
    """A feature with an entity (an aggregation's ``group_by``, a function's ``entity``) has one
    row per entity, so its table can keep each entity's values over time; a ``function``
    without an ``entity`` is rewritten whole."""
    return bool(feature.entity_keys)


def build_feature(  # noqa: PLR0913 - keyword-only options of one build
    config: LakesyncConfig,
    name: str,
    lakehouse: Lakehouse,
    *,
    run_id: str,
    force: bool = False,
    restart: bool = False,
) -> FeatureBuild:
    """Bring feature ``name`` up to date with the current versions of its inputs: nothing when
    they are unchanged, else only the entities whose values changed are appended to its
    history, computed from the touched entities alone when it can (:mod:`incremental`), else
    from the whole input (``force``). ``restart``: rewrite the table whole, without its history
    (the feature's definition changed, or its old values must not be kept)."""
    feature = config.features[name]
    tables = input_tables(config, name, lakehouse)
    versions = {table: snapshot.version() for table, snapshot in tables.items()}
    uri = lakehouse.feature_uri(name)
    before = lakehouse.open(uri)
    written = _last_write(before)  # one read of the table's history for all that follows
    previous = _inputs_of(written.entry)
    definition = definition_fingerprint(feature)
    same_definition = (written.entry or {}).get(DEFINITION_KEY) == definition
    if not force and not restart and previous == versions and same_definition:
        assert before is not None
        columns = _value_columns(before)
        return FeatureBuild(
            name, before.version(), _entities(before, feature, written), versions, columns, False, "unchanged"
        )
    options = dict(lakehouse.storage_options) or None
    inputs = {table: pl.scan_delta(snapshot) for table, snapshot in tables.items()}
    at = next_stamp(_stamp_of(written.entry))
    appends = (
        not restart
        and keeps_history(feature)
        and before is not None
        and previous is not None
        and same_definition
        and has_history(before.schema().to_arrow().names)
    )
    try:
        if appends:
            assert before is not None
            assert previous is not None
            state = _Update(lakehouse, name, feature, before, written, previous, tables, inputs)
            change: Change | None
            try:
                frame, entities, how, change = _update(state, at=at, force=force)
            except _Reshaped:  # a function that now returns other columns: its history restarts
                appends = False
        if not appends:
            computed = checked(feature, name, feature_frame(feature, inputs).collect())
            frame = stamp(computed, at) if keeps_history(feature) else computed
            entities, how, change = computed.height, "full", None
    except pl.exceptions.PolarsError as exc:
        msg = f"feature {name!r}: computing it from {', '.join(feature.inputs)} failed: {exc}"
        raise FeatureError(msg) from exc
    metadata = {
        INPUTS_KEY: json.dumps(versions),
        DEFINITION_KEY: definition,
        ENTITIES_KEY: str(entities),
        STAMP_KEY: at.isoformat(),
        "lakesync.run_id": run_id,
        "lakesync.feature": name,
        "lakesync.how": how,
    }
    write_deltalake(
        before if before is not None else uri,  # the open table: it is updated to the new version
        frame.to_arrow(compat_level=pl.CompatLevel.newest()),
        mode="append" if appends else "overwrite",
        schema_mode=None if appends else "overwrite",
        storage_options=options,
        commit_properties=commit_properties(None, metadata),
    )
    snapshot = before if before is not None else lakehouse.open(uri)
    assert snapshot is not None
    if appends and len(snapshot.file_uris()) > COMPACT_ABOVE_FILES:
        snapshot.optimize.compact()  # the appended updates' small files, in one rewrite
    columns = {k: str(v) for k, v in values(frame).schema.items()}
    return FeatureBuild(name, snapshot.version(), entities, versions, columns, True, how, change)


def _value_columns(snapshot: DeltaTable) -> dict[str, str]:
    schema = pl.from_arrow(pa.schema(snapshot.schema().to_arrow()).empty_table()).schema  # type: ignore[union-attr]
    return {k: str(v) for k, v in schema.items() if k not in HISTORY_COLUMNS}


def _stamp_of(entry: Mapping[str, object] | None) -> datetime | None:
    value = (entry or {}).get(STAMP_KEY)
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _entities(snapshot: DeltaTable, feature: Feature, written: _Written) -> int:
    """The feature's entities now: as its last build recorded them, else counted."""
    recorded = (written.entry or {}).get(ENTITIES_KEY)
    if written.latest and isinstance(recorded, str) and recorded.isdigit():
        return int(recorded)
    scan = pl.scan_delta(snapshot)
    keys = feature.entity_keys
    if not has_history(scan.collect_schema().names()):
        return row_count(snapshot)
    return int(current(scan.select([*keys, *HISTORY_COLUMNS]), keys).select(pl.len()).collect().item())


def feature_entities(snapshot: DeltaTable, feature: Feature) -> int:
    """How many entities (rows of its current values) the feature table holds."""
    return _entities(snapshot, feature, _last_write(snapshot))


def current_values(snapshot: DeltaTable, feature: Feature, *, as_of: datetime | None = None) -> pl.LazyFrame:
    """The values of the feature current at ``as_of`` (default: the table's version), one row
    per entity."""
    keys = feature.entity_keys
    return current(pl.scan_delta(snapshot), keys, as_of=as_of)


class _Reshaped(Exception):  # noqa: N818 - a signal inside build_feature, never raised out of it
    """A function's result no longer has its table's columns and types."""


@dataclass(frozen=True)
class _Update:
    """What one update of a feature's history works from."""

    lakehouse: Lakehouse
    name: str
    feature: Feature
    before: DeltaTable
    written: _Written
    previous: dict[str, int]
    """The input versions the stored values were computed from."""
    tables: Mapping[str, DeltaTable]
    """The input tables at the versions this build computes from, and their scans:"""
    inputs: Mapping[str, pl.LazyFrame]


def _update(state: _Update, *, at: datetime, force: bool) -> tuple[pl.DataFrame, int, str, Change]:
    """The rows to append to the feature's history (stamped ``at``), its entities after, how
    they were computed and what changed."""
    feature, before, inputs = state.feature, state.before, state.inputs
    keys = feature.entity_keys
    history = pl.scan_delta(before)
    schema = current(history, keys).collect_schema()
    found = None if force else _touched(state)
    if found is not None:
        changes_found, touched, added, entities = found
        touched = touched.select([pl.col(k).cast(schema[k]) for k in keys])
        stored = current(_of(history, touched, keys), keys).collect()
        rows, how = (
            recompute(feature, touched, added=added, stored=stored, found=changes_found, inputs=inputs),
            "incremental",
        )
    else:
        rows, how = checked(feature, state.name, feature_frame(feature, inputs).collect()), "full"
        stored = current(history, keys).collect()
        entities = stored.height
        touched = pl.concat([rows.select(keys), stored.select(keys)], how="vertical_relaxed").unique()
    if feature.function is not None and set(rows.columns) != set(schema.names()):
        raise _Reshaped  # (cast to the table's columns, it would drop or invent some)
    typed = rows.select([pl.col(c).cast(schema[c]) for c in schema.names()])
    if feature.function is not None and not typed.cast(rows.schema).select(rows.columns).equals(rows):
        raise _Reshaped  # a lossy cast (say floats into the table's integers) would change values
    appended, new, gone = changed(stored, typed, touched, keys, at)
    added_entities = new.join(stored.select(keys), on=keys, how="anti", nulls_equal=True).height
    total = entities + added_entities - gone.height
    return appended, total, how, Change(before.version(), new, gone, total)


def _of(history: pl.LazyFrame, touched: pl.DataFrame, keys: list[str]) -> pl.LazyFrame:
    """The history of the touched entities only: a filter on each key the scan applies as it
    reads (parquet statistics, then rows), so what is held is bounded by the touched entities,
    not the whole history; the join then keeps exactly the touched key combinations."""
    near = [pl.col(k).is_in(touched[k].unique().implode(), nulls_equal=True) for k in keys]
    return history.filter(*near).join(touched.lazy(), on=keys, how="semi", nulls_equal=True)


def _touched(state: _Update) -> tuple[Changes, pl.DataFrame, pl.DataFrame | None, int] | None:
    """What changed in the input since the last build, the entities it touched, the added rows
    and the feature's entities before; ``None``: compute the feature from its whole input."""
    feature, previous = state.feature, state.previous
    if feature.function is not None or len(feature.inputs) != 1:
        return None  # (a function's result is computed whole, then only its changes appended)
    table = feature.inputs[0]
    latest = state.tables[table]
    if table not in previous or previous[table] > latest.version():
        return None
    found = changes(state.lakehouse, latest, previous[table])
    touched = touched_entities(state.lakehouse, feature, found) if found is not None else None
    if found is None or touched is None:
        return None
    entities = _entities(state.before, feature, state.written)
    if entities and touched[0].height > TOUCHED_AT_MOST * entities:
        return None
    return found, touched[0], touched[1], entities


__all__ = ["FeatureBuild", "FeatureError", "build_feature", "checked", "feature_frame"]

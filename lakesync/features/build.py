"""Feature tables: a polars computation over the current versions of unified tables.

A feature table is recomputed whole from pinned versions of its inputs and written as one
Delta overwrite whose commit metadata names those versions, so it is always consistent with
one version of each input, and an unchanged input set is not recomputed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from lakesync.config.models import AGGREGATION, Feature, LakesyncConfig
from lakesync.features.incremental import (
    DEFINITION_KEY,
    Change,
    changes,
    definition_fingerprint,
    recompute_touched,
    updated,
)
from lakesync.state.lakehouse import Lakehouse, commit_properties, row_count

INPUTS_KEY = "lakesync.inputs"
FeatureFunction = Callable[[Mapping[str, pl.LazyFrame]], pl.LazyFrame]


class FeatureError(RuntimeError):
    """A feature table cannot be computed (an input table is missing, the function failed)."""


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


def _aggregation(name: str, text: str) -> pl.Expr:
    match = AGGREGATION.match(text)
    assert match is not None  # validated with the config
    kind, column = match.group(1), match.group(2)
    if kind == "count":
        return (pl.len() if column is None else pl.col(column).count()).alias(name)
    expr = pl.col(column)
    return getattr(expr, kind)().alias(name)  # type: ignore[no-any-return]


def _function(path: str) -> FeatureFunction:
    module, _, attribute = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot import the feature function {path!r}: {exc}"
        raise FeatureError(msg) from exc
    if not callable(found):
        msg = f"{path!r} is not a function"
        raise FeatureError(msg)
    return found  # type: ignore[no-any-return]


def feature_frame(feature: Feature, inputs: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    """The feature table's rows as a lazy polars query over its inputs."""
    if feature.function is not None:
        result = _function(feature.function)(inputs)
        if not isinstance(result, pl.LazyFrame | pl.DataFrame):
            msg = f"{feature.function} returned {type(result).__name__}, not a polars LazyFrame"
            raise FeatureError(msg)
        return result.lazy()
    source = inputs[feature.inputs[0]]
    aggregations = [_aggregation(name, text) for name, text in feature.aggregations.items()]
    if not feature.group_by:
        return source.select(aggregations)
    return source.group_by(feature.group_by).agg(aggregations).sort(feature.group_by)


def input_versions(config: LakesyncConfig, name: str, lakehouse: Lakehouse) -> dict[str, int]:
    """The current Delta version of each input table of a feature; raises if one does not exist."""
    versions = {}
    for table in config.features[name].inputs:
        snapshot = lakehouse.open(lakehouse.table_uri(table))
        if snapshot is None:
            msg = f"feature {name!r}: input table {table!r} has no data yet; sync it first"
            raise FeatureError(msg)
        versions[table] = snapshot.version()
    return versions


def _last_write(snapshot: DeltaTable | None) -> dict[str, object] | None:
    """The commit metadata of the feature table's latest write (``None``: never built)."""
    if snapshot is None:
        return None
    return next((entry for entry in snapshot.history(5) if INPUTS_KEY in entry), None)


def _inputs_of(entry: Mapping[str, object] | None) -> dict[str, int] | None:
    value = entry.get(INPUTS_KEY) if entry is not None else None
    found = json.loads(value) if isinstance(value, str) else value
    return {k: int(v) for k, v in found.items()} if isinstance(found, dict) else None


def built_from(lakehouse: Lakehouse, name: str) -> dict[str, int] | None:
    """The input versions the feature table's current version was computed from."""
    return _inputs_of(_last_write(lakehouse.open(lakehouse.feature_uri(name))))


def build_feature(
    config: LakesyncConfig, name: str, lakehouse: Lakehouse, *, run_id: str, force: bool = False
) -> FeatureBuild:
    """Bring feature ``name`` up to date with the current versions of its inputs: nothing when
    they are unchanged, only the touched entities when it can (:mod:`incremental`), else whole."""
    feature = config.features[name]
    versions = input_versions(config, name, lakehouse)
    uri = lakehouse.feature_uri(name)
    before = lakehouse.open(uri)
    written = _last_write(before)  # one read of the table's history for both
    previous = _inputs_of(written)
    if not force and previous == versions:
        assert before is not None
        schema = pl.from_arrow(pa.schema(before.schema().to_arrow()).empty_table()).schema  # type: ignore[union-attr]
        columns = {k: str(v) for k, v in schema.items()}
        return FeatureBuild(name, before.version(), row_count(before), versions, columns, False, "unchanged")
    options = dict(lakehouse.storage_options) or None
    inputs = {
        table: pl.scan_delta(lakehouse.table_uri(table), version=version, storage_options=options)
        for table, version in versions.items()
    }
    definition = definition_fingerprint(feature)
    frame, how, change = None, "full", None
    try:
        if (
            not force
            and before is not None
            and previous is not None
            and (written or {}).get(DEFINITION_KEY) == definition
        ):
            found = _incremental(
                lakehouse, before, feature, previous=previous, versions=versions, inputs=inputs
            )
            if found is not None:
                (frame, change), how = found, "incremental"
        if frame is None:
            frame = feature_frame(feature, inputs).collect()
    except pl.exceptions.PolarsError as exc:
        msg = f"feature {name!r}: computing it from {', '.join(feature.inputs)} failed: {exc}"
        raise FeatureError(msg) from exc
    metadata = {INPUTS_KEY: json.dumps(versions), DEFINITION_KEY: definition, "lakesync.run_id": run_id}
    write_deltalake(
        uri,
        frame.to_arrow(compat_level=pl.CompatLevel.newest()),
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=options,
        commit_properties=commit_properties(
            None, {**metadata, "lakesync.feature": name, "lakesync.how": how}
        ),
    )
    snapshot = lakehouse.open(uri)
    assert snapshot is not None
    columns = {k: str(v) for k, v in frame.schema.items()}
    return FeatureBuild(name, snapshot.version(), frame.height, versions, columns, True, how, change)


def _incremental(  # noqa: PLR0913 - the state one update works from
    lakehouse: Lakehouse,
    before: DeltaTable,
    feature: Feature,
    *,
    previous: dict[str, int],
    versions: dict[str, int],
    inputs: Mapping[str, pl.LazyFrame],
) -> tuple[pl.DataFrame, Change] | None:
    """The feature (as of ``before``) with only its touched entities computed again, and what
    changed; ``None``: compute it whole."""
    if feature.function is not None or not feature.group_by or len(feature.inputs) != 1:
        return None
    table = feature.inputs[0]
    if table not in previous or previous[table] > versions[table]:
        return None
    found = changes(lakehouse, table, previous[table], versions[table])
    if found is None:
        return None
    current = pl.read_delta(before)
    result = recompute_touched(lakehouse, feature, current, found, inputs)
    if result is None:
        return None
    touched, rows = result
    return updated(current, rows, touched, feature, since=before.version())

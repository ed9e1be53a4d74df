"""Feature values *as of* a time: point-in-time correct training sets.

A feature with ``group_by`` (its entity), ``aggregations`` and a ``timestamp`` (the input's
event-time column) has, for each entity, a timeline: after every event time, the aggregations
over the entity's rows up to and including it. A label row (an entity and a time) gets the
values of the latest point of its entity's timeline at or before its time, so a training set
never sees a value computed from a row with a later event time; a label before the entity's
first event gets nulls (counts: 0), and with the feature's ``ttl`` a label more than the ttl
after the entity's latest event before it gets nulls too (counts included: the value is not
known to be current, which is not the same as none).

The timeline is computed from the input table's committed rows of the labels' entities only
(a semi-join), at the version printed, events at the same time taken together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from lakesync.config.models import AGGREGATION, LakesyncConfig
from lakesync.features.build import FeatureError, input_versions
from lakesync.state.lakehouse import Lakehouse

UTC_TIME = pl.Datetime("us", "UTC")
_LABEL_ROW = "__label_row"
_COUNTS = ("count", "n_unique")


@dataclass
class TrainingSet:
    frame: pl.DataFrame
    inputs: dict[str, dict[str, int]] = field(default_factory=dict)
    """Feature -> the input versions its values were computed from."""


def label_times(labels: pl.DataFrame, at: str, timezone: str = "UTC") -> pl.Series:
    """The labels' ``at`` column as UTC instants: text in ISO 8601 (an offset is honoured),
    naive times and dates in ``timezone``."""
    if at not in labels.columns:
        msg = f"the labels have no column {at!r} (columns: {', '.join(labels.columns)})"
        raise FeatureError(msg)
    values = labels[at]
    try:
        if values.dtype == pl.String:
            with_offset = values.str.contains(r"(Z|[+-]\d{2}:?\d{2})\s*$").fill_null(value=False)
            parsed = pl.select(
                pl.when(pl.lit(with_offset))
                .then(pl.lit(values).str.to_datetime(time_zone="UTC", time_unit="us", strict=False))
                .otherwise(
                    pl.lit(values)
                    .str.to_datetime(time_unit="us", strict=False)
                    .dt.replace_time_zone(timezone)
                    .dt.convert_time_zone("UTC")
                )
            ).to_series()
            bad = parsed.is_null() & values.is_not_null()
            if bad.any():
                example = values.filter(bad)[0]
                msg = (
                    f"label column {at!r}: {example!r} is not a date/time (ISO 8601, e.g. 2026-11-03T10:00Z)"
                )
                raise FeatureError(msg)
            return parsed.alias(at)
        if values.dtype == pl.Date:
            values = values.cast(pl.Datetime("us"))
        if isinstance(values.dtype, pl.Datetime):
            if values.dtype.time_zone is None:
                values = values.dt.replace_time_zone(timezone)
            return values.dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(at)
    except pl.exceptions.PolarsError as exc:
        msg = f"label column {at!r}: {exc}"
        raise FeatureError(msg) from None
    msg = f"label column {at!r} is {values.dtype}, not a date/time"
    raise FeatureError(msg)


def _parts(name: str, text: str) -> tuple[str, str | None]:
    match = AGGREGATION.match(text)
    assert match is not None  # validated with the config
    return match.group(1), match.group(2)


def timeline(
    rows: pl.LazyFrame, keys: Sequence[str], at: str, aggregations: Mapping[str, str]
) -> pl.LazyFrame:
    """Each entity's aggregations after each of its event times (``at``), in time order."""
    per_row: list[pl.Expr] = []
    per_time: list[pl.Expr] = []
    cumulative: list[pl.Expr] = []
    by = list(keys)
    for name, text in aggregations.items():
        kind, column = _parts(name, text)
        if kind == "count" and column is None:
            per_time.append(pl.len().alias(name))
            cumulative.append(pl.col(name).cum_sum().over(by).alias(name))
            continue
        assert column is not None  # every other aggregation names its column (config rules)
        if kind == "count":
            per_time.append(pl.col(column).count().alias(name))
            cumulative.append(pl.col(name).cum_sum().over(by).alias(name))
        elif kind in ("sum", "mean"):
            per_time += [
                pl.col(column).sum().alias(f"{name}__sum"),
                pl.col(column).count().alias(f"{name}__n"),
            ]
            total, seen = pl.col(f"{name}__sum").cum_sum().over(by), pl.col(f"{name}__n").cum_sum().over(by)
            value = total if kind == "sum" else total / seen
            cumulative.append(pl.when(seen > 0).then(value).alias(name))
        elif kind in ("min", "max"):
            per_time.append(getattr(pl.col(column), kind)().alias(name))
            step = pl.col(name).cum_max() if kind == "max" else pl.col(name).cum_min()
            cumulative.append(step.forward_fill().over(by).alias(name))
        elif kind == "first":
            per_time.append(pl.col(column).first().alias(name))
            cumulative.append(pl.col(name).first().over(by).alias(name))
        elif kind == "last":
            per_time.append(pl.col(column).last().alias(name))
            cumulative.append(pl.col(name))
        else:  # n_unique: values seen for the first time, counted up
            flag = f"{name}__new"
            per_row.append(pl.col(column).is_first_distinct().over(by).alias(flag))
            per_time.append(pl.col(flag).sum().alias(name))
            cumulative.append(pl.col(name).cum_sum().over(by).alias(name))
    ordered = rows.filter(pl.col(at).is_not_null()).sort([*by, at], maintain_order=True)
    if per_row:
        ordered = ordered.with_columns(per_row)
    return (
        ordered.group_by([*by, at], maintain_order=True)
        .agg(per_time)
        .sort([*by, at])
        .with_columns(cumulative)
        .select([*by, at, *aggregations])
    )


def _feature_values(
    config: LakesyncConfig,
    name: str,
    lakehouse: Lakehouse,
    labels: pl.DataFrame,
    entity: Mapping[str, str],
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The feature's values at each label's time (``entity``: feature key -> label column)."""
    feature = config.features[name]
    if feature.function is not None or feature.timestamp is None:
        msg = (
            f"feature {name!r} has no timeline: values as of a time need group_by + aggregations and "
            "timestamp: (the input's event-time column) in lakesync.yaml"
        )
        raise FeatureError(msg)
    keys = list(feature.group_by)
    versions = input_versions(config, name, lakehouse)
    table = feature.inputs[0]
    columns = {*keys, feature.timestamp} | {
        c for t in feature.aggregations.values() if (c := _parts("", t)[1])
    }
    options = dict(lakehouse.storage_options) or None
    wanted = labels.select([pl.col(entity[k]).alias(k) for k in keys]).unique()
    source = pl.scan_delta(lakehouse.table_uri(table), version=versions[table], storage_options=options)
    present = source.collect_schema()
    wanted = wanted.with_columns([pl.col(k).cast(present[k], strict=False) for k in keys])
    rows = (
        source.select(sorted(columns))
        .join(wanted.lazy(), on=keys, how="semi")
        .with_columns(pl.col(feature.timestamp).cast(UTC_TIME))
    )
    points = timeline(rows, keys, feature.timestamp, feature.aggregations).collect()
    asked = labels.select(
        _LABEL_ROW, "__at", *[pl.col(entity[k]).cast(present[k], strict=False).alias(k) for k in keys]
    ).sort("__at")
    joined = asked.join_asof(
        points.sort(feature.timestamp).rename({feature.timestamp: "__event_at"}),
        left_on="__at",
        right_on="__event_at",
        by=keys,
        strategy="backward",
        check_sortedness=False,  # both sorted by time above
    )
    counts = [n for n, t in feature.aggregations.items() if _parts(n, t)[0] in _COUNTS]
    values = joined.with_columns([pl.col(n).fill_null(0) for n in counts])
    if feature.ttl is not None:  # values older than the ttl at the label's time are not given
        ttl = pl.duration(microseconds=round(feature.ttl * 1e6))
        stale = ((pl.col("__at") - pl.col("__event_at")) > ttl).fill_null(value=False)
        values = values.with_columns([pl.when(~stale).then(pl.col(n)).alias(n) for n in feature.aggregations])
    return values.select(_LABEL_ROW, *feature.aggregations), versions


@dataclass(frozen=True)
class Labels:
    """Label rows and how to read them."""

    frame: pl.DataFrame
    at: str
    """The column holding each label's time."""
    entity: Mapping[str, str] = field(default_factory=dict)
    """A feature's key column -> the labels' column holding it (default: the same name)."""
    timezone: str = "UTC"
    """The zone of naive label times and dates."""


def training_set(
    config: LakesyncConfig, lakehouse: Lakehouse, labels: Labels, features: Sequence[str]
) -> TrainingSet:
    """The label rows with each feature's values as of each row's time."""
    unknown = [f for f in features if f not in config.features]
    if unknown:
        msg = f"unknown feature(s) {', '.join(unknown)} (features: {', '.join(config.features) or 'none'})"
        raise FeatureError(msg)
    given = labels.frame
    mappings = {}
    for name in features:
        keys = config.features[name].group_by
        mappings[name] = {k: labels.entity.get(k, k) for k in keys}
        missing = [column for column in mappings[name].values() if column not in given.columns]
        if missing:
            msg = f"feature {name!r} is keyed by {', '.join(keys)}: the labels have no column {missing[0]!r}"
            raise FeatureError(msg)
    frame = given.with_row_index(_LABEL_ROW).with_columns(
        label_times(given, labels.at, labels.timezone).alias("__at")
    )
    result = TrainingSet(given)
    out = frame
    taken = set(given.columns)
    for name in features:
        values, result.inputs[name] = _feature_values(config, name, lakehouse, frame, mappings[name])
        renamed = {c: (c if c not in taken else f"{name}__{c}") for c in values.columns if c != _LABEL_ROW}
        taken |= set(renamed.values())
        out = out.join(values.rename(renamed), on=_LABEL_ROW, how="left")
    result.frame = out.sort(_LABEL_ROW).drop(_LABEL_ROW, "__at")
    return result

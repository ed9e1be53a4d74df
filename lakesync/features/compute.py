"""What a feature's rows are: its aggregations grouped by its entity, or what its function returns
(checked against the ``entity`` it names), as a polars query over its inputs."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

import polars as pl

from lakesync.config.models import AGGREGATION, Feature

FeatureFunction = Callable[[Mapping[str, pl.LazyFrame]], pl.LazyFrame]


class FeatureError(RuntimeError):
    """A feature table cannot be computed (an input table is missing, the function failed)."""


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


def checked(feature: Feature, name: str, rows: pl.DataFrame) -> pl.DataFrame:
    """A function's result as its ``entity`` promises it: the entity's columns there, one row
    per entity (an aggregation's result is so by construction)."""
    if feature.function is None or not feature.entity:
        return rows
    missing = [k for k in feature.entity if k not in rows.columns]
    if missing:
        msg = (
            f"feature {name!r}: {feature.function} returned no column {', '.join(missing)} "
            f"(its entity); it returned {', '.join(rows.columns) or 'no columns'}"
        )
        raise FeatureError(msg)
    repeated = rows.select(feature.entity).is_duplicated()
    if repeated.any():
        example = rows.filter(repeated).row(0, named=True)
        shown = ", ".join(f"{k}={example[k]!r}" for k in feature.entity)
        msg = (
            f"feature {name!r}: {feature.function} returned {int(repeated.sum())} rows sharing an "
            f"entity (e.g. {shown}); a feature with `entity` has one row per entity: aggregate "
            "in the function, or widen the entity"
        )
        raise FeatureError(msg)
    return rows

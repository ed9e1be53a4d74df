"""lakesync from Python (a notebook): the catalog and queries in place, as polars DataFrames.

import lakesync
lakesync.query("select currency, count(*) from orders group by currency")
lakesync.query("select * from us_sales.orders where amount > 100", strict=True)
lakesync.catalog()          # one row per asset and column
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.catalog import catalog_frame
from lakesync.catalog import search as find
from lakesync.config import LakesyncConfig, default_config_path, load_config
from lakesync.config.contracts import hashes_pii
from lakesync.defs.providers import open_lakehouse, open_stores
from lakesync.features.build import FeatureError, current_values
from lakesync.features.online import lookup
from lakesync.features.timeline import Labels
from lakesync.features.timeline import training_set as build_training_set
from lakesync.sql import QueryOptions, reads_in_place, run_query


def _config(config: str | Path | LakesyncConfig | None) -> LakesyncConfig:
    if isinstance(config, LakesyncConfig):
        return config
    return load_config(Path(config) if config is not None else default_config_path(os.environ))


def query(  # noqa: PLR0913 - keyword-only options of one query
    sql: str,
    *,
    config: str | Path | LakesyncConfig | None = None,
    as_of: int | datetime | None = None,
    fresh: bool = False,
    strict: bool = False,
    limit: int | None = None,
) -> pl.DataFrame:
    """The answer to ``sql`` over the tables (``orders``), lake datasets (``us_sales.orders``)
    and ``_catalog`` of ``config`` (a path, a loaded config, default ``$LAKESYNC_CONFIG`` then
    ``./lakesync.yaml``), as ``lakesync query`` gives it; raises
    :class:`lakesync.sql.QueryError` with a sentence saying what is wrong."""
    project = _config(config)
    options = QueryOptions(as_of=as_of, fresh=fresh, strict=strict, limit=limit)
    lakehouse = open_lakehouse(project, pii_key=hashes_pii(project) and reads_in_place(project, sql, options))
    with open_stores(project) as stores:
        return run_query(project, sql, lakehouse=lakehouse, stores=stores, options=options).frame


def search(
    text: str,
    *,
    config: str | Path | LakesyncConfig | None = None,
    columns_only: bool = False,
    tag: str | None = None,
    lake: str | None = None,
) -> pl.DataFrame:
    """Where is column ``text``: the catalog's entries matching it, best first, as
    ``lakesync catalog search`` finds them (one row per entry; ``sources`` lists each lake
    dataset's name for the column). The whole catalog: ``query("select * from _catalog")``."""
    project = _config(config)
    hits = find(
        catalog_frame(project, open_lakehouse(project)), text, columns_only=columns_only, tag=tag, lake=lake
    )
    source = pl.Struct({"asset": pl.String(), "column": pl.String()})
    schema: dict[str, pl.DataType] = {
        **dict.fromkeys(["match", "asset", "column", "type", "pii", "description"], pl.String()),
        "score": pl.Float64(),
        "sources": pl.List(source),
    }
    frame = pl.DataFrame([h.to_dict() for h in hits], schema=schema)
    return frame.select("score", "match", "asset", "column", "type", "pii", "description", "sources")


def training_set(  # noqa: PLR0913 - keyword-only options of one training set
    labels: pl.DataFrame,
    *,
    features: list[str],
    at: str,
    entity: dict[str, str] | None = None,
    timezone: str = "UTC",
    config: str | Path | LakesyncConfig | None = None,
) -> pl.DataFrame:
    """``labels`` with each feature's values as of each row's ``at`` column, never computed from
    rows with a later event time (:mod:`lakesync.features.timeline`)."""
    project = _config(config)
    request = Labels(labels, at, entity or {}, timezone)
    return build_training_set(project, open_lakehouse(project), request, features).frame


def get_online_features(
    feature: str, entities: dict[str, list[Any]], *, config: str | Path | LakesyncConfig | None = None
) -> pl.DataFrame:
    """The latest values of ``feature`` for each entity (key column -> values), from the online
    store; nulls for an entity it does not hold."""
    return lookup(_config(config), feature, entities)


def feature_values(
    feature: str,
    *,
    as_of: datetime | None = None,
    version: int | None = None,
    config: str | Path | LakesyncConfig | None = None,
) -> pl.DataFrame:
    """The values of ``feature`` per entity as its table held them at ``as_of`` (a time: the
    feature's history) or at Delta ``version``; default now. Its whole history (each entity's
    values with ``_lakesync_valid_from``) is the Delta table itself: ``pl.read_delta(...)``."""
    project = _config(config)
    if feature not in project.features:
        msg = f"no feature {feature!r} in the config (features: {', '.join(project.features) or 'none'})"
        raise FeatureError(msg)
    lakehouse = open_lakehouse(project)
    uri = lakehouse.feature_uri(feature)
    snapshot = lakehouse.open(uri)
    if snapshot is None:
        msg = f"feature table {feature!r} does not exist yet at {uri}: run `lakesync sync` first"
        raise FeatureError(msg)
    if version is not None:
        snapshot.load_as_version(version)
    when = None if as_of is None else (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC))
    return current_values(snapshot, project.features[feature], as_of=when).collect()

"""The global catalog as a Dagster asset: ``lakehouse/_catalog``, rebuilt after its tables change.

It depends on every unified and feature table and carries ``AutomationCondition.eager()``: the
daemon rebuilds it after their commits. ``lakesync sync`` rebuilds it itself after its runs and
reports the materialization, so an instance without a daemon shows it too.
"""

from typing import Any

import dagster as dg
import polars as pl

from lakesync.catalog import catalog_frame, write_catalog
from lakesync.config import LakesyncConfig
from lakesync.defs.metadata import CATALOG_KEY, feature_key, table_key
from lakesync.defs.specs import catalog_description
from lakesync.state.lakehouse import Lakehouse


def catalog_metadata(lakehouse: Lakehouse, frame: pl.DataFrame, version: int) -> dict[str, Any]:
    return {
        "dagster/row_count": frame.height,
        "dagster/uri": lakehouse.catalog_uri,
        "delta_version": version,
        "assets": frame["asset"].n_unique(),
        "personal_data_columns": int(frame.filter(pl.col("pii").is_not_null())["column"].len()),
    }


def rebuild_catalog(config: LakesyncConfig, lakehouse: Lakehouse) -> dict[str, Any]:
    """Build and write the catalog; its materialization's metadata."""
    frame = catalog_frame(config, lakehouse)
    return catalog_metadata(lakehouse, frame, write_catalog(lakehouse, frame))


def catalog_asset(config: LakesyncConfig) -> dg.AssetsDefinition:
    project = config

    @dg.asset(
        key=CATALOG_KEY,
        deps=[*(table_key(t) for t in config.tables), *(feature_key(f) for f in config.features)],
        description=catalog_description(),
        group_name="lakehouse",
        kinds={"delta"},
        automation_condition=dg.AutomationCondition.eager(),
        required_resource_keys={"lakehouse"},
    )
    def catalog(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        return dg.MaterializeResult(metadata=rebuild_catalog(project, context.resources.lakehouse.get()))

    return catalog


def report_catalog(instance: dg.DagsterInstance, metadata: dict[str, Any]) -> None:
    """Record a rebuild made outside a run (by ``lakesync sync``) as the asset's materialization."""
    instance.report_runless_asset_event(dg.AssetMaterialization(CATALOG_KEY, metadata=metadata))

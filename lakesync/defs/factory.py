"""Generate every Dagster definition from a ``lakesync.yaml`` (adding a lake is config, not code)."""

from __future__ import annotations

import dagster as dg

from lakesync.config import LakesyncConfig, resolve_contract
from lakesync.defs.assets import drift_spec, lake_dataset_spec, ledger_spec, table_assets, table_job
from lakesync.defs.checks import drift_check
from lakesync.defs.lakes import lake_resources
from lakesync.defs.resources import lakehouse_resource
from lakesync.defs.sensors import dataset_sensor
from lakesync.pipeline.runtime import dataset_runtimes


def lake_definitions(config: LakesyncConfig, lake_name: str) -> dg.Definitions:
    """A lake's dataset assets and their sensors."""
    lake = config.lakes[lake_name]
    runtimes = [r for r in dataset_runtimes(config) if r.lake == lake_name]
    return dg.Definitions(
        assets=[lake_dataset_spec(lake_name, lake, name, ds) for name, ds in lake.datasets.items()],
        asset_checks=[drift_check(lake_name, name) for name in lake.datasets],
        sensors=[dataset_sensor(config, runtime) for runtime in runtimes],
    )


def table_definitions(config: LakesyncConfig, table: str) -> dg.Definitions:
    """A unified table's multi-asset (table + quarantine) and the job that runs it."""
    assets = table_assets(config, table, resolve_contract(table, config.tables[table]))
    return dg.Definitions(assets=[assets], jobs=[table_job(table, assets)])


def build_definitions(config: LakesyncConfig) -> dg.Definitions:
    """All definitions of a configuration: lakes, tables, the ledger and the lakehouse resource."""
    return dg.Definitions.merge(
        *(lake_definitions(config, name) for name in config.lakes),
        *(table_definitions(config, name) for name in config.tables),
        dg.Definitions(
            assets=[ledger_spec(), drift_spec()],
            resources={"lakehouse": lakehouse_resource(config), **lake_resources(config)},
        ),
    )

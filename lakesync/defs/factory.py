"""Generate every Dagster definition from a ``lakesync.yaml`` (adding a lake is config, not code)."""

from __future__ import annotations

import dagster as dg

from lakesync.config import LakesyncConfig, resolve_contract
from lakesync.defs.assets import table_assets, table_job
from lakesync.defs.catalog import catalog_asset
from lakesync.defs.checks import drift_check, events_check, freshness_check, volume_check
from lakesync.defs.features import feature_asset, feature_job, online_spec
from lakesync.defs.intake import intake_sensor
from lakesync.defs.maintenance import maintenance_definitions
from lakesync.defs.metadata import CATALOG_KEY, feature_key
from lakesync.defs.providers import lake_resources, lakehouse_resource
from lakesync.defs.resources import pii_key_resource
from lakesync.defs.sensors import dataset_sensor
from lakesync.defs.specs import audit_spec, drift_spec, lake_dataset_spec, ledger_spec
from lakesync.pipeline.runtime import dataset_runtimes

LOCATION = "lakesync"
"""The name of lakesync's code location (``lakesync.definitions``) in ``workspace.yaml``."""


def lake_definitions(config: LakesyncConfig, lake_name: str, location: str | None = None) -> dg.Definitions:
    """A lake's dataset assets and their sensors."""
    lake = config.lakes[lake_name]
    runtimes = [r for r in dataset_runtimes(config) if r.lake == lake_name]
    contracts = {t: resolve_contract(t, config.tables[t]) for t in {d.table for d in lake.datasets.values()}}
    return dg.Definitions(
        assets=[
            lake_dataset_spec(lake_name, lake, name, dataset, contracts[dataset.table], location=location)
            for name, dataset in lake.datasets.items()
        ],
        asset_checks=[
            *(drift_check(lake_name, name) for name in lake.datasets),
            *(volume_check(lake_name, name, ds.volume) for name, ds in lake.datasets.items()),
            *(freshness_check(config, runtime) for runtime in runtimes),
            *(events_check(lake_name, name) for name in lake.datasets if lake.discovery.mode == "events"),
        ],
        sensors=[
            *(dataset_sensor(config, runtime) for runtime in runtimes),
            *([intake_sensor(config, lake_name)] if lake.discovery.mode == "events" else []),
        ],
    )


def table_definitions(config: LakesyncConfig, table: str) -> dg.Definitions:
    """A unified table's multi-asset (table + quarantine) and its checks, the job that runs it,
    and its maintenance job and schedule."""
    settings = config.tables[table]
    assets = table_assets(config, table, resolve_contract(table, settings))
    maintain, schedule = maintenance_definitions(config, table)
    return dg.Definitions(
        assets=[assets],
        jobs=[table_job(table, assets, settings.max_runtime), maintain],
        schedules=[schedule],
    )


def feature_definitions(config: LakesyncConfig, name: str) -> dg.Definitions:
    """A feature table's asset (kept fresh by its automation condition) and its job."""
    asset = feature_asset(config, name)
    online = online_spec(config, name)
    return dg.Definitions(
        assets=[asset, *([online] if online is not None else [])],
        jobs=[feature_job(name, asset, config.features[name].max_runtime)],
    )


def automation_sensor(config: LakesyncConfig) -> list[dg.AutomationConditionSensorDefinition]:
    """Runs by default, so the daemon refreshes feature tables when their inputs change (never
    on a failed contract), and the catalog after any table changed."""
    return [
        dg.AutomationConditionSensorDefinition(
            "refresh_downstream",
            target=dg.AssetSelection.keys(*(feature_key(name) for name in config.features), CATALOG_KEY),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=max(1, int(config.lakehouse.refresh_interval)),
            description="Materializes feature tables whose inputs changed (never on a failed contract) "
            "and the catalog after its tables changed",
        )
    ]


def build_definitions(config: LakesyncConfig, *, location: str | None = None) -> dg.Definitions:
    """All definitions of a configuration: lakes, tables, the ledger and the lakehouse resource.

    ``location``: the code location's name, when known, to link a lake dataset to its sensor.
    """
    return dg.Definitions.merge(
        *(lake_definitions(config, name, location) for name in config.lakes),
        *(table_definitions(config, name) for name in config.tables),
        *(feature_definitions(config, name) for name in config.features),
        dg.Definitions(
            assets=[ledger_spec(), drift_spec(), audit_spec(), catalog_asset(config)],
            sensors=automation_sensor(config),
            resources={
                "lakehouse": lakehouse_resource(config),
                **pii_key_resource(config),
                **lake_resources(config),
            },
        ),
    )

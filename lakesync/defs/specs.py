"""The asset specs generated from the configuration (what each asset is, before how it is made).

- ``lakes/<lake>/<dataset>``: the files of a lake dataset (external: lakesync reads, never
  writes them); observed by its sensor and by every ingestion run.
- ``lakehouse/<table>`` and ``lakehouse/_quarantine/<table>``: one multi-asset per unified table.
- ``lakehouse/_ledger``, ``lakehouse/_drift``, ``lakehouse/_audit``: lakesync's own tables.
"""

from collections.abc import Mapping

import dagster as dg

from lakesync.commit.provenance import Provenance
from lakesync.config import LakesyncConfig, ResolvedContract
from lakesync.config.datasets import Dataset
from lakesync.config.storage import AnyLake
from lakesync.defs.metadata import (
    AUDIT_KEY,
    DRIFT_KEY,
    LEDGER_KEY,
    column_lineage,
    column_schema,
    dataset_key,
    quarantine_key,
    sensor_name,
    table_key,
)

PII_TAG = "lakesync/pii"
"""``true`` on every asset holding personal data (a ``pii`` or ``subject_key`` column): the UI's
``tag:lakesync/pii=true`` selection finds them."""


def asset_tags(tags: Mapping[str, str], contract: ResolvedContract) -> dict[str, str]:
    """An asset's configured tags, plus :data:`PII_TAG` when its rows hold personal data."""
    personal = bool(contract.pii or contract.subjects)
    return {**tags, **({PII_TAG: "true"} if personal else {})}


def dataset_columns(dataset: Dataset, contract: ResolvedContract) -> dg.TableSchema:
    """A dataset's columns as its files name them (the configured mapping), with the type each
    is converted to and the canonical column it becomes."""
    source = {canonical: name for name, canonical in dataset.columns.items()}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=source.get(c.name, c.name),
                type=c.type.name,
                description=f"-> {dataset.table}.{c.name}" + (f" ({c.pii.describe()})" if c.pii else ""),
                tags={"pii": c.pii.treatment} if c.pii is not None else None,
            )
            for c in contract.columns
        ]
    )


def lake_dataset_spec(  # noqa: PLR0913 - keyword-only context of one spec
    lake_name: str,
    lake: AnyLake,
    name: str,
    dataset: Dataset,
    contract: ResolvedContract,
    *,
    location: str | None = None,
) -> dg.AssetSpec:
    """The files of a lake dataset. Dagster links a sensor only from the assets its job
    materializes, so the sensor that watches these files is named (and linked, when the code
    location's name is known) in the metadata."""
    sensor = sensor_name(lake_name, name)
    every = f"every {dataset.sensor.interval:g} s" if dataset.sensor.enabled else "stopped by default"
    watched: dict[str, object] = {"watched_by": f"sensor {sensor} ({every}; Automation page)"}
    if location:
        watched["sensor"] = dg.MetadataValue.url(f"/locations/{location}/sensors/{sensor}")
    return dg.AssetSpec(
        key=dataset_key(lake_name, name),
        description=dataset.description
        or f"{dataset.format} files matching `{dataset.pattern}` in the {lake.provider} lake `{lake_name}`",
        group_name=lake_name,
        kinds={lake.provider, dataset.format},
        owners=[*dict.fromkeys([*dataset.owners, *lake.owners])] or None,
        tags={"lakesync/lake": lake_name, **asset_tags(dataset.tags, contract)},
        metadata={
            "dagster/column_schema": dataset_columns(dataset, contract),
            "dagster/table_name": f"{lake_name}.{name}",
            "lake_location": lake.location,
            "pattern": dataset.pattern,
            "format": dataset.format,
            "feeds_table": dataset.table,
            "drift_policy": dataset.drift or "(table's)",
            **watched,
        },
    )


def ledger_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=LEDGER_KEY,
        description="Every file lakesync planned, ingested or quarantined, per dataset batch",
        group_name="lakehouse",
        kinds={"delta"},
    )


def audit_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=AUDIT_KEY,
        description="The audit trail: every file and batch ingested or quarantined (source, size, etag, "
        "rows, table version, run, credential names) and every drift decision; `lakesync audit` queries it",
        group_name="lakehouse",
        kinds={"delta"},
    )


def catalog_description() -> str:
    return (
        "Every asset and column of every lake, table and feature: canonical and source names, types, "
        "personal data, checks, owners, versions, freshness; `lakesync catalog search` queries it"
    )


def drift_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=DRIFT_KEY,
        description="Schema drift events of every dataset, and the decisions reviewers took",
        group_name="lakehouse",
        kinds={"delta"},
    )


def feeding(config: LakesyncConfig, table: str) -> list[tuple[str, str]]:
    """(lake, dataset) of every dataset feeding ``table``, in configuration order."""
    return [
        (lake_name, ds_name)
        for lake_name, lake in config.lakes.items()
        for ds_name, ds in lake.datasets.items()
        if ds.table == table
    ]


def table_specs(config: LakesyncConfig, table: str, contract: ResolvedContract) -> list[dg.AssetSpec]:
    """The unified table and its quarantine, both materialized by the table's sync."""
    settings = config.tables[table]
    deps = [dataset_key(lake, name) for lake, name in feeding(config, table)]
    table_spec = dg.AssetSpec(
        key=table_key(table),
        deps=deps,
        description=settings.description
        or f"Unified `{table}` table ({settings.mode}, drift: {settings.drift})",
        group_name="lakehouse",
        kinds={"delta", "polars", "pandera"},
        owners=settings.owners or None,
        tags=asset_tags(settings.tags, contract) or None,
        skippable=True,
        metadata={
            "dagster/column_schema": column_schema(contract, provenance=Provenance.of(config)),
            "dagster/column_lineage": column_lineage(config, table, contract),
            "dagster/table_name": table,
            "mode": settings.mode,
            "keys": ", ".join(settings.keys) or "(none)",
            "partition_columns": ", ".join(settings.partition_by) or "(none)",
            "max_failed_rows": settings.max_failed_rows,
            "drift_policy": settings.drift,
            "contract_fingerprint": contract.fingerprint,
        },
    )
    quarantine_spec = dg.AssetSpec(
        key=quarantine_key(table),
        deps=deps,
        description=f"Rows and files rejected on their way to `{table}`, each with its reason and source",
        group_name="lakehouse",
        kinds={"delta"},
        skippable=True,
    )
    return [table_spec, quarantine_spec]

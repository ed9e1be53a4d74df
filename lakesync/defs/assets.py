"""Assets generated from the configuration.

- ``lakes/<lake>/<dataset>``: the files of a lake dataset (external: lakesync reads, never
  writes them); observed by its sensor and by every ingestion run.
- ``lakehouse/<table>`` and ``lakehouse/_quarantine/<table>``: one multi-asset per unified
  table, materialized by ingesting what is new in the datasets feeding it.
- ``lakehouse/_ledger``: every file planned, ingested or quarantined.
"""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (  # not exported by dagster
    UnresolvedAssetJobDefinition,
)
from pydantic import Field

from lakesync.commit.delta import Provenance
from lakesync.config import LakesyncConfig, ResolvedContract
from lakesync.config.models import Dataset
from lakesync.defs.checks import (
    CONSERVATION_CHECK,
    CONTRACT_CHECK,
    check_result,
    drift_evaluation,
    expectations_result,
    table_check_specs,
    volume_evaluation,
)
from lakesync.defs.lakes import AnyLake, lake_resource, location, resource_key
from lakesync.defs.metadata import (
    AUDIT_KEY,
    DRIFT_KEY,
    LEDGER_KEY,
    column_lineage,
    column_schema,
    dataset_batch_metadata,
    dataset_key,
    delta_metadata,
    quarantine_key,
    quarantine_metadata,
    table_key,
    table_metadata,
)
from lakesync.defs.resources import PII_KEY
from lakesync.discover import Ledger
from lakesync.monitor import conservation_verdict, contract_verdict
from lakesync.pipeline import sync_table
from lakesync.record import TableSync

TABLE_TAG = "lakesync/table"
DATASET_TAG = "lakesync/dataset"
CONTRACT_TAG = "lakesync/contract"
"""Set to ``failed`` on a run whose contract check failed with ERROR: its data is committed, so
the run is not retried and does not pause the dataset's sensor."""
_NO_RETRY_TAG = "dagster/retry_on_asset_or_op_failure"


class SyncConfig(dg.Config):
    """Run configuration of a table's sync."""

    datasets: list[str] = Field(
        default_factory=list,
        description="<lake>.<dataset> keys to ingest; empty: every dataset feeding the table",
    )


def lake_dataset_spec(lake_name: str, lake: AnyLake, name: str, dataset: Dataset) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=dataset_key(lake_name, name),
        description=dataset.description
        or f"{dataset.format} files matching `{dataset.pattern}` in the {lake.provider} lake `{lake_name}`",
        group_name=lake_name,
        kinds={lake.provider, dataset.format},
        owners=lake.owners or None,
        tags={"lakesync/lake": lake_name},
        metadata={
            "lake_location": location(lake),
            "pattern": dataset.pattern,
            "format": dataset.format,
            "feeds_table": dataset.table,
            "drift_policy": dataset.drift or "(table's)",
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


def drift_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=DRIFT_KEY,
        description="Schema drift events of every dataset, and the decisions reviewers took",
        group_name="lakehouse",
        kinds={"delta"},
    )


def op_name(table: str) -> str:
    return f"sync_{table}"


def job_name(table: str) -> str:
    return f"ingest_{table}"


def table_assets(config: LakesyncConfig, table: str, contract: ResolvedContract) -> dg.AssetsDefinition:
    """The multi-asset that syncs one unified table (and its quarantine) from its datasets."""
    settings = config.tables[table]
    deps = [
        dataset_key(lake_name, ds_name)
        for lake_name, lake in config.lakes.items()
        for ds_name, ds in lake.datasets.items()
        if ds.table == table
    ]
    project = config  # the op's own `config` parameter is its run configuration
    volumes = {
        f"{lake_name}.{ds_name}": ds.volume
        for lake_name, lake in config.lakes.items()
        for ds_name, ds in lake.datasets.items()
        if ds.table == table
    }
    feeding = sorted(
        {lake for lake, spec in config.lakes.items() for ds in spec.datasets.values() if ds.table == table}
    )
    cloud = [lake for lake in feeding if lake_resource(config.lakes[lake]) is not None]
    table_spec = dg.AssetSpec(
        key=table_key(table),
        deps=deps,
        description=settings.description
        or f"Unified `{table}` table ({settings.mode}, drift: {settings.drift})",
        group_name="lakehouse",
        kinds={"delta", "polars", "pandera"},
        skippable=True,
        metadata={
            "dagster/column_schema": column_schema(contract, provenance=Provenance.of(project)),
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

    hashing = [PII_KEY] if contract.hashed else []

    @dg.multi_asset(
        name=op_name(table),
        specs=[table_spec, quarantine_spec],
        check_specs=table_check_specs(table, expectations=settings.expectations),
        can_subset=True,
        required_resource_keys={"lakehouse", *hashing, *(resource_key(lake) for lake in cloud)},
        description=f"Ingest new files of every dataset feeding `{table}`, exactly once",
    )
    def sync(
        context: dg.AssetExecutionContext, config: SyncConfig
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:  # type: ignore[type-arg]
        target = context.resources.lakehouse.get()
        if hashing:
            target = replace(target, pii_key=context.resources.pii_key.key)
        stores = {
            lake: getattr(context.resources, resource_key(lake)).store(lake, project.lakes[lake])
            for lake in cloud
        }
        selected = config.datasets or None
        ledger = Ledger(target)
        result = sync_table(
            project,
            table,
            lakehouse=target,
            run_id=context.run_id,
            datasets=selected,
            contract=contract,
            stores=stores,
        )
        for dataset in result.datasets:
            observed = dataset_batch_metadata(dataset)
            if dataset.drift and result.columns != result.columns_before:
                observed["schema_before"] = dg.MetadataValue.json(result.columns_before)
                observed["schema_after"] = dg.MetadataValue.json(result.columns)
            context.log_event(
                dg.AssetObservation(asset_key=dataset_key(dataset.lake, dataset.dataset), metadata=observed)
            )
            context.log_event(drift_evaluation(dataset))
            volume = volume_evaluation(dataset, ledger, volumes[dataset.key])
            if volume is not None:
                context.log_event(volume)
            for report in dataset.drift:
                log = context.log.warning if report.needs_review else context.log.info
                done = f" ({'; '.join(report.actions)})" if report.actions else ""
                log("%s: schema drift in %s: %s%s", dataset.key, report.file, report.summary(), done)
        # One sync writes the table, its quarantine and the ledger together, whichever of them
        # was selected; those not selected are recorded as runtime materializations.
        selected_keys = context.selected_asset_keys
        written: list[tuple[dg.AssetKey, dict[str, Any]]] = []
        if result.commits:
            written.append(
                (
                    table_key(table),
                    {
                        **table_metadata(result, uri=target.table_uri(table)),
                        **delta_metadata(target.open(target.table_uri(table))),
                        "dagster/column_schema": column_schema(
                            contract, result.columns, Provenance.of(project)
                        ),
                    },
                )
            )
        else:
            context.log.info("%s: nothing new to ingest", table)
        if result.rows_quarantined or result.files_quarantined:
            written.append(
                (quarantine_key(table), quarantine_metadata(result, uri=target.quarantine_uri(table)))
            )
        for key, metadata in written:
            if key in selected_keys:
                yield dg.MaterializeResult(asset_key=key, metadata=metadata)
            else:
                context.log_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))
        if result.commits and settings.expectations:
            yield expectations_result(table, settings.expectations, target)
        if any(d.batches for d in result.datasets):
            yield from _table_checks(context, result, settings.max_failed_rows)
        if result.commits:
            context.log_event(
                dg.AssetMaterialization(asset_key=LEDGER_KEY, metadata={"dagster/uri": target.ledger_uri})
            )
        if any(d.batches for d in result.datasets):
            context.log_event(
                dg.AssetMaterialization(asset_key=AUDIT_KEY, metadata={"dagster/uri": target.audit_uri})
            )
        if any(d.drift_held_back or d.drift_handled for d in result.datasets):
            context.log_event(
                dg.AssetMaterialization(asset_key=DRIFT_KEY, metadata={"dagster/uri": target.drift_uri})
            )
        failed = [d for d in result.datasets if d.error]
        if failed:
            raise dg.Failure(
                description="; ".join(f"{d.key}: {d.error}" for d in failed),
                metadata={"failed_datasets": ", ".join(d.key for d in failed)},
            )

    return sync


def _table_checks(
    context: dg.AssetExecutionContext, result: TableSync, max_failed_rows: float
) -> Iterator[dg.AssetCheckResult]:
    """The contract and conservation checks of a sync that read something."""
    contract = contract_verdict(result, max_failed_rows=max_failed_rows)
    conservation = conservation_verdict(result)
    if not (contract.passed and conservation.passed) and "ERROR" in (
        contract.severity if not contract.passed else "",
        conservation.severity if not conservation.passed else "",
    ):
        # The rows are committed (exactly once); what failed is the data. Retrying would not help,
        # and the dataset's sensor goes on with new files: the check blocks downstream assets.
        context.instance.add_run_tags(context.run_id, {CONTRACT_TAG: "failed", _NO_RETRY_TAG: "false"})
        context.log.error(
            "%s: %s", result.table, contract.description if not contract.passed else conservation.description
        )
    key = table_key(result.table)
    yield check_result(contract, asset_key=key, check_name=CONTRACT_CHECK)
    yield check_result(conservation, asset_key=key, check_name=CONSERVATION_CHECK)


def table_job(table: str, assets: dg.AssetsDefinition) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=job_name(table),
        selection=dg.AssetSelection.assets(assets),
        tags={TABLE_TAG: table},
        description=f"Ingest what is new for `{table}` (launched by the dataset sensors and `lakesync sync`)",
    )

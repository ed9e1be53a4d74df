"""The multi-asset that syncs one unified table, and the job that runs it.

Its op runs :func:`lakesync.pipeline.sync_table` and turns the :class:`TableSync` it returns
into Dagster events in one place: materializations (table, quarantine, bookkeeping tables),
observations of the lake datasets (the full result rides on the table's observation, for the
CLI), drift and volume checks of the datasets, contract and conservation checks of the table.
"""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.definitions.unresolved_asset_job_definition import (  # not exported by dagster
    UnresolvedAssetJobDefinition,
)
from pydantic import Field

from lakesync.commit.provenance import Provenance
from lakesync.config import LakesyncConfig, ResolvedContract
from lakesync.defs.checks import (
    CONSERVATION_CHECK,
    CONTRACT_CHECK,
    check_result,
    drift_evaluation,
    expectations_result,
    table_check_specs,
    volume_evaluation,
)
from lakesync.defs.metadata import (
    AUDIT_KEY,
    DRIFT_KEY,
    LEDGER_KEY,
    MAX_RUNTIME_TAG,
    RESULT_KEY,
    column_schema,
    dataset_batch_metadata,
    dataset_key,
    delta_metadata,
    quarantine_key,
    quarantine_metadata,
    table_key,
    table_metadata,
)
from lakesync.defs.pools import table_pool
from lakesync.defs.providers import needs_resource, resource_key
from lakesync.defs.resources import PII_KEY
from lakesync.defs.specs import feeding, table_specs
from lakesync.monitor import conservation_verdict, contract_verdict
from lakesync.pipeline import SyncOptions, sync_table
from lakesync.pipeline.results import TableSync
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger

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
    planned: dict[str, int] = Field(
        default_factory=dict,
        description="<lake>.<dataset> -> batch: ingest only the batches a sensor planned, up to that one "
        "(the lake is not listed again); empty: look for new files now",
    )


def op_name(table: str) -> str:
    return f"sync_{table}"


def job_name(table: str) -> str:
    return f"ingest_{table}"


def table_assets(config: LakesyncConfig, table: str, contract: ResolvedContract) -> dg.AssetsDefinition:
    """The multi-asset that syncs one unified table (and its quarantine) from its datasets."""
    settings = config.tables[table]
    project = config  # the op's own `config` parameter is its run configuration
    cloud = sorted({lake for lake, _ in feeding(config, table) if needs_resource(config.lakes[lake])})
    hashing = [PII_KEY] if contract.hashed else []

    @dg.multi_asset(
        name=op_name(table),
        specs=table_specs(config, table, contract),
        check_specs=table_check_specs(table, expectations=settings.expectations),
        can_subset=True,
        pool=table_pool(table),  # one sync of the table at a time, in every run (defs/pools.py)
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
        options = SyncOptions(
            datasets=config.datasets or (list(config.planned) if config.planned else None),
            planned=config.planned or None,
            contract=contract,
            stores=stores,
        )
        result = sync_table(project, table, lakehouse=target, run_id=context.run_id, options=options)
        _observe(context, project, result, target)
        yield from _materialize(context, result, target, contract, Provenance.of(project))
        if result.commits and settings.expectations:
            yield expectations_result(table, settings.expectations, target)
        if any(d.batches for d in result.datasets):
            yield from _table_checks(context, result, settings.max_failed_rows)
        failed = [d for d in result.datasets if d.error]
        if failed:
            raise dg.Failure(
                description="; ".join(f"{d.key}: {d.error}" for d in failed),
                metadata={"failed_datasets": ", ".join(d.key for d in failed)},
            )

    return sync


def _observe(
    context: dg.AssetExecutionContext, config: LakesyncConfig, result: TableSync, target: Lakehouse
) -> None:
    """What the run saw of each lake dataset: an observation, the drift and volume checks, logs.

    A dataset with nothing new, nothing waiting and no error is left as its last run showed it:
    each event costs a write to the instance's event log (~25 ms on SQLite), and a sync of 200
    quiet datasets would spend seconds saying nothing happened."""
    changed = [
        d for d in result.datasets if d.batches or d.error or d.drift or d.files_pending or d.files_changed
    ]
    history = Ledger(target).batch_events([d.key for d in changed if d.batch_rows])  # one read for all
    for dataset in changed:
        observed = dataset_batch_metadata(dataset)
        if dataset.drift and result.columns != result.columns_before:
            observed["schema_before"] = dg.MetadataValue.json(result.columns_before)
            observed["schema_after"] = dg.MetadataValue.json(result.columns)
        key = dataset_key(dataset.lake, dataset.dataset)
        context.log_event(dg.AssetObservation(asset_key=key, metadata=observed))
        context.log_event(drift_evaluation(dataset))
        settings = config.lakes[dataset.lake].datasets[dataset.dataset].volume
        volume = volume_evaluation(dataset, history.get(dataset.key, pl.DataFrame()), settings)
        if volume is not None:
            context.log_event(volume)
        for report in dataset.drift:
            log = context.log.warning if report.needs_review else context.log.info
            done = f" ({'; '.join(report.actions)})" if report.actions else ""
            log("%s: schema drift in %s: %s%s", dataset.key, report.file, report.summary(), done)
    metadata = {RESULT_KEY: dg.MetadataValue.json(result.to_json())}
    context.log_event(dg.AssetObservation(asset_key=table_key(result.table), metadata=metadata))


def _materialize(
    context: dg.AssetExecutionContext,
    result: TableSync,
    target: Lakehouse,
    contract: ResolvedContract,
    provenance: Provenance,
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    """One sync writes the table, its quarantine and the bookkeeping tables together, whichever
    of them was selected; those not selected are recorded as runtime materializations."""
    table = result.table
    written: list[tuple[dg.AssetKey, dict[str, Any]]] = []
    if result.commits:
        uri = target.table_uri(table)
        schema = column_schema(contract, result.columns, provenance)
        written.append(
            (
                table_key(table),
                {
                    **table_metadata(result, uri=uri),
                    **delta_metadata(target.open(uri)),
                    "dagster/column_schema": schema,
                },
            )
        )
    else:
        context.log.info("%s: nothing new to ingest", table)
    if result.rows_quarantined or result.files_quarantined:
        written.append((quarantine_key(table), quarantine_metadata(result, uri=target.quarantine_uri(table))))
    for key, metadata in written:
        if key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        else:
            context.log_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))
    read = any(d.batches for d in result.datasets)
    drifted = any(d.drift_held_back or d.drift_handled for d in result.datasets)
    for key, uri, changed in (
        (LEDGER_KEY, target.ledger_uri, result.commits),
        (AUDIT_KEY, target.audit_uri, read),
        (DRIFT_KEY, target.drift_uri, drifted),
    ):
        if changed:
            context.log_event(dg.AssetMaterialization(asset_key=key, metadata={"dagster/uri": uri}))


def _table_checks(
    context: dg.AssetExecutionContext, result: TableSync, max_failed_rows: float
) -> Iterator[dg.AssetCheckResult]:
    """The contract and conservation checks of a sync that read something."""
    contract = contract_verdict(result, max_failed_rows=max_failed_rows)
    conservation = conservation_verdict(result)
    failed = [v for v in (contract, conservation) if not v.passed]
    if failed:
        # The rows are committed (exactly once); what failed is the data. Retrying would not help,
        # and the dataset's sensor goes on with new files: the check blocks downstream assets.
        context.instance.add_run_tags(context.run_id, {CONTRACT_TAG: "failed", _NO_RETRY_TAG: "false"})
        context.log.error("%s: %s", result.table, failed[0].description)
    elif contract.outcome == "passed with warnings":
        context.log.warning("%s: contract %s", result.table, contract.description)
    key = table_key(result.table)
    yield check_result(contract, asset_key=key, check_name=CONTRACT_CHECK)
    yield check_result(conservation, asset_key=key, check_name=CONSERVATION_CHECK)


def table_job(table: str, assets: dg.AssetsDefinition, max_runtime: float) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=job_name(table),
        selection=dg.AssetSelection.assets(assets),
        tags={TABLE_TAG: table, MAX_RUNTIME_TAG: str(int(max_runtime))},
        description=f"Ingest what is new for `{table}` (launched by the dataset sensors and `lakesync sync`)",
    )

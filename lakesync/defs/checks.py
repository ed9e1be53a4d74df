"""Asset checks, generated per table and dataset from the configuration.

- ``lakes/<lake>/<dataset>``: ``drift`` and ``volume`` (reported by every ingestion run),
  ``freshness`` (reported by the dataset's sensor as it ticks); each also runs on its own.
- ``lakehouse/<table>``: ``contract`` and ``conservation`` (reported by the sync; blocking),
  ``expectations`` (a Great Expectations suite, when the table names one).

What passes and fails is decided in :mod:`lakesync.monitor`; this module only wires it.
"""

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lakesync.config import LakesyncConfig
from lakesync.config.datasets import VolumeSettings
from lakesync.defs.metadata import dataset_key, md_table, table_key
from lakesync.defs.providers import needs_resource, resource_key, store_for
from lakesync.defs.resources import LakehouseResource
from lakesync.monitor import (
    Verdict,
    batch_history,
    drift_verdict,
    events_verdict,
    freshness_verdict,
    volume_verdict,
)
from lakesync.monitor.expectations import run_suite
from lakesync.pipeline.results import DatasetSync
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.scan import DatasetScan, scan_dataset
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger

DRIFT_CHECK = "drift"


def drift_evaluation(result: DatasetSync) -> dg.AssetCheckEvaluation:
    """The drift check of one dataset after an ingestion run (judged by :func:`drift_verdict`)."""
    reports = {"drift_reports": dg.MetadataValue.json([r.to_dict() for r in result.drift])}
    return check_evaluation(
        drift_verdict(result),
        asset_key=dataset_key(result.lake, result.dataset),
        check_name=DRIFT_CHECK,
        metadata=reports if result.drift else None,
    )


def drift_check(lake: str, dataset: str) -> dg.AssetChecksDefinition:
    """The declared drift check of a dataset; run on its own, it reports open drift events."""
    key = f"{lake}.{dataset}"

    @dg.asset_check(
        asset=dataset_key(lake, dataset),
        name=DRIFT_CHECK,
        description="Schema drift of the dataset's files: ERROR while drift events wait for review",
    )
    def check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        events = DriftLog(lakehouse.get()).events(dataset=key)
        open_events = [e for e in events if e.status == "open"]
        metadata: dict[str, Any] = {
            "open_events": len(open_events),
            "events": dg.MetadataValue.md(
                "\n".join(f"- `{e.id}` {e.status}: {e.report.summary()}" for e in events[:20]) or "none"
            ),
        }
        verdict = (
            Verdict("failed", f"{len(open_events)} drift event(s) wait for review", severity="ERROR")
            if open_events
            else Verdict("passed", "no drift waits for review")
        )
        asset_key = dataset_key(lake, dataset)
        return check_result(verdict, asset_key=asset_key, check_name=DRIFT_CHECK, metadata=metadata)

    return check


# -- verdicts of lakesync.monitor as Dagster check evaluations -------------------------------

CONTRACT_CHECK = "contract"
CONSERVATION_CHECK = "conservation"
VOLUME_CHECK = "volume"
FRESHNESS_CHECK = "freshness"
EVENTS_CHECK = "events"
EXPECTATIONS_CHECK = "expectations"
BLOCKING_CHECKS = (CONTRACT_CHECK, CONSERVATION_CHECK)
"""A table's checks that, failed, hold back the assets downstream (features)."""


def verdict_metadata(verdict: Verdict) -> dict[str, Any]:
    metadata: dict[str, Any] = {"verdict": verdict.outcome}
    for name, value in verdict.facts.items():
        metadata[name] = dg.MetadataValue.timestamp(value) if isinstance(value, datetime) else value
    for name, (header, rows) in verdict.tables.items():
        metadata[name] = dg.MetadataValue.md(md_table(header, rows))
    return metadata


def _severity(verdict: Verdict) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if verdict.severity == "ERROR" else dg.AssetCheckSeverity.WARN


def _verdict_fields(
    verdict: Verdict, asset_key: dg.AssetKey, check_name: str, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """Passed with warnings is passed for Dagster (it must not hold back downstream automation);
    the outcome is the description's first words and the ``verdict`` metadata."""
    return {
        "asset_key": asset_key,
        "check_name": check_name,
        "passed": verdict.passed,
        "severity": _severity(verdict),
        "description": verdict.description,
        "metadata": {**verdict_metadata(verdict), **(metadata or {})},
    }


def check_result(
    verdict: Verdict, *, asset_key: dg.AssetKey, check_name: str, metadata: dict[str, Any] | None = None
) -> dg.AssetCheckResult:
    """A verdict as the result of a check run in an op."""
    return dg.AssetCheckResult(**_verdict_fields(verdict, asset_key, check_name, metadata))


def check_evaluation(
    verdict: Verdict, *, asset_key: dg.AssetKey, check_name: str, metadata: dict[str, Any] | None = None
) -> dg.AssetCheckEvaluation:
    """A verdict as an evaluation logged from elsewhere (a sensor, another asset's op)."""
    return dg.AssetCheckEvaluation(**_verdict_fields(verdict, asset_key, check_name, metadata))


def table_check_specs(table: str, *, expectations: str | None = None) -> list[dg.AssetCheckSpec]:
    """Checks the table's sync reports on every commit: contract and conservation block downstream
    assets on ERROR; a Great Expectations suite (when the table names one) warns."""
    suite = (
        [
            dg.AssetCheckSpec(
                EXPECTATIONS_CHECK,
                asset=table_key(table),
                description=f"Great Expectations suite {Path(expectations).name} on the committed version",
            )
        ]
        if expectations
        else []
    )
    return [
        *suite,
        dg.AssetCheckSpec(
            CONTRACT_CHECK,
            asset=table_key(table),
            blocking=True,
            description="The pandera contract on this run's rows: failures by rule and column with "
            "examples; ERROR (blocking downstream) above the table's max_failed_rows",
        ),
        dg.AssetCheckSpec(
            CONSERVATION_CHECK,
            asset=table_key(table),
            blocking=True,
            description="Rows read = rows committed + rows quarantined, per dataset, for this run",
        ),
    ]


def volume_evaluation(
    result: DatasetSync, events: pl.DataFrame, settings: VolumeSettings
) -> dg.AssetCheckEvaluation | None:
    """The volume check of a dataset after a run that ingested batches (``events``: its ledger)."""
    if not result.batch_rows:
        return None
    history = batch_history(events)
    verdict = volume_verdict(history, settings=settings, latest_batch=max(b for b, _ in result.batch_rows))
    return check_evaluation(
        verdict, asset_key=dataset_key(result.lake, result.dataset), check_name=VOLUME_CHECK
    )


def _events(ledger: Ledger, key: str) -> pl.DataFrame:
    events = ledger.read(key).events
    return events if events is not None else pl.DataFrame()


def volume_check(lake: str, dataset: str, settings: VolumeSettings) -> dg.AssetChecksDefinition:
    key = f"{lake}.{dataset}"

    @dg.asset_check(
        asset=dataset_key(lake, dataset),
        name=VOLUME_CHECK,
        description=f"Rows per batch and per day against the median of recent history "
        f"(tolerance {settings.tolerance:.0%}, judged after {settings.min_history} batches/days)",
    )
    def check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        history = batch_history(_events(Ledger(lakehouse.get()), key))
        latest = int(history["batch"].max()) if history.height else 0  # type: ignore[arg-type]
        verdict = volume_verdict(history, settings=settings, latest_batch=latest)
        return check_result(verdict, asset_key=dataset_key(lake, dataset), check_name=VOLUME_CHECK)

    return check


def freshness_of(scan: DatasetScan, max_lag: float | None) -> Verdict:
    return freshness_verdict(
        newest_file=scan.newest_file,
        oldest_waiting=scan.oldest_waiting,
        last_ingested=scan.last_ingested,
        max_lag=max_lag,
    )


def freshness_check(config: LakesyncConfig, runtime: DatasetRuntime) -> dg.AssetChecksDefinition:
    """Declared freshness check of a dataset: its sensor reports it as it ticks; run on its own it
    lists the lake now."""
    lake = config.lakes[runtime.lake]
    key = resource_key(runtime.lake) if needs_resource(lake) else None
    max_lag = runtime.config.freshness.max_lag
    lag = f"max_lag {max_lag:.0f} s" if max_lag else "no max_lag set"
    asset_key = dataset_key(runtime.lake, runtime.name)

    @dg.asset_check(
        asset=asset_key,
        name=FRESHNESS_CHECK,
        description=f"Age of the newest file and of files waiting to be ingested ({lag})",
        required_resource_keys={"lakehouse", *([key] if key else [])},
    )
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        resource = getattr(context.resources, key) if key else None
        live = replace(runtime, store=store_for(runtime.lake, lake, resource))
        scan = scan_dataset(live, Ledger(context.resources.lakehouse.get()).read(runtime.key))
        return check_result(freshness_of(scan, max_lag), asset_key=asset_key, check_name=FRESHNESS_CHECK)

    return check


def events_check(lake: str, dataset: str) -> dg.AssetChecksDefinition:
    """Declared events check of a dataset whose lake is in events mode: the lake's intake sensor
    reports it after each reconciliation; run on its own it reads the intake log."""
    asset_key = dataset_key(lake, dataset)

    @dg.asset_check(
        asset=asset_key,
        name=EVENTS_CHECK,
        description="Files that landed without a storage event, found by the last reconciliation (WARN)",
        required_resource_keys={"lakehouse"},
    )
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from lakesync.state.inbox import Inbox  # noqa: PLC0415 - only for lakes in events mode

        summary = Inbox(context.resources.lakehouse.get()).summary(lake)
        return check_result(events_verdict(summary), asset_key=asset_key, check_name=EVENTS_CHECK)

    return check


def expectations_result(table: str, suite_path: str, lakehouse: Lakehouse) -> dg.AssetCheckResult:
    """The table's Great Expectations suite on its committed version (WARN: it does not block)."""
    key = table_key(table)
    try:
        run = run_suite(suite_path, lakehouse, table)
    except Exception as exc:  # noqa: BLE001 - a broken suite is reported on the check, not fatal to the sync
        broken = Verdict("failed", f"the suite {suite_path} could not run: {type(exc).__name__}: {exc}")
        return check_result(broken, asset_key=key, check_name=EXPECTATIONS_CHECK)
    rows = [(o.type, o.column, "passed" if o.success else "FAILED", o.observed) for o in run.outcomes]
    metadata: dict[str, Any] = {
        "suite": run.suite,
        "delta_version": run.delta_version,
        "rows_validated": run.rows,
        "expectations": len(run.outcomes),
        "failed": run.failed,
        "results": dg.MetadataValue.md(md_table(["expectation", "column", "result", "observed"], rows)),
    }
    if run.docs_index:
        metadata["data_docs"] = dg.MetadataValue.url(run.docs_index)
    verdict = (
        Verdict("failed", f"{run.failed} of {len(run.outcomes)} expectations failed")
        if run.failed or not run.success
        else Verdict("passed", f"all {len(run.outcomes)} expectations passed")
    )
    verdict = replace(verdict, detail=f"{verdict.detail} on version {run.delta_version}")
    return check_result(verdict, asset_key=key, check_name=EXPECTATIONS_CHECK, metadata=metadata)

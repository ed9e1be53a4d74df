"""Launch the same Dagster jobs the sensors launch (for `lakesync sync` and the demos), recorded in
the instance, and read back what they did: the :class:`TableSync` each run reports."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from deltalake.exceptions import DeltaError

from lakesync.config import LakesyncConfig
from lakesync.defs.assets import TABLE_TAG, job_name, op_name
from lakesync.defs.catalog import rebuild_catalog, report_catalog
from lakesync.defs.checks import BLOCKING_CHECKS
from lakesync.defs.features import BLOCKED_TAG, ONLINE_CHECK, feature_job_name
from lakesync.defs.instance import InstanceError
from lakesync.defs.metadata import RESULT_KEY, feature_key
from lakesync.defs.prescan import TablePlan, plan_tables
from lakesync.defs.providers import open_lakehouse
from lakesync.defs.queue import QueueError
from lakesync.defs.resources import config_problem
from lakesync.defs.runs import Finish, RunOutcome, Runs, step_error
from lakesync.features.build import FeatureError, built_from, input_versions
from lakesync.features.online import lag
from lakesync.features.serving import OnlineStoreError
from lakesync.pipeline.results import DatasetSync, TableSync
from lakesync.pipeline.runtime import DatasetRuntime, dataset_runtimes
from lakesync.pipeline.status import table_statuses
from lakesync.report.summary import CheckLine, FeatureLine, TableLine
from lakesync.state.lakehouse import Lakehouse, row_count

if TYPE_CHECKING:
    from lakesync.discover.events.intake import IntakeResult


@dataclass(frozen=True)
class SyncOutcome:
    datasets: list[DatasetSync]
    """What each dataset's sync did, in configuration order."""
    tables: list[TableLine]
    failures: list[str]
    run_ids: list[str]
    recorded: bool
    """Whether the runs are in a persistent Dagster instance (visible in the UI)."""
    checks: list[CheckLine] = field(default_factory=list)
    features: list[FeatureLine] = field(default_factory=list)
    intakes: list[str] = field(default_factory=list)
    """What each lake in events mode received (one line per lake)."""
    instance: str | None = None
    """Where the runs were recorded (``SQLite in ...``, ``Postgres database ... on host:port``)."""

    @property
    def ok(self) -> bool:
        return not self.failures


def _result(event: dg.DagsterEvent) -> TableSync | None:
    """The table sync a run reported (on the table's observation)."""
    if event.event_type_value != "ASSET_OBSERVATION":
        return None
    observation = event.asset_observation_data.asset_observation
    value = observation.metadata.get(RESULT_KEY)
    data = getattr(value, "data", None)
    return TableSync.from_json(data) if isinstance(data, dict) else None


def _check_line(event: dg.DagsterEvent) -> CheckLine | None:
    if event.event_type_value != "ASSET_CHECK_EVALUATION":
        return None
    evaluation = event.event_specific_data
    if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.asset_key.path[0] != "lakehouse":
        return None
    verdict = evaluation.metadata.get("verdict")
    status = str(getattr(verdict, "value", verdict) or ("passed" if evaluation.passed else "failed"))
    description = evaluation.description or ""
    if description.startswith(f"{status}: "):
        description = description[len(status) + 2 :]
    return CheckLine(evaluation.asset_key.path[-1], evaluation.check_name, status, description)


def _features(
    config: LakesyncConfig, lakehouse: Lakehouse, tables: set[str], runs: Runs
) -> tuple[list[FeatureLine], list[str]]:
    """The feature tables fed by ``tables``: those computed from their inputs' current versions
    as they are, the others brought up to date by their runs."""
    lines = [line for name in config.features if (line := _current(config, name, lakehouse, tables))]
    stale = {
        name
        for name, feature in config.features.items()
        if tables & set(feature.inputs) and name not in {f.feature for f in lines}
    }
    if not stale:
        return lines, []
    built, failures = _run_features(config, runs, stale)
    return sorted([*lines, *built], key=lambda f: list(config.features).index(f.feature)), failures


def _current(config: LakesyncConfig, name: str, lakehouse: Lakehouse, tables: set[str]) -> FeatureLine | None:
    """The line of a feature fed by ``tables`` already computed from its inputs' current versions
    (no run needed), else ``None``."""
    if not tables & set(config.features[name].inputs):
        return None
    try:
        current = built_from(lakehouse, name) == input_versions(config, name, lakehouse)
    except FeatureError:
        return None  # an input has no data yet: the feature's run says so
    snapshot = lakehouse.open(lakehouse.feature_uri(name)) if current else None
    if snapshot is None or _online_behind(config, name, lakehouse):
        return None  # its run publishes the online store again
    return FeatureLine(name, snapshot.version(), row_count(snapshot), "up to date")


def _online_behind(config: LakesyncConfig, name: str, lakehouse: Lakehouse) -> bool:
    """Whether the feature's online store does not hold its table's latest version."""
    try:
        found = lag(config, name, lakehouse)
    except OnlineStoreError:
        return True
    return found is not None and found.versions_behind > 0


def _run_features(config: LakesyncConfig, runs: Runs, names: set[str]) -> tuple[list[FeatureLine], list[str]]:
    """Bring the feature tables ``names`` up to date (each refuses on a failed contract)."""
    lines: list[FeatureLine] = []
    failures: list[str] = []
    started: list[tuple[str, Finish]] = []
    for name in config.features:
        if name not in names:
            continue
        run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        finish = runs.start(f"feature {name}", feature_job_name(name), run_config, {})
        if isinstance(finish, str):
            failures.append(f"feature {name}: not updated: {finish}")
            continue
        started.append((name, finish))
    for name, finish in started:
        outcome = finish()
        if isinstance(outcome, str):
            failures.append(outcome)
            continue
        run = runs.get()[0].get_run_by_id(outcome.run_id)
        blocked = run.tags.get(BLOCKED_TAG) if run is not None else None
        materialized = [
            e
            for e in outcome.events
            if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == feature_key(name)
        ]
        if not outcome.success:
            message = step_error(outcome.events)
            failures.append(f"feature {name}: {message} (run {outcome.run_id})")
            lines.append(FeatureLine(name, None, None, f"failed: {message}"))
        elif blocked:
            lines.append(FeatureLine(name, None, None, f"not updated: {blocked}"))
        elif materialized:
            values = {
                k: getattr(v, "value", v)
                for k, v in materialized[-1].step_materialization_data.materialization.metadata.items()
            }
            status = "updated" if values.get("recomputed") else "up to date"
            status += _online_status(outcome.events, name)
            version, rows = values.get("delta_version"), values.get("dagster/row_count")
            lines.append(
                FeatureLine(
                    name,
                    version if isinstance(version, int) else None,
                    rows if isinstance(rows, int) else None,
                    status,
                )
            )
    return lines, failures


def _online_status(events: Sequence[Any], name: str) -> str:
    """``; online store N version(s) behind: why`` when the run's online check failed."""
    for event in events:
        evaluation = getattr(event, "event_specific_data", None)
        if (
            event.event_type_value == "ASSET_CHECK_EVALUATION"
            and isinstance(evaluation, dg.AssetCheckEvaluation)
            and evaluation.check_name == ONLINE_CHECK
            and evaluation.asset_key == feature_key(name)
            and not evaluation.passed
        ):
            values = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
            if "error" in values:
                return f"; online store not updated: {values['error']}"
            return f"; online store {values.get('versions_behind')} version(s) behind"
    return ""


def _catalog(config: LakesyncConfig, lakehouse: Lakehouse, runs: Runs) -> list[str]:
    """Rebuild the catalog after the sync's runs, recorded as its materialization when the
    instance opens (its failure is the sync's own, in a sentence)."""
    try:
        metadata = rebuild_catalog(config, lakehouse)
    except (OSError, DeltaError) as exc:
        return [f"catalog: not rebuilt: {str(exc).splitlines()[0] if str(exc) else exc!r}"]
    with contextlib.suppress(InstanceError, QueueError):  # the sync said why already
        report_catalog(runs.get()[0], metadata)
    return []


def _run_table(runs: Runs, table: str, plan: TablePlan) -> Finish | str:
    """Start the run that ingests ``plan``'s batches of ``table``, or why it could not start."""
    # Planned datasets ingest their batches; any that could not be looked at lists itself.
    work = {"planned": plan.planned} if not plan.unplanned else {"datasets": [*plan.planned, *plan.unplanned]}
    run_config = {
        "ops": {op_name(table): {"config": work}},
        # The summary says what failed and why; Dagster's own log (tracebacks) with -v.
        "loggers": {"console": {"config": {"log_level": "INFO" if runs.verbose else "CRITICAL"}}},
    }
    return runs.start(table, job_name(table), run_config, {TABLE_TAG: table})


def _failure(table: str, result: RunOutcome, checks: list[CheckLine]) -> str:
    """Why a table's run failed: its blocking checks that failed, else the error that stopped it."""
    failed_checks = [
        c for c in checks if c.table == table and c.status == "failed" and c.check in BLOCKING_CHECKS
    ]
    message = (
        "; ".join(f"{c.check} check failed: {c.description}" for c in failed_checks)
        if failed_checks
        else step_error(result.events)
    )
    return f"{table}: {message} (run {result.run_id})"


def _sync_tables(
    config: LakesyncConfig,
    runtimes: Sequence[DatasetRuntime],
    prepared: Mapping[str, TablePlan],
    runs: Runs,
) -> tuple[dict[str, DatasetSync], list[str], list[str], list[CheckLine]]:
    """Start the run of every table with something planned, then follow each to its end."""
    lines: dict[str, DatasetSync] = {}
    failures: list[str] = []
    started: list[tuple[str, TablePlan, Finish]] = []
    for table in config.tables:
        table_runtimes = [r for r in runtimes if r.table == table]
        if not table_runtimes:
            continue
        plan = prepared[table]
        if plan.error is not None:
            failures.append(f"{table}: {plan.error}")
        if plan.idle or plan.error is not None:  # nothing new anywhere (or nothing planned): no run
            lines.update({r.key: plan.line(r) for r in table_runtimes if r.key in plan.scans})
            continue
        for r in table_runtimes:
            if r.key not in plan.planned and r.key not in plan.unplanned:
                lines[r.key] = plan.line(r)
        finish = _run_table(runs, table, plan)
        if isinstance(finish, str):
            failures.append(f"{table}: not synced: {finish}")
        else:
            started.append((table, plan, finish))
    run_ids: list[str] = []
    checks: list[CheckLine] = []
    for table, plan, finish in started:
        result = finish()
        if isinstance(result, str):
            failures.append(result)
            continue
        run_ids.append(result.run_id)
        checks.extend(line for e in result.events if (line := _check_line(e)) is not None)
        for synced in (s for e in result.events if (s := _result(e)) is not None):
            lines.update({d.key: plan.completed(d) for d in synced.datasets})
        if not result.success:
            failures.append(_failure(table, result, checks))
    return lines, failures, run_ids, checks


def sync(  # noqa: PLR0913 -- keyword-only options of one pass
    config: LakesyncConfig,
    *,
    lakes: Sequence[str] | None = None,
    datasets: Collection[str] | None = None,
    trigger: str = "cli",
    verbose: bool = False,
    config_path: Path | None = None,
    in_process: bool = False,
) -> SyncOutcome:
    """One pass of discovery and ingestion for every table fed by the selected lakes (or datasets).

    Every dataset is looked at once and its new files planned (:mod:`lakesync.defs.prescan`);
    each table with something to ingest then gets one run, which takes exactly those batches.
    On a shared instance with a run queue (and ``config_path`` known, ``in_process`` not asked)
    the runs are submitted to the queue together and waited for; else they run here, one by one.
    """
    runtimes = [
        r
        for r in dataset_runtimes(config)
        if (lakes is None or r.lake in lakes) and (datasets is None or r.key in datasets)
    ]
    recorded = bool(os.environ.get("DAGSTER_HOME"))
    try:
        lakehouse = open_lakehouse(config)
    except dg.DagsterInvalidConfigError as exc:  # a secret's variable is not set
        return SyncOutcome([], [], [f"lakehouse: not opened: {config_problem(exc)}"], [], recorded)
    intakes: list[IntakeResult | str] = []
    prepared = plan_tables(config, runtimes, lakehouse, run_id=f"lakesync sync ({trigger})", intakes=intakes)
    with ExitStack() as stack:
        runs = Runs(
            config, stack, config_path=config_path, in_process=in_process, trigger=trigger, verbose=verbose
        )
        lines, failures, run_ids, checks = _sync_tables(config, runtimes, prepared, runs)
        failures[:0] = [i for i in intakes if isinstance(i, str)]
        features, feature_failures = _features(config, lakehouse, {r.table for r in runtimes}, runs)
        failures.extend(feature_failures)
        if run_ids or lakehouse.open(lakehouse.catalog_uri) is None:
            failures.extend(_catalog(config, lakehouse, runs))
    ordered = [lines[r.key] for r in runtimes if r.key in lines]
    tables = [
        TableLine(s.table, s.delta_version, s.rows, s.quarantined_rows, s.superseded_rows)
        for s in table_statuses(config, lakehouse)
        if any(r.table == s.table for r in runtimes)
    ]
    received = [i.line() for i in intakes if not isinstance(i, str)]
    return SyncOutcome(
        ordered, tables, failures, run_ids, recorded, checks, features, received, runs.described
    )

"""Sync one unified table: plan each feeding dataset's batches, then commit them round by round.

1. **plan** — each dataset's batches (:mod:`lakesync.pipeline.plan`): the pending ones, and the
   next batch of what its discovery source found; or only what the sensor planned.
2. **rounds** — one batch per dataset at a time (:mod:`lakesync.pipeline.round`): read ->
   conform -> validate -> one Delta commit -> quarantine -> audit, drift and ledger records.
3. **result** — a :class:`~lakesync.pipeline.results.TableSync`, the values every report (the
   CLI's summary, Dagster's metadata and checks) is built from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from lakesync.commit.delta import table_polars_schema
from lakesync.commit.provenance import Provenance
from lakesync.config import LakesyncConfig, ResolvedContract, Table, never_automatic, resolve_contract
from lakesync.config.datatypes import describe
from lakesync.conform import DriftReport
from lakesync.conform.pii import PiiPolicy
from lakesync.conform.policies import AutoRenames
from lakesync.discover import LakeStore, LakeUnavailableError
from lakesync.pipeline.context import WHOLE_FILE_BYTES, RowRules, TableContext, TableSpec
from lakesync.pipeline.decisions import with_decisions
from lakesync.pipeline.failures import ContractFailures
from lakesync.pipeline.plan import DatasetPlans, next_batch, plan_dataset
from lakesync.pipeline.results import DatasetSync, TableSync
from lakesync.pipeline.round import RoundResult, commit_round
from lakesync.pipeline.runtime import DatasetRuntime, dataset_runtimes
from lakesync.read import DEFAULT_CHUNK_ROWS
from lakesync.state.drift_log import DriftLog
from lakesync.state.erasures import Erasures
from lakesync.state.lakehouse import Lakehouse, row_count
from lakesync.state.ledger import Ledger
from lakesync.state.ledger_state import DatasetLedger, ledger_states
from lakesync.state.values import BatchPlan, FileOutcome
from lakesync.validate import compile_contract

log = logging.getLogger("lakesync")
progress_log = logging.getLogger("lakesync.progress")
"""A line per batch while a dataset catches up (``lakesync sync`` shows them)."""


@dataclass(frozen=True)
class SyncOptions:
    """What to sync of a table, and how."""

    datasets: Collection[str] | None = None
    """``<lake>.<dataset>`` ids to sync (default: every dataset feeding the table)."""
    planned: Mapping[str, int] | None = None
    """Only ingest batches already planned (by a sensor), up to these batch numbers; the datasets'
    sources are not asked again."""
    contract: ResolvedContract | None = None
    """The table's contract, when the caller resolved it already."""
    stores: Mapping[str, LakeStore] | None = None
    """Each cloud lake's store (built by the Dagster layer from the lake's resource)."""
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    """Rows read at once: trades memory for speed."""
    whole_file_bytes: int = WHOLE_FILE_BYTES
    """Files up to this size are processed whole on a worker thread; larger ones stream."""


@dataclass
class _Progress:
    plans: DatasetPlans = field(default_factory=lambda: DatasetPlans(()))
    outcomes: list[FileOutcome] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    error: str | None = None
    stopped_by_drift: bool = False
    failures: ContractFailures = field(default_factory=ContractFailures)
    batch_rows: list[tuple[int, int]] = field(default_factory=list)
    rows_elsewhere: int = 0
    """Rows of batches another run had committed (counted in the outcomes, not by this run)."""

    def add(self, version: int, result: RoundResult, key: str) -> None:
        outcomes = result.outcomes.get(key, [])
        if key in result.elsewhere:
            self.rows_elsewhere += sum(o.rows_committed for o in outcomes)
        self.batches.append(version)
        self.outcomes.extend(outcomes)
        self.batch_rows.append((version, sum(o.rows_read for o in outcomes)))
        if key in result.failures:
            self.failures = self.failures.merged(result.failures[key])


def sync_table(
    config: LakesyncConfig,
    table: str,
    *,
    lakehouse: Lakehouse,
    run_id: str,
    options: SyncOptions | None = None,
) -> TableSync:
    """Ingest what is new for ``table`` from its datasets (all, or those ``options`` names).

    A dataset that cannot be synced (unreachable lake, drift policy ``fail``) is reported in its
    :class:`DatasetSync` ``error``; the other datasets are committed regardless.
    """
    options = options or SyncOptions()
    ctx = table_context(config, table, lakehouse=lakehouse, run_id=run_id, options=options)
    existing = lakehouse.open(ctx.uri)
    before = table_polars_schema(existing) or {}
    progress = {key: _Progress() for key in ctx.runtimes}
    # One snapshot and one read of the ledger for every dataset's plan.
    states = ledger_states(lakehouse, lakehouse.open(lakehouse.ledger_uri), list(ctx.runtimes))
    events_mode = [k for k, r in ctx.runtimes.items() if r.discovery == "events"]
    if events_mode:
        ctx = replace(ctx, discovered={k: states[k].discovered_by() for k in events_mode})
    queues = {
        key: list(_plan(ctx, runtime, options, progress[key], states[key]).plans)
        for key, runtime in ctx.runtimes.items()
    }
    commits = superseded = 0
    quarantine_version: int | None = None
    while any(queues.values()):
        plans = [queue.pop(0) for queue in queues.values() if queue]
        started = time.monotonic()
        result = commit_round(ctx, plans)
        if result.decided:  # lakesync approved a rename: later batches map it too
            ctx = with_decisions(ctx, result.decided)
        commits += int(result.committed)
        superseded += result.superseded
        quarantine_version = (
            result.quarantine_version if result.quarantine_version is not None else quarantine_version
        )
        for key, reason in result.stopped.items():
            progress[key].error, progress[key].stopped_by_drift = reason, True
            queues[key] = []
        for plan in plans:
            if plan.dataset not in result.stopped:
                progress[plan.dataset].add(plan.version, result, plan.dataset)
        if options.planned is None:  # started by hand: go on until caught up
            _catch_up(ctx, queues, progress)
        _report(plans, result, progress, time.monotonic() - started)
    snapshot = lakehouse.open(ctx.uri)
    schema = table_polars_schema(snapshot) or {}
    return TableSync(
        table=table,
        run_id=run_id,
        datasets=tuple(_dataset_result(ctx.runtimes[k], p) for k, p in progress.items()),
        delta_version=snapshot.version() if snapshot is not None else None,
        row_count=row_count(snapshot) if snapshot is not None else 0,
        commits=commits,
        rows_superseded=superseded,
        quarantine_version=quarantine_version,
        contract=ctx.table.fingerprint,
        columns={name: describe(dtype) for name, dtype in schema.items()},
        columns_before={name: describe(dtype) for name, dtype in before.items()},
    )


def table_context(
    config: LakesyncConfig, table: str, *, lakehouse: Lakehouse, run_id: str, options: SyncOptions
) -> TableContext:
    """Everything a table's rounds share, settled once; refuses before anything is written when
    hashing has no key or the stored rows' treatment is not the contract's."""
    contract = options.contract or resolve_contract(table, config.tables[table])
    pii = PiiPolicy.of(contract, lakehouse.pii_key, variable=config.lakehouse.pii_key.env)
    existing = lakehouse.open(lakehouse.table_uri(table))
    if existing is not None:
        pii.check_table(table, [(f.name, f.metadata) for f in existing.schema().fields])
    drift_log = DriftLog(lakehouse)
    runtimes = {
        r.key: replace(r, decisions=drift_log.decisions(r.key))
        for r in dataset_runtimes(config, table=table, chunk_rows=options.chunk_rows, stores=options.stores)
        if options.datasets is None or r.key in options.datasets
    }
    return TableContext(
        table=TableSpec(table, config.tables[table], compile_contract(contract)),
        auto_renames=auto_renames(config.tables[table], contract),
        lakehouse=lakehouse,
        run_id=run_id,
        rules=RowRules(pii=pii, erased=Erasures(lakehouse).of(contract), provenance=Provenance.of(config)),
        runtimes=runtimes,
        whole_file_bytes=options.whole_file_bytes,
    )


def auto_renames(settings: Table, contract: ResolvedContract) -> AutoRenames | None:
    """The table's ``autonomy.renames``, with the columns never mapped by lakesync itself."""
    chosen = settings.autonomy.renames
    if chosen is None:
        return None
    return AutoRenames(chosen.auto_approve_above, chosen.min_margin, never_automatic(settings, contract))


def _plan(
    ctx: TableContext,
    runtime: DatasetRuntime,
    options: SyncOptions,
    progress: _Progress,
    state: DatasetLedger,
) -> DatasetPlans:
    through = options.planned.get(runtime.key) if options.planned is not None else None
    if options.planned is not None and through is None:
        return DatasetPlans(())  # the sensor planned nothing for this dataset
    try:
        progress.plans = plan_dataset(
            runtime, Ledger(ctx.lakehouse), run_id=ctx.run_id, through=through, state=state
        )
    except LakeUnavailableError as exc:
        progress.error = str(exc)
        log.error("%s", exc)  # noqa: TRY400 - the message says it all; no traceback for users
    return progress.plans


def _catch_up(ctx: TableContext, queues: dict[str, list[BatchPlan]], progress: dict[str, _Progress]) -> None:
    """Plan the next batch of each dataset whose batches are done and whose source found more."""
    for key, queue in queues.items():
        state = progress[key]
        if queue or state.error is not None or not state.plans.fresh:
            continue
        planned, state.plans = next_batch(
            ctx.runtimes[key], Ledger(ctx.lakehouse), state.plans, run_id=ctx.run_id
        )
        queue.extend(planned)


def _report(
    plans: list[BatchPlan], result: RoundResult, progress: dict[str, _Progress], seconds: float
) -> None:
    """A line per batch of a dataset that takes more than one (a long sync shows how it goes)."""
    for plan in plans:
        state = progress[plan.dataset]
        if len(state.plans.plans) < 2 and not state.plans.files_left:
            continue
        rows = sum(o.rows_read for o in result.outcomes.get(plan.dataset, []))
        progress_log.info(
            "%s: batch %d: %d file(s), %.1f MB, %s rows in %.1f s (%s rows/s); %d file(s) left",
            plan.dataset,
            plan.version,
            len(plan.files),
            plan.bytes / 1e6,
            f"{rows:,}",
            seconds,
            f"{rows / seconds:,.0f}" if seconds > 0 else "-",
            state.plans.files_left + sum(len(p.files) for p in state.plans.plans if p.version > plan.version),
        )


def _reviewed(outcome: FileOutcome) -> bool:
    return bool(outcome.drift) and DriftReport.from_dict(outcome.drift or {}).needs_review


def _rescued(outcomes: list[FileOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        for column, seen in (outcome.rescued or {}).items():
            counts[column] = counts.get(column, 0) + int(seen["rows"])
    return counts


def _dataset_result(runtime: DatasetRuntime, p: _Progress) -> DatasetSync:
    review = [(o, DriftReport.from_dict(o.drift)) for o in p.outcomes if o.drift]
    found = p.plans.found
    now = datetime.now(tz=UTC)
    latencies = [(now - o.entry.modified).total_seconds() for o in p.outcomes]
    return DatasetSync(
        key=runtime.key,
        lake=runtime.lake,
        dataset=runtime.name,
        table=runtime.table,
        files_seen=found.files if found is not None else None,
        files_pending=p.plans.files_left,
        files_changed=len(found.changed) if found is not None else 0,
        files_ingested=sum(1 for o in p.outcomes if o.status == "ingested"),
        files_quarantined=sum(1 for o in p.outcomes if o.status == "quarantined"),
        rows_read=sum(o.rows_read for o in p.outcomes),
        rows_committed=sum(o.rows_committed for o in p.outcomes),
        rows_committed_elsewhere=p.rows_elsewhere,
        rows_quarantined=sum(o.rows_quarantined for o in p.outcomes),
        rows_erased=sum(o.rows_erased for o in p.outcomes),
        rows_rescued=sum(o.rows_rescued for o in p.outcomes),
        rescued=_rescued(p.outcomes),
        batches=tuple(p.batches),
        drift=tuple(report for _, report in review),
        newest_file=found.newest if found is not None else None,
        max_latency_seconds=max(latencies, default=None),
        error=p.error,
        drift_held_back=sum(1 for o, r in review if r.needs_review and o.status == "quarantined")
        + int(p.stopped_by_drift),
        drift_handled=sum(
            1 for o in p.outcomes if o.status == "ingested" and (o.rows_rescued or _reviewed(o))
        ),
        failures=p.failures,
        batch_rows=tuple(p.batch_rows),
    )

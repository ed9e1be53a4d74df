"""One round of a table's sync: one batch per dataset, committed exactly once, in named steps.

    prepare -> write the data -> write the quarantine -> record (audit, drift, ledger)

:func:`prepare` takes a snapshot of the table and decides what this attempt writes; the data
step streams the batches' files into one Delta commit carrying each batch's application
transaction (batches the table already holds are only read again for their outcomes). A
concurrent commit, or a file that changes what the round must write (a column drift adds, a
dataset drift stops, a large file broken half way), makes the round try again from a new
snapshot. A crash between any two steps leaves the batches pending: the next run completes them
without duplicating or losing a row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from lakesync.commit import delta
from lakesync.commit.delta import DeltaTarget, arrow_schema, output_schema
from lakesync.commit.rows import RowsTarget, commit_rows
from lakesync.conform import ColumnDrift, DriftReport, target_schema
from lakesync.pipeline.attempt import Attempt, FileResult, Redo, attempt_shape, value_sampler
from lakesync.pipeline.context import TableContext
from lakesync.pipeline.decisions import approve_renames
from lakesync.pipeline.failures import ContractFailures, summarize
from lakesync.pipeline.keys import Holder, KeyGuard
from lakesync.pipeline.stream import RoundStream, StreamStopped
from lakesync.state import quarantine
from lakesync.state.append import AppendContentionError, backoff
from lakesync.state.audit import AuditLog, Committed, batch_records
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Stamp, transaction_version
from lakesync.state.ledger import Ledger
from lakesync.state.values import BatchPlan, FileOutcome

ATTEMPTS = 64
log = logging.getLogger("lakesync")


class BatchOrderError(RuntimeError):
    """The table's committed batches and the ledger disagree (someone edited one of them)."""


@dataclass(frozen=True)
class Written:
    """The data step's outcome: the rows are committed (or were already)."""

    table_version: int
    committed: bool
    superseded: int
    files: tuple[FileResult, ...]


@dataclass(frozen=True)
class RoundResult:
    table_version: int | None
    committed: bool
    superseded: int = 0
    quarantine_version: int | None = None
    stopped: dict[str, str] = field(default_factory=dict)
    """Datasets left out of the round (stopped by drift), with the reason."""
    outcomes: dict[str, list[FileOutcome]] = field(default_factory=dict)
    """Per dataset, what happened to each file of its batch."""
    failures: dict[str, ContractFailures] = field(default_factory=dict)
    """Per dataset, what its batch's quarantine records say failed."""
    decided: frozenset[str] = frozenset()
    """Datasets whose drift lakesync decided itself in this round (their mapping changed)."""
    elsewhere: frozenset[str] = frozenset()
    """Datasets whose batch another run had committed already (a racing sync, or a run killed
    after its commit): this run read it again for its outcomes and finished recording it."""


def commit_round(ctx: TableContext, plans: Sequence[BatchPlan]) -> RoundResult:
    """Stream, commit and record one batch per dataset; retried until it holds exactly once."""
    redo = Redo()
    decided: set[str] = set()
    for attempt_number in range(ATTEMPTS):
        attempt = prepare(ctx, [p for p in plans if p.dataset not in redo.stopped], redo)
        written = write_data(ctx, attempt)
        if isinstance(written, Redo):
            record_stops(ctx, attempt, written)
            if written.renamed:  # approved by lakesync itself: read the round again with them
                ctx = approve_renames(ctx, attempt, written)
                decided |= {dataset for dataset, _ in written.renamed.values()}
            redo = redo.merged(written)
            continue
        if written is None:  # a concurrent commit: look at the table again
            backoff(attempt_number)
            continue
        records = [r for f in written.files for r in f.records]
        quarantine_version = write_quarantine(ctx, attempt, records)
        outcomes = record(ctx, attempt, written)
        return RoundResult(
            table_version=written.table_version,
            committed=written.committed,
            superseded=written.superseded,
            quarantine_version=quarantine_version,
            stopped={key: reason for key, (reason, _) in redo.stopped.items()},
            outcomes=outcomes,
            failures=summarize(records),
            elsewhere=frozenset(p.dataset for p in attempt.done),
            decided=frozenset(decided),
        )
    msg = f"could not commit a batch of table {ctx.table.name!r}: {ATTEMPTS} attempts lost to other writers"
    raise AppendContentionError(msg)


def prepare(ctx: TableContext, plans: Sequence[BatchPlan], redo: Redo) -> Attempt:
    """A snapshot of the table and what an attempt against it writes."""
    table, rules = ctx.table, ctx.rules
    rescue = any(ctx.runtimes[p.dataset].policy.rescues_values for p in plans)
    first = target_schema(table.contract.contract, None, rescue=rescue).with_added(redo.added)
    snapshot = delta.ensure_table(
        ctx.lakehouse,
        ctx.uri,
        rules.pii.marked(arrow_schema(output_schema(first, rules.pii, rules.provenance))),
        partition_by=table.settings.partition_by,
        change_data_feed=table.settings.mode == "merge",
    )
    versions = {p.dataset: transaction_version(snapshot, p.dataset) for p in plans}
    for p in plans:
        if versions[p.dataset] < p.version - 1:
            msg = (
                f"table {table.name!r} holds batch {versions[p.dataset]} of {p.dataset!r} but the "
                f"ledger is at batch {p.version - 1}; the table or the ledger was changed by hand"
            )
            raise BatchOrderError(msg)
    rules.pii.check_table(table.name, [(f.name, f.metadata) for f in snapshot.schema().fields])
    return Attempt(
        snapshot=snapshot,
        shape=attempt_shape(ctx, snapshot, rescue=rescue, added=redo.added),
        write=tuple(p for p in plans if versions[p.dataset] < p.version),
        done=tuple(p for p in plans if versions[p.dataset] >= p.version),
        redo=redo,
        ingested_at=datetime.now(tz=UTC),
        table_values=value_sampler(snapshot),
    )


def write_data(ctx: TableContext, attempt: Attempt) -> Written | Redo | None:
    """Commit the rows of the batches the table does not hold yet; read the others again.

    Returns what to redo when a file changes what the round must write, ``None`` when a
    concurrent commit won the race.
    """
    snapshot = attempt.snapshot
    assert snapshot is not None, "prepare() made the table"
    guard = key_guard(ctx, snapshot)
    writing = RoundStream(ctx, attempt, attempt.write, guard)
    draining = RoundStream(ctx, attempt, attempt.done, guard, drained=True)
    version, committed, superseded = snapshot.version(), False, 0
    try:
        if attempt.write:
            done = commit_rows(
                _rows_target(ctx, attempt), writing.batches(), attempt.shape.arrow, _stamp(ctx, attempt.write)
            )
            version, committed, superseded = done.version, True, done.superseded
        draining.drain()
    except (StreamStopped, DeltaError) as exc:  # the writer may hand the stream's error back wrapped
        redo = writing.redo or draining.redo
        if redo is not None:
            return redo
        if isinstance(exc, CommitFailedError):
            return None
        raise
    finally:
        if guard is not None:
            guard.close()
    files = (*writing.results(), *draining.results())
    return Written(version, committed, superseded, guard.named(files) if guard is not None else files)


def write_quarantine(ctx: TableContext, attempt: Attempt, records: Sequence[pl.DataFrame]) -> int | None:
    """The rejected rows and files of the round, once per batch."""
    return quarantine.write(
        ctx.lakehouse,
        ctx.table.name,
        records,
        batches={p.dataset: p.version for p in attempt.plans},
        metadata=_stamp(ctx, attempt.plans).metadata,
    )


def record(ctx: TableContext, attempt: Attempt, written: Written) -> dict[str, list[FileOutcome]]:
    """The audit trail, the drift log, then the ledger: the batch is done."""
    outcomes: dict[str, list[FileOutcome]] = {p.dataset: [] for p in attempt.plans}
    for result in written.files:
        assert result.outcome is not None
        outcomes[result.dataset].append(result.outcome)
    committed = Committed(written.table_version, ctx.run_id, ctx.table.fingerprint, datetime.now(tz=UTC))
    AuditLog(ctx.lakehouse).record_batches(
        {
            p.dataset: (
                p.version,
                batch_records(
                    p,
                    outcomes[p.dataset],
                    committed,
                    credential=ctx.runtimes[p.dataset].credential_names,
                    discovered=ctx.discovered_by(p.dataset),
                ),
            )
            for p in attempt.plans
        }
    )
    drift_log = DriftLog(ctx.lakehouse)
    for plan in attempt.plans:
        drift_log.record(
            plan.dataset,
            ctx.table.name,
            _sightings(outcomes[plan.dataset], ctx.runtimes[plan.dataset].policy.name),
            batch=plan.version,
            run_id=ctx.run_id,
        )
    Ledger(ctx.lakehouse).record_many(  # one commit for the round's datasets
        [(plan, outcomes[plan.dataset]) for plan in attempt.plans],
        table_version=written.table_version,
        run_id=ctx.run_id,
    )
    return outcomes


def record_stops(ctx: TableContext, attempt: Attempt, redo: Redo) -> None:
    """Datasets stopped by drift: their drift event is open, for review."""
    versions = {p.dataset: p.version for p in attempt.plans}
    for key, (reason, report) in redo.stopped.items():
        log.error("%s", reason)
        DriftLog(ctx.lakehouse).record(
            key, ctx.table.name, [(report, "open")], batch=versions.get(key), run_id=ctx.run_id
        )


def _sightings(
    outcomes: Sequence[FileOutcome], policy: str
) -> list[tuple[DriftReport, Literal["open", "handled"]]]:
    """The drift files showed: open when the file was held back, else handled; values of a
    table column that did not fit (rescued) are an event of their own, per column."""
    sightings: list[tuple[DriftReport, Literal["open", "handled"]]] = []
    for outcome in outcomes:
        report = DriftReport.from_dict(outcome.drift) if outcome.drift else None
        if report is not None and report.needs_review:
            sightings.append((report, "open" if outcome.status == "quarantined" else "handled"))
        for column, seen in (outcome.rescued or {}).items():
            if "table_type" in seen:  # a column the table does not have is reported as added
                evidence = {"rows": seen["rows"], "examples": seen["examples"]}
                change = ColumnDrift(column, "rescued", seen.get("source_type"), seen["table_type"], evidence)
                sightings.append((DriftReport(outcome.entry.path, policy, (change,)), "handled"))
    return sightings


def key_guard(ctx: TableContext, snapshot: DeltaTable) -> KeyGuard | None:
    """The unique columns of an append table, checked across files (merge tables upsert on their
    keys instead; a masked or dropped column has no value left to compare)."""
    treated = {n for n, r in ctx.rules.pii.rules.items() if r.treatment in ("mask", "drop")}
    columns = [c for c in ctx.table.contract.unique if c not in treated]
    if ctx.table.settings.mode != "append" or not columns:
        return None
    return KeyGuard(snapshot, columns, ctx.rules.provenance, _holder(ctx))


def _holder(ctx: TableContext) -> Holder:
    """The table version that committed a file (``<lake>/<path>``), from the ledger."""
    ledger = Ledger(ctx.lakehouse)
    events: dict[str, pl.DataFrame | None] = {}

    def version(source: str) -> int | None:
        lake, _, path = source.partition("/")
        for key, runtime in ctx.runtimes.items():
            if runtime.lake != lake:
                continue
            if key not in events:
                events[key] = ledger.read(key).events
            known = events[key]
            if known is None:
                continue
            found = known.filter((pl.col("path") == path) & (pl.col("event") == "ingested"))
            if found.height and found["table_version"].drop_nulls().len():
                return int(found["table_version"].drop_nulls().max())  # type: ignore[arg-type]
        return None

    return version


def _rows_target(ctx: TableContext, attempt: Attempt) -> RowsTarget:
    snapshot = attempt.snapshot
    assert snapshot is not None, "prepare() made the table"
    current = {f.name for f in snapshot.schema().fields}
    target = DeltaTarget(
        lakehouse=ctx.lakehouse,
        uri=ctx.uri,
        snapshot=snapshot,
        partition_by=ctx.table.settings.partition_by,
        evolve=any(name not in current for name in attempt.shape.columns),
        writer=ctx.rules.provenance.writer_properties(),
    )
    return RowsTarget(
        target,
        ctx.table.settings,
        ctx.lakehouse.superseded_uri(ctx.table.name),
        ctx.rules.provenance,
        ctx.rules.pii,
    )


def _stamp(ctx: TableContext, plans: Sequence[BatchPlan]) -> Stamp:
    """What a commit of these batches carries: their transactions, and provenance in the Delta log."""
    files = [f"{p.dataset}:{f.path}" for p in plans for f in p.files]
    metadata = {
        "lakesync.run_id": ctx.run_id,
        "lakesync.batches": json.dumps({p.dataset: p.version for p in plans}, sort_keys=True),
        "lakesync.contract": ctx.table.fingerprint,
        "lakesync.files": str(len(files)),
        "lakesync.source_files": json.dumps(files[:100]),
    }
    return Stamp({p.dataset: p.version for p in plans}, metadata)

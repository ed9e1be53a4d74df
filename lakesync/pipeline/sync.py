"""Sync one unified table: plan each feeding dataset's next batch, stream it, commit it once.

For every dataset feeding the table (or the ones asked for):

1. **discover** — list the lake, compare with the ledger; durably *plan* the next batch
   (at most ``max_files`` / ``max_bytes``). Batches planned earlier but never finished (a
   killed run) come first, in order.
2. **read -> conform -> validate** — stream the batch's files (:mod:`lakesync.pipeline.stream`).
3. **commit** — one Delta commit per round of batches (one batch per dataset), carrying each
   batch's application transaction; a batch the table already holds is not written again.
4. **record** — quarantine records (also once per batch), then the ledger's outcome per file.

A crash between any two steps leaves a pending plan that the next run completes without
duplicating or losing a row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from lakesync.commit import delta, quarantine
from lakesync.commit.delta import Provenance, arrow_schema, output_schema, table_polars_schema
from lakesync.commit.erase import ErasureList, erasure_list
from lakesync.commit.winners import pick_winners
from lakesync.config import LakesyncConfig, ResolvedContract, Table, resolve_contract
from lakesync.config.datatypes import describe
from lakesync.conform import DriftReport, target_schema
from lakesync.conform.pii import PiiPolicy
from lakesync.discover import (
    BatchPlan,
    DatasetLedger,
    FileEntry,
    FileOutcome,
    LakeStore,
    LakeUnavailableError,
    Ledger,
    discover,
    take_batch,
)
from lakesync.lakehouse import Lakehouse, row_count, transaction_version
from lakesync.pipeline.runtime import DatasetRuntime, dataset_runtimes
from lakesync.pipeline.scan import start_after
from lakesync.pipeline.stream import WHOLE_FILE_BYTES, Restart, RoundStream
from lakesync.read import DEFAULT_CHUNK_ROWS
from lakesync.record import DatasetSync, TableSync
from lakesync.record.audit import AuditLog, batch_records, credential_names
from lakesync.record.drift_log import DriftLog
from lakesync.record.failures import ContractFailures, summarize
from lakesync.validate import CompiledContract, compile_contract

_MAX_ATTEMPTS = 64
log = logging.getLogger("lakesync")


class BatchOrderError(RuntimeError):
    """The table's committed batches and the ledger disagree (someone edited one of them)."""


@dataclass
class _Progress:
    files_seen: int | None = None
    files_pending: int = 0
    files_changed: int = 0
    newest: datetime | None = None
    outcomes: list[FileOutcome] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    max_latency: float | None = None
    error: str | None = None
    stopped_by_drift: bool = False
    failures: ContractFailures = field(default_factory=ContractFailures)
    batch_rows: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Round:
    table_version: int | None
    committed: bool
    superseded: int = 0
    quarantine_version: int | None = None
    failed: dict[str, str] = field(default_factory=dict)
    """Datasets left out of the round, with the reason."""
    outcomes: dict[str, list[FileOutcome]] = field(default_factory=dict)
    """Per dataset, what happened to each file of its batch."""
    failures: dict[str, ContractFailures] = field(default_factory=dict)
    """Per dataset, what its batch's quarantine records say failed."""


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _plans_for(runtime: DatasetRuntime, ledger: Ledger, progress: _Progress, run_id: str) -> list[BatchPlan]:
    """Pending batches of a dataset, then its next batch of new files (planned durably)."""
    state = ledger.read(runtime.key)
    listing = list(runtime.store.list(runtime.config.pattern, start_after=start_after(runtime, state)))
    found = discover(listing, state.known_tags())
    progress.files_seen = found.files
    progress.files_changed = len(found.changed)
    progress.newest = found.newest
    for entry in found.changed:
        log.warning(
            "%s: %s changed after it was ingested (new size or modification time); it is not ingested again",
            runtime.key,
            entry.path,
        )
    limits = runtime.config.sensor

    def choose(current: DatasetLedger) -> list[FileEntry]:
        seen = discover(listing, current.known_tags())
        fresh = [*seen.new, *(seen.changed if runtime.config.changed == "reingest" else ())]
        return take_batch(fresh, max_files=limits.max_files, max_bytes=limits.max_bytes)

    if state.pending:  # finish what an earlier run started before taking new files
        progress.files_pending = len(found.new)
        return list(state.pending)
    plan = ledger.plan(runtime.key, runtime.table, choose, run_id=run_id)
    progress.files_pending = max(0, len(found.new) - (len(plan.files) if plan else 0))
    if plan is None:
        return []
    if plan.version > state.planned_version + 1:
        # Another run planned batches since this one looked: they come first (batches commit in
        # order; whichever run commits one first, the other finds it done).
        earlier = [p for p in ledger.read(runtime.key).pending if p.version < plan.version]
        return [*earlier, plan]
    return [plan]


def sync_table(
    config: LakesyncConfig,
    table: str,
    *,
    lakehouse: Lakehouse,
    run_id: str,
    datasets: Collection[str] | None = None,
    contract: ResolvedContract | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    whole_file_bytes: int = WHOLE_FILE_BYTES,
    stores: Mapping[str, LakeStore] | None = None,
) -> TableSync:
    """Ingest what is new for ``table`` from its datasets (all, or the ``<lake>.<dataset>`` keys given).

    A dataset that cannot be synced (unreachable lake, drift policy ``fail``) is reported in
    its :class:`DatasetSync` ``error``; the other datasets are committed regardless.
    ``chunk_rows`` and ``whole_file_bytes`` trade memory for speed (see the read stage and
    :mod:`lakesync.pipeline.stream`).
    """
    contract = contract or resolve_contract(table, config.tables[table])
    compiled = compile_contract(contract)
    # Refused before anything is written: hashing without its key, or a treatment the rows
    # already stored do not have.
    pii = PiiPolicy.of(contract, lakehouse.pii_key, variable=config.lakehouse.pii_key.env)
    existing = lakehouse.open(lakehouse.table_uri(table))
    if existing is not None:
        pii.check_table(table, [(f.name, f.metadata) for f in existing.schema().fields])
    provenance = Provenance.of(config)
    drift_log = DriftLog(lakehouse)
    runtimes = {
        r.key: replace(r, decisions=drift_log.decisions(r.key))
        for r in dataset_runtimes(config, table=table, chunk_rows=chunk_rows, stores=stores)
        if datasets is None or r.key in datasets
    }
    ledger = Ledger(lakehouse)
    progress = {key: _Progress() for key in runtimes}
    queues: dict[str, list[BatchPlan]] = {}
    for key, runtime in runtimes.items():
        try:
            queues[key] = _plans_for(runtime, ledger, progress[key], run_id)
        except LakeUnavailableError as exc:
            progress[key].error = str(exc)
            queues[key] = []
            log.error("%s", exc)  # noqa: TRY400 - the message says it all; no traceback for users
    before = table_polars_schema(existing) or {}
    erased = erasure_list(contract, lakehouse)
    commits = 0
    superseded = 0
    quarantine_version: int | None = None
    while any(queues.values()):
        plans = [queue.pop(0) for queue in queues.values() if queue]
        result = _commit_round(
            config,
            table,
            plans,
            runtimes,
            compiled,
            lakehouse=lakehouse,
            ledger=ledger,
            run_id=run_id,
            whole_file_bytes=whole_file_bytes,
            erased=erased,
            pii=pii,
            provenance=provenance,
        )
        commits += int(result.committed)
        superseded += result.superseded
        if result.quarantine_version is not None:
            quarantine_version = result.quarantine_version
        for key, reason in result.failed.items():
            progress[key].error = reason
            progress[key].stopped_by_drift = True
            queues[key] = []
            log.error("%s", reason)
        for plan in plans:
            if plan.dataset in result.failed:
                continue
            p = progress[plan.dataset]
            p.batches.append(plan.version)
            outcomes = result.outcomes.get(plan.dataset, [])
            p.outcomes.extend(outcomes)
            p.batch_rows.append((plan.version, sum(o.rows_read for o in outcomes)))
            if plan.dataset in result.failures:
                p.failures = p.failures.merged(result.failures[plan.dataset])
            for outcome in outcomes:
                latency = (_now() - outcome.entry.modified).total_seconds()
                p.max_latency = max(p.max_latency or 0.0, latency)
    snapshot = lakehouse.open(lakehouse.table_uri(table))
    schema = table_polars_schema(snapshot) or {}
    return TableSync(
        table=table,
        run_id=run_id,
        datasets=tuple(_dataset_result(runtimes[k], p) for k, p in progress.items()),
        delta_version=snapshot.version() if snapshot is not None else None,
        row_count=row_count(snapshot) if snapshot is not None else 0,
        commits=commits,
        rows_superseded=superseded,
        quarantine_version=quarantine_version,
        contract=contract.fingerprint,
        columns={name: describe(dtype) for name, dtype in schema.items()},
        columns_before={name: describe(dtype) for name, dtype in before.items()},
    )


def _dataset_result(runtime: DatasetRuntime, p: _Progress) -> DatasetSync:
    reports = tuple(DriftReport.from_dict(o.drift) for o in p.outcomes if o.drift)
    review = [(o, DriftReport.from_dict(o.drift)) for o in p.outcomes if o.drift]
    held = sum(1 for o, r in review if r.needs_review and o.status == "quarantined")
    handled = sum(1 for o, r in review if r.needs_review and o.status == "ingested")
    return DatasetSync(
        key=runtime.key,
        lake=runtime.lake,
        dataset=runtime.name,
        table=runtime.table,
        files_seen=p.files_seen,
        files_pending=p.files_pending,
        files_changed=p.files_changed,
        files_ingested=sum(1 for o in p.outcomes if o.status == "ingested"),
        files_quarantined=sum(1 for o in p.outcomes if o.status == "quarantined"),
        rows_read=sum(o.rows_read for o in p.outcomes),
        rows_committed=sum(o.rows_committed for o in p.outcomes),
        rows_quarantined=sum(o.rows_quarantined for o in p.outcomes),
        rows_erased=sum(o.rows_erased for o in p.outcomes),
        batches=tuple(p.batches),
        drift=reports,
        newest_file=p.newest,
        max_latency_seconds=p.max_latency,
        error=p.error,
        drift_held_back=held + (1 if p.stopped_by_drift else 0),
        drift_handled=handled,
        failures=p.failures,
        batch_rows=tuple(p.batch_rows),
    )


def _commit_round(
    config: LakesyncConfig,
    table: str,
    plans: Sequence[BatchPlan],
    runtimes: Mapping[str, DatasetRuntime],
    compiled: CompiledContract,
    *,
    lakehouse: Lakehouse,
    ledger: Ledger,
    run_id: str,
    whole_file_bytes: int,
    erased: ErasureList | None = None,
    pii: PiiPolicy | None = None,
    provenance: Provenance | None = None,
) -> _Round:
    """Stream, commit and record one batch per dataset; retried until it holds exactly once."""
    table_config = config.tables[table]
    uri = lakehouse.table_uri(table)
    excluded: dict[tuple[str, str], str] = {}
    failed: dict[str, str] = {}
    added: dict[str, pl.DataType] = {}
    rescue = any(runtimes[p.dataset].policy in ("evolve", "rescue") for p in plans)
    pii = pii or PiiPolicy({})
    provenance = provenance or Provenance.of(config)
    for _ in range(_MAX_ATTEMPTS):
        live = [p for p in plans if p.dataset not in failed]
        first_schema = pii.marked(
            arrow_schema(
                output_schema(
                    target_schema(compiled.contract, None, rescue=rescue).with_added(added), pii, provenance
                )
            )
        )
        snapshot = delta.ensure_table(
            lakehouse,
            uri,
            first_schema,
            partition_by=table_config.partition_by,
            change_data_feed=table_config.mode == "merge",
        )
        versions = {p.dataset: transaction_version(snapshot, p.dataset) for p in live}
        for p in live:
            if versions[p.dataset] < p.version - 1:
                msg = (
                    f"table {table!r} holds batch {versions[p.dataset]} of {p.dataset!r} but the "
                    f"ledger is at batch {p.version - 1}; the table or the ledger was changed by hand"
                )
                raise BatchOrderError(msg)
        to_write = [p for p in live if versions[p.dataset] < p.version]
        done = [p for p in live if versions[p.dataset] >= p.version]
        pii.check_table(table, [(f.name, f.metadata) for f in snapshot.schema().fields])
        current = table_polars_schema(snapshot)
        values = _value_sampler(snapshot)
        base = target_schema(compiled.contract, current, rescue=rescue, provenance=provenance.names)
        target = base.with_added(added)
        schema = output_schema(target, pii, provenance)
        evolve = any(name not in (current or {}) for name in schema)
        ingested_at = _now()
        streams = [
            RoundStream(
                batch,
                runtimes,
                target=target,
                base_target=base,
                compiled=compiled,
                output_columns=list(schema),
                arrow_schema=pii.marked(arrow_schema(schema)),
                excluded=excluded,
                ingested_at=ingested_at,
                run_id=run_id,
                whole_file_bytes=whole_file_bytes,
                table_values=values,
                erased=erased,
                pii=pii,
                provenance=provenance,
            )
            for batch in (to_write, done)
        ]
        writing, draining = streams
        result = _Round(table_version=snapshot.version(), committed=False)
        try:
            if to_write:
                result = _write(
                    lakehouse,
                    uri,
                    snapshot,
                    writing,
                    table=table,
                    plans=to_write,
                    table_config=table_config,
                    evolve=evolve,
                    metadata=_metadata(run_id, to_write, compiled),
                )
            draining.drain()
        except (Restart, DeltaError) as exc:
            restart = exc if isinstance(exc, Restart) else (writing.restart or draining.restart)
            if restart is None:
                if isinstance(exc, CommitFailedError):
                    continue  # a concurrent commit: look at the table again
                raise
            if restart.exclude_file is not None:
                key, path, reason = restart.exclude_file
                excluded[(key, path)] = reason
            if restart.add_columns:
                added.update(restart.add_columns)
            if restart.fail_dataset is not None:
                key, reason, report = restart.fail_dataset
                failed[key] = reason
                plan = next(p for p in live if p.dataset == key)
                DriftLog(lakehouse).record(key, table, [(report, "open")], batch=plan.version, run_id=run_id)
            continue
        records = writing.records + draining.records
        result.quarantine_version = quarantine.write(
            lakehouse,
            table,
            records,
            batches={p.dataset: p.version for p in live},
            metadata=_metadata(run_id, live, compiled),
        )
        outcomes = {**writing.outcomes, **draining.outcomes}
        audited_at = _now()
        AuditLog(lakehouse).record_batches(
            {
                p.dataset: (
                    p.version,
                    batch_records(
                        p,
                        outcomes[p.dataset],
                        table_version=result.table_version,
                        run_id=run_id,
                        contract=compiled.contract.fingerprint,
                        credential=credential_names(config, runtimes[p.dataset].lake),
                        recorded_at=audited_at,
                    ),
                )
                for p in live
            }
        )
        _record_drift(DriftLog(lakehouse), table, live, outcomes, run_id=run_id)
        for p in live:
            ledger.record(p, outcomes[p.dataset], table_version=result.table_version, run_id=run_id)
        result.failed = failed
        result.outcomes = outcomes
        result.failures = summarize(records)
        return result
    msg = f"table {table!r}: gave up after {_MAX_ATTEMPTS} attempts to commit a batch"
    raise RuntimeError(msg)


def _record_drift(
    drift_log: DriftLog,
    table: str,
    plans: Sequence[BatchPlan],
    outcomes: Mapping[str, list[FileOutcome]],
    *,
    run_id: str,
) -> None:
    """Record the drift files showed: open when the file was held back, else handled."""
    for plan in plans:
        sightings: list[tuple[DriftReport, Literal["open", "handled"]]] = []
        for outcome in outcomes.get(plan.dataset, []):
            if not outcome.drift:
                continue
            report = DriftReport.from_dict(outcome.drift)
            if report.needs_review:
                sightings.append((report, "open" if outcome.status == "quarantined" else "handled"))
        drift_log.record(plan.dataset, table, sightings, batch=plan.version, run_id=run_id)


def _value_sampler(snapshot: DeltaTable | None) -> Callable[[str], pl.Series | None]:
    """A sample of a table column's values (for rename evidence), read once per column."""
    cache: dict[str, pl.Series | None] = {}

    def values(column: str) -> pl.Series | None:
        if snapshot is None:
            return None
        if column not in cache:
            try:
                sample = snapshot.to_pyarrow_dataset().head(2000, columns=[column])
            except (pa.ArrowInvalid, KeyError, ValueError):
                cache[column] = None
            else:
                frame = pl.from_arrow(sample)
                cache[column] = frame[column] if isinstance(frame, pl.DataFrame) else None
        return cache[column]

    return values


def _metadata(run_id: str, plans: Sequence[BatchPlan], compiled: CompiledContract) -> dict[str, str]:
    """Provenance of a commit, kept in the Delta log (never any secret)."""
    files = [f"{p.dataset}:{f.path}" for p in plans for f in p.files]
    return {
        "lakesync.run_id": run_id,
        "lakesync.batches": json.dumps({p.dataset: p.version for p in plans}, sort_keys=True),
        "lakesync.contract": compiled.contract.fingerprint,
        "lakesync.files": str(len(files)),
        "lakesync.source_files": json.dumps(files[:100]),
    }


def _write(
    lakehouse: Lakehouse,
    uri: str,
    snapshot: DeltaTable,
    stream: RoundStream,
    *,
    table: str,
    plans: Sequence[BatchPlan],
    table_config: Table,
    evolve: bool,
    metadata: Mapping[str, str],
) -> _Round:
    """Commit the stream's rows: a streamed append, or a merge of the latest row per key."""
    transactions = {p.dataset: p.version for p in plans}
    if table_config.mode == "append":
        version = delta.append(
            lakehouse,
            uri,
            snapshot,
            stream.reader(),
            app_transactions=transactions,
            metadata=metadata,
            partition_by=table_config.partition_by,
            evolve=evolve,
            provenance=stream.provenance,
        )
        return _Round(table_version=version, committed=True)
    rows = pa.Table.from_batches(list(stream.batches()), schema=stream.arrow_schema)
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    picked = pick_winners(
        frame,
        keys=table_config.keys,
        latest_by=table_config.latest_by,
        existing=_current_versions(snapshot, frame, table_config, stream.provenance),
        source=(stream.provenance.file, stream.provenance.row),
    )
    latest = picked.rows
    if picked.losers.height:  # before the merge: a crash in between loses no loser, a retry adds none
        losers = picked.losers.with_columns(
            pl.lit(metadata["lakesync.run_id"]).alias("_lakesync_run_id"),
            pl.lit(_now(), dtype=pl.Datetime("us", "UTC")).alias("_lakesync_superseded_at"),
        )
        rows = losers.to_arrow(compat_level=pl.CompatLevel.newest())
        delta.append_once(
            lakehouse,
            lakehouse.superseded_uri(table),
            rows.cast(stream.pii.marked(rows.schema)),
            app_transactions=transactions,
            metadata=metadata,
        )
    if latest.height == 0:
        empty = pa.RecordBatchReader.from_batches(stream.arrow_schema, iter([]))
        version = delta.append(
            lakehouse,
            uri,
            snapshot,
            empty,
            app_transactions=transactions,
            metadata=metadata,
            partition_by=table_config.partition_by,
            evolve=evolve,
            provenance=stream.provenance,
        )
        return _Round(table_version=version, committed=True)
    version = delta.merge(
        lakehouse,
        uri,
        snapshot,
        latest.to_arrow(compat_level=pl.CompatLevel.newest()).cast(stream.arrow_schema),
        keys=table_config.keys,
        latest_by=table_config.latest_by,
        app_transactions=transactions,
        metadata=metadata,
        partition_by=table_config.partition_by,
        evolve=evolve,
        provenance=stream.provenance,
    )
    return _Round(table_version=version, committed=True, superseded=picked.losers.height)


def _current_versions(
    snapshot: DeltaTable, frame: pl.DataFrame, table_config: Table, provenance: Provenance
) -> pl.DataFrame | None:
    """The table's current rows for the batch's keys (only needed to compare ``latest_by``)."""
    if table_config.latest_by is None or frame.is_empty():
        return None
    columns = [*table_config.keys, table_config.latest_by, provenance.file, provenance.row]
    current = pl.scan_delta(snapshot).select(columns)
    return current.join(
        frame.lazy().select(table_config.keys).unique(), on=table_config.keys, how="semi"
    ).collect()

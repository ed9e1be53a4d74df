"""Stream the files of a round of batches through read -> conform -> validate.

A :class:`RoundStream` yields Arrow record batches of valid rows (what the Delta commit
consumes, with bounded memory) and, as a by-product, collects per-file outcomes, quarantine
records and drift reports. When something is only found out after rows of a file were already
streamed (a truncated file, a column drift must add), the stream stops with a
:class:`Restart` saying how to redo the round; nothing of the aborted attempt is committed.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from lakesync.commit import quarantine
from lakesync.commit.delta import Provenance
from lakesync.commit.erase import ErasureList
from lakesync.conform import DriftReport, TargetSchema, classify, conform_chunk, rename
from lakesync.conform.conform import as_text
from lakesync.conform.drift import signature_id
from lakesync.conform.pii import PiiPolicy
from lakesync.discover import BatchPlan, FileEntry, FileOutcome
from lakesync.discover.stores import file_checksum
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.read import ROW, FileReadError, read_file
from lakesync.validate import CompiledContract, UniqueTracker, validate_chunk

_WORKERS = 2
"""Files processed at once (polars and the Delta writer use the other cores as well)."""
_AHEAD = 3
"""Files in flight ahead of the writer; with :data:`WHOLE_FILE_BYTES` this bounds memory."""
WHOLE_FILE_BYTES = 32 * 1024 * 1024
"""Files up to this size are processed whole on a worker; larger ones stream chunk by chunk."""


@dataclass
class Restart(Exception):  # noqa: N818 - a signal to redo the round, not an error
    """Redo the round: leave a file out, add columns, or leave a dataset out."""

    exclude_file: tuple[str, str, str] | None = None
    """(dataset key, path, reason) of a file that failed after some of its rows were streamed."""
    add_columns: Mapping[str, pl.DataType] | None = None
    """Columns drift adds to the table (policy evolve)."""
    fail_dataset: tuple[str, str, DriftReport] | None = None
    """(dataset key, reason, report) of a dataset stopped by drift policy ``fail``."""


@dataclass
class FileResult:
    """What one file gave: its ledger outcome and its quarantine records."""

    outcome: FileOutcome
    records: list[pl.DataFrame]
    unreadable: bool = False
    """The file could not be read to its end: none of its rows may be committed."""


@dataclass
class FileTally:
    rows_read: int = 0
    rows_committed: int = 0
    rows_quarantined: int = 0
    rows_erased: int = 0
    streamed: int = 0
    records: list[pl.DataFrame] = field(default_factory=list)


class RoundStream:
    """One pass over the files of some batches; see the module docstring."""

    def __init__(
        self,
        plans: Sequence[BatchPlan],
        runtimes: Mapping[str, DatasetRuntime],
        *,
        target: TargetSchema,
        base_target: TargetSchema,
        compiled: CompiledContract,
        output_columns: Sequence[str],
        arrow_schema: pa.Schema,
        excluded: Mapping[tuple[str, str], str],
        ingested_at: datetime,
        run_id: str,
        whole_file_bytes: int = WHOLE_FILE_BYTES,
        table_values: Callable[[str], pl.Series | None] | None = None,
        erased: ErasureList | None = None,
        pii: PiiPolicy | None = None,
        provenance: Provenance | None = None,
    ) -> None:
        self.plans = list(plans)
        self.runtimes = runtimes
        self.target = target
        self.base_target = base_target
        self.compiled = compiled
        self.output_columns = list(output_columns)
        self.arrow_schema = arrow_schema
        self.excluded = excluded
        self.ingested_at = ingested_at
        self.run_id = run_id
        self.whole_file_bytes = whole_file_bytes
        self.table_values = table_values
        self.erased = erased
        self.pii = pii or PiiPolicy({})
        self.provenance = provenance or Provenance()
        self.outcomes: dict[str, list[FileOutcome]] = {p.dataset: [] for p in self.plans}
        self.records: list[pl.DataFrame] = []
        self.restart: Restart | None = None

    def files(self) -> list[tuple[BatchPlan, FileEntry]]:
        """The round's files in landing order (oldest first): later rows win a merge."""
        pairs = [(plan, entry) for plan in self.plans for entry in plan.files]
        return sorted(pairs, key=lambda pe: (pe[1].modified, pe[0].dataset, pe[1].path))

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.arrow_schema, self.batches())

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Valid rows of every file, in file order.

        Small files are processed whole on a thread pool, a few files ahead (polars releases
        the GIL, so reading and checking overlap with the Delta writer); a large file streams
        chunk by chunk in this thread, so memory stays bounded whatever the file size.
        """
        files = self.files()
        ahead: deque[tuple[BatchPlan, FileEntry, Future[tuple[list[pa.RecordBatch], FileResult]] | None]] = (
            deque()
        )
        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="lakesync-read") as pool:
            try:
                position = 0
                while position < len(files) or ahead:
                    while position < len(files) and len(ahead) < _AHEAD:
                        plan, entry = files[position]
                        position += 1
                        whole = entry.size <= self.whole_file_bytes
                        ahead.append(
                            (plan, entry, pool.submit(self._whole_file, plan, entry) if whole else None)
                        )
                    plan, entry, future = ahead.popleft()
                    if future is not None:
                        batches, result = future.result()
                        yield from batches
                    else:
                        holder: list[FileResult] = []
                        yield from self._file(plan, entry, holder, streaming=True)
                        result = holder[0]
                    self._apply(plan, result)
            except Restart as restart:
                self.restart = restart
                raise
            finally:
                for _, _, pending in ahead:
                    if pending is not None:
                        pending.cancel()

    def drain(self) -> None:
        """Consume the stream without keeping rows (outcomes and quarantine records only)."""
        for _ in self.batches():
            pass

    def _apply(self, plan: BatchPlan, result: FileResult) -> None:
        self.records.extend(result.records)
        self.outcomes[plan.dataset].append(result.outcome)

    def _whole_file(self, plan: BatchPlan, entry: FileEntry) -> tuple[list[pa.RecordBatch], FileResult]:
        """Process a file entirely (on a worker thread); nothing is streamed before it is done."""
        holder: list[FileResult] = []
        batches = list(self._file(plan, entry, holder, streaming=False))
        result = holder[0]
        return ([] if result.unreadable else batches), result

    def _context(self, runtime: DatasetRuntime, plan: BatchPlan, entry: FileEntry) -> dict[str, Any]:
        return {
            "lake": runtime.lake,
            "dataset": runtime.name,
            "file": entry.path,
            "batch": plan.version,
            "run_id": self.run_id,
            "contract": self.compiled.contract.fingerprint,
            "quarantined_at": self.ingested_at,
        }

    def _unreadable(
        self, runtime: DatasetRuntime, plan: BatchPlan, entry: FileEntry, reason: str
    ) -> FileResult:
        context = self._context(runtime, plan, entry)
        message = f"{runtime.lake}/{entry.path}: {reason}"
        return FileResult(
            outcome=FileOutcome(entry, "quarantined", 0, 0, 0, reason=message),
            records=[quarantine.file_record(reason=message, rule="unreadable_file", context=context)],
            unreadable=True,
        )

    def _file(
        self, plan: BatchPlan, entry: FileEntry, holder: list[FileResult], *, streaming: bool
    ) -> Iterator[pa.RecordBatch]:
        """Yield the file's valid rows; put its :class:`FileResult` in ``holder`` when done.

        When ``streaming``, rows leave before the whole file is read, so a file found broken
        after some rows raises :class:`Restart`; otherwise its rows are simply dropped.
        """
        runtime = self.runtimes[plan.dataset]
        excluded = self.excluded.get((plan.dataset, entry.path))
        if excluded is not None:
            holder.append(self._unreadable(runtime, plan, entry, excluded))
            return
        tally = FileTally()
        report: DriftReport | None = None
        quarantine_all: str | None = None
        tracker = UniqueTracker(self.compiled.unique)
        selected = plan.rows.get(entry.path)
        only = pl.Series(ROW, selected, dtype=pl.Int64).implode() if selected is not None else None
        checksum: str | None = None
        try:
            with runtime.store.local_path(entry) as path:
                with contextlib.suppress(OSError):  # a file gone since listing: read_file says so
                    checksum = file_checksum(path)
                for whole in read_file(path, runtime.read_spec):
                    # A replay of quarantined rows takes only those records of the file.
                    raw = whole if only is None else whole.filter(pl.col(ROW).is_in(only))
                    chunk = rename(raw, runtime.columns)
                    if report is None:
                        report, quarantine_all = self._drift(runtime, entry, chunk)
                    for batch in self._chunk(
                        runtime=runtime,
                        plan=plan,
                        entry=entry,
                        raw=raw,
                        chunk=chunk,
                        tally=tally,
                        tracker=tracker,
                        quarantine_all=quarantine_all,
                    ):
                        tally.streamed += batch.num_rows if streaming else 0
                        yield batch
        except (FileReadError, ValueError, OSError) as exc:
            reason = exc.reason if isinstance(exc, FileReadError) else str(exc)
            line = f"line {exc.line}: " if isinstance(exc, FileReadError) and exc.line else ""
            if tally.streamed:
                raise Restart(exclude_file=(plan.dataset, entry.path, f"{line}{reason}")) from exc
            unreadable = self._unreadable(runtime, plan, entry, f"{line}{reason}")
            holder.append(replace(unreadable, outcome=replace(unreadable.outcome, checksum=checksum)))
            return
        status: Literal["ingested", "quarantined"] = "quarantined" if quarantine_all else "ingested"
        outcome = FileOutcome(
            entry,
            status,
            tally.rows_read,
            tally.rows_committed,
            tally.rows_quarantined,
            reason=quarantine_all,
            drift=report.to_dict() if report is not None and report.changes else None,
            rows_erased=tally.rows_erased,
            checksum=checksum,
        )
        holder.append(FileResult(outcome=outcome, records=tally.records))

    def _drift(
        self, runtime: DatasetRuntime, entry: FileEntry, chunk: pl.DataFrame
    ) -> tuple[DriftReport, str | None]:
        """Classify the file's schema drift and apply the dataset's policy to the file as a whole."""
        source = {k: v for k, v in chunk.schema.items() if k != ROW}
        # Against the table as it was before this round, so columns this round adds are reported.
        changes = classify(
            source,
            self.base_target,
            text_source=runtime.config.format == "csv",
            chunk=chunk,
            table_values=self.table_values,
        )
        report = DriftReport(entry.path, runtime.policy, changes)
        if not report.needs_review:
            return report, None
        event = signature_id(runtime.key, report.signature)
        decision = runtime.decisions.status(event)
        if decision == "rejected":
            who = runtime.decisions.rejected[event]
            reason = f"schema drift {event} was rejected ({who}): {report.summary()}"
            return DriftReport(
                entry.path, runtime.policy, changes, (f"quarantined the file: drift {event} rejected",)
            ), reason
        if decision is None and runtime.policy == "fail":
            reason = (
                f"schema drift {event} in {runtime.lake}/{entry.path}: {report.summary()}. The dataset's "
                f"drift policy is 'fail': it is stopped until the drift is reviewed "
                f"(`lakesync drift approve {event}` or `lakesync drift reject {event}`)"
            )
            raise Restart(fail_dataset=(runtime.key, reason, report))
        if decision is None and runtime.policy == "quarantine":
            reason = f"schema drift {event} (policy quarantine): {report.summary()}; {report.suggestion()}"
            return DriftReport(entry.path, runtime.policy, changes, ("quarantined the file",)), reason
        added = {c.column: source[c.column] for c in changes if c.change == "added"}
        missing = [c.column for c in changes if c.change == "missing"]
        actions: list[str] = [f"accepted: drift {event} was approved"] if decision == "approved" else []
        if runtime.policy == "rescue" and decision is None:
            if added:
                actions.append(f"rescued {', '.join(added)} into _rescued_data")
        else:  # evolve, or any policy once a reviewer approved this drift
            if any(self.target.get(name) is None for name in added):
                raise Restart(add_columns=added)
            actions.extend(
                f"added column {c.column!r} ({c.source_type}) to the table"
                for c in changes
                if c.change == "added"
            )
        actions.extend(f"filled missing column {m!r} with nulls where allowed" for m in missing)
        return DriftReport(entry.path, runtime.policy, changes, tuple(actions)), None

    def _chunk(
        self,
        *,
        runtime: DatasetRuntime,
        plan: BatchPlan,
        entry: FileEntry,
        raw: pl.DataFrame,
        chunk: pl.DataFrame,
        tally: FileTally,
        tracker: UniqueTracker,
        quarantine_all: str | None,
    ) -> Iterator[pa.RecordBatch]:
        context = self._context(runtime, plan, entry)
        tally.rows_read += raw.height
        if quarantine_all is not None:
            failures = pl.DataFrame(
                {"row": raw[ROW], "column": "(file)", "rule": "schema_drift", "message": quarantine_all}
            )
            stored_raw = self.pii.raw(raw, runtime.source_names) if self.pii else raw
            tally.records.append(quarantine.row_records(stored_raw, failures, context=context))
            tally.rows_quarantined += raw.height
            return
        conformed = conform_chunk(
            chunk,
            self.target,
            source_names=runtime.source_names,
            formats=runtime.formats,
            rescue_values=runtime.policy in ("evolve", "rescue"),
            rescue_unknown=runtime.policy == "rescue",
            treat=self.pii.treat_text if self.pii else None,
        )
        failures = conformed.failures
        candidates = conformed.frame
        if failures.height:
            candidates = candidates.filter(~pl.col(ROW).is_in(failures["row"].implode()))
        checked = validate_chunk(candidates, self.compiled, tracker)
        if checked.height:
            failures = pl.concat([failures, checked])
        valid = conformed.frame
        if failures.height:
            bad = failures["row"].unique()
            valid = valid.filter(~pl.col(ROW).is_in(bad.implode()))
            stored_raw = raw
            if self.pii:  # only the rows going to quarantine: treating is per value
                is_bad = pl.col(ROW).is_in(bad.implode())
                bad_raw, bad_rows = raw.filter(is_bad), conformed.frame.filter(is_bad)
                failures = self.pii.failures(failures, _quoted(self.pii, runtime, bad_raw, bad_rows))
                stored_raw = self.pii.raw(bad_raw, runtime.source_names)
            tally.records.append(quarantine.row_records(stored_raw, failures, context=context))
            tally.rows_quarantined += bad.len()
        if self.erased is not None and valid.height:
            keep = self.erased.keep(valid)
            tally.rows_erased += valid.height - int(keep.sum())
            valid = valid.filter(keep)
        tally.rows_committed += valid.height
        if valid.height:
            if self.pii:
                valid = self.pii.rows(valid)
            rows = self.provenance.add(
                valid,
                lake=runtime.lake,
                path=entry.path,
                batch=plan.version,
                ingested_at=self.ingested_at,
                columns=self.output_columns,
            )
            table = rows.to_arrow(compat_level=pl.CompatLevel.newest())
            if not table.schema.equals(self.arrow_schema):
                table = table.cast(self.arrow_schema)
            yield from table.to_batches()


def _quoted(
    pii: PiiPolicy, runtime: DatasetRuntime, raw: pl.DataFrame, conformed: pl.DataFrame
) -> list[tuple[str, pl.DataFrame]]:
    """The texts failure messages may quote for each personal-data column: raw and conformed."""
    quoted = []
    for name in pii.rules:
        source = runtime.source_names.get(name, name)
        for frame, column in ((raw, source), (conformed, name)):
            if column in frame.columns:
                quoted.append(
                    (name, frame.select(pl.col(ROW).alias("row"), as_text(frame[column]).alias("text")))
                )
    return quoted

"""One file through read -> conform -> validate: its valid rows, its outcome, its quarantine records.

:meth:`FileJob.run` is a generator of the file's valid rows (Arrow record batches, as committed)
whose *return value* is the file's :class:`~lakesync.pipeline.attempt.FileResult`. When the
attempt cannot write the file as it stands (drift adds a column, or stops the dataset; a large
file turns out broken after some of its rows were streamed), the result carries a
:class:`~lakesync.pipeline.attempt.Redo` instead of an outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import replace
from typing import Any

import polars as pl
import pyarrow as pa

from lakesync.config.datatypes import describe
from lakesync.conform import ConformRules, DriftReport, classify, conform_chunk, rename
from lakesync.conform.conform import as_text
from lakesync.conform.drift import SourceKind, signature_id
from lakesync.conform.policies import DriftAction, FileDrift
from lakesync.discover.stores import file_checksum
from lakesync.pipeline.attempt import Attempt, FileResult, Redo
from lakesync.pipeline.context import TableContext
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.tally import Tally
from lakesync.read import ROW, FileReadError, read_file
from lakesync.read.base import BROKEN, RECORD
from lakesync.state import quarantine
from lakesync.state.values import BatchPlan, FileEntry, FileOutcome
from lakesync.validate import FileUniqueness, UniqueTracker, validate_chunk

Rows = Generator[pa.RecordBatch, None, FileResult]
_SOURCE_KINDS: dict[str, SourceKind] = {"csv": "text", "ndjson": "json", "json": "json"}


def collect(rows: Rows) -> tuple[list[pa.RecordBatch], FileResult]:
    """All of a file's rows and its result (for files processed whole, on a worker)."""
    batches: list[pa.RecordBatch] = []
    while True:
        try:
            batches.append(next(rows))
        except StopIteration as done:
            return batches, done.value


class FileJob:
    """One file of one batch in one attempt."""

    def __init__(self, ctx: TableContext, attempt: Attempt, plan: BatchPlan, entry: FileEntry) -> None:
        self.ctx = ctx
        self.attempt = attempt
        self.plan = plan
        self.entry = entry
        self.runtime: DatasetRuntime = ctx.runtimes[plan.dataset]
        self.tally = Tally()
        self.tracker: UniqueTracker | FileUniqueness = UniqueTracker(ctx.table.contract.unique)
        self.source_types: dict[str, str] = {}
        """Canonical column -> its type in this file (from its first chunk)."""

    @property
    def where(self) -> str:
        return f"{self.runtime.lake}/{self.entry.path}"

    def context(self) -> dict[str, Any]:
        """The columns every quarantine record of this file shares."""
        return {
            "lake": self.runtime.lake,
            "dataset": self.runtime.name,
            "file": self.entry.path,
            "batch": self.plan.version,
            "run_id": self.ctx.run_id,
            "contract": self.ctx.table.fingerprint,
            "quarantined_at": self.attempt.ingested_at,
        }

    def unreadable(self, reason: str, checksum: str | None = None) -> FileResult:
        message = f"{self.where}: {reason}"
        return FileResult(
            self.plan.dataset,
            FileOutcome(self.entry, "quarantined", 0, 0, 0, reason=message, checksum=checksum),
            (quarantine.file_record(reason=message, rule="unreadable_file", context=self.context()),),
        )

    def run(self, *, streaming: bool) -> Rows:
        """Yield the file's valid rows; return its result.

        When ``streaming``, rows leave before the whole file is read, so a file found broken
        after some rows returns a redo (leave the file out, or read it record by record);
        otherwise it is simply unreadable (its rows were never yielded: a worker collects them
        first). A file with records that cannot be parsed is read again record by record when
        the dataset keeps its good rows (``bad_records: quarantine_row``).
        """
        key = (self.plan.dataset, self.entry.path)
        excluded = self.attempt.redo.excluded.get(key)
        if excluded is not None:
            return self.unreadable(excluded)
        result = yield from self.read(streaming=streaming, tolerant=key in self.attempt.redo.tolerant)
        if result is None:  # records that cannot be parsed, none of the file's rows out yet
            self.tally, self.tracker = Tally(), UniqueTracker(self.ctx.table.contract.unique)
            result = yield from self.read(streaming=streaming, tolerant=True)
        assert result is not None
        return result

    def read(self, *, streaming: bool, tolerant: bool) -> Generator[pa.RecordBatch, None, FileResult | None]:
        """One pass over the file; ``None`` when it must be read again record by record."""
        checksum: str | None = None
        report: DriftReport | None = None
        action: DriftAction | None = None
        selected = self.plan.rows.get(self.entry.path)
        only = pl.Series(ROW, selected, dtype=pl.Int64).implode() if selected is not None else None
        spec = replace(self.runtime.read_spec, tolerant=tolerant)
        try:
            with self.runtime.store.local_path(self.entry) as path:
                with contextlib.suppress(OSError):  # a file gone since listing: read_file says so
                    checksum = file_checksum(path)
                for whole in read_file(path, spec):
                    # A replay of quarantined rows takes only those records of the file.
                    raw = whole if only is None else whole.filter(pl.col(ROW).is_in(only))
                    if BROKEN in raw.columns:
                        self.broken(raw)
                        continue
                    chunk = rename(raw, self.runtime.columns)
                    if report is None:
                        report, action = self.drift(chunk)
                        if action.kind in ("add_columns", "stop_dataset", "auto_rename"):
                            return FileResult(self.plan.dataset, None, redo=self.redo_for(action, report))
                    for batch in self.chunk(raw, chunk, action):
                        self.tally.streamed += batch.num_rows if streaming else 0
                        yield batch
        except FileReadError as exc:
            if exc.recoverable and not tolerant and self.runtime.config.bad_records == "quarantine_row":
                if not self.tally.streamed:
                    return None
                return FileResult(
                    self.plan.dataset,
                    None,
                    redo=Redo(tolerant=frozenset({(self.plan.dataset, self.entry.path)})),
                )
            return self.failed(f"line {exc.line}: {exc.reason}" if exc.line else exc.reason, checksum)
        except (ValueError, OSError) as exc:
            return self.failed(str(exc), checksum)
        return self.result(report, action, checksum)

    def failed(self, reason: str, checksum: str | None) -> FileResult:
        """The file cannot be read: after rows of it were streamed, the round is redone without it."""
        if self.tally.streamed:
            return FileResult(
                self.plan.dataset, None, redo=Redo(excluded={(self.plan.dataset, self.entry.path): reason})
            )
        return self.unreadable(reason, checksum)

    def broken(self, raw: pl.DataFrame) -> None:
        """Records that could not be parsed: quarantined one by one, with their line and text
        (the text withheld when the table holds personal data: it cannot be treated by column)."""
        self.tally.rows_read += raw.height
        personal = bool(self.ctx.rules.pii) or bool(self.ctx.table.contract.contract.subjects)
        text = pl.lit("(withheld: the table holds personal data)") if personal else pl.col(RECORD)
        stored = raw.select(ROW, text.alias("(record)"))
        failures = raw.select(
            pl.col(ROW).alias("row"),
            pl.lit("(record)").alias("column"),
            pl.lit("malformed_record").alias("rule"),
            pl.col(BROKEN).alias("message"),
        )
        self.tally.records.append(quarantine.row_records(stored, failures, context=self.context()))
        self.tally.rows_quarantined += raw.height

    def result(
        self, report: DriftReport | None, action: DriftAction | None, checksum: str | None
    ) -> FileResult:
        quarantined = action is not None and action.kind == "quarantine_file"
        tally = self.tally
        outcome = FileOutcome(
            self.entry,
            "quarantined" if quarantined else "ingested",
            tally.rows_read,
            tally.rows_committed,
            tally.rows_quarantined,
            reason=action.reason if quarantined and action is not None else None,
            drift=report.to_dict() if report is not None and report.changes else None,
            rows_erased=tally.rows_erased,
            checksum=checksum,
            rows_rescued=tally.rows_rescued,
            rescued=self.rescued() or None,
        )
        return FileResult(self.plan.dataset, outcome, tuple(tally.records))

    def rescued(self) -> dict[str, dict[str, Any]]:
        """What was rescued per column, with the column's types when the table has it."""
        canonical = self.runtime.columns
        found: dict[str, dict[str, Any]] = {}
        for name, rows in self.tally.rescued.items():
            column = self.attempt.shape.target.get(canonical.get(name, name))
            entry: dict[str, Any] = {"rows": rows, "examples": self.tally.examples.get(name, [])}
            if column is not None:
                entry["table_type"] = describe(column.dtype)
                entry["source_type"] = self.source_types.get(column.name)
            found[name] = entry
        return found

    def redo_for(self, action: DriftAction, report: DriftReport) -> Redo:
        if action.kind == "add_columns":
            return Redo(added=action.columns)
        if action.kind == "auto_rename":
            event = signature_id(self.runtime.key, report.signature)
            return Redo(renamed={event: (self.plan.dataset, report)})
        return Redo(stopped={self.plan.dataset: (action.reason or "stopped by drift", report)})

    def drift(self, chunk: pl.DataFrame) -> tuple[DriftReport, DriftAction]:
        """The file's schema drift, and what the dataset's policy does about it."""
        runtime = self.runtime
        source = {k: v for k, v in chunk.schema.items() if k != ROW}
        self.source_types = {k: describe(v) for k, v in source.items()}
        base = self.attempt.shape.base  # before this round, so columns this round adds are reported
        changes = classify(
            source,
            base,
            kind=_SOURCE_KINDS.get(runtime.config.format, "typed"),
            chunk=chunk,
            table_values=self.attempt.table_values,
        )
        report = DriftReport(self.entry.path, runtime.policy.name, changes)
        if not report.needs_review:
            return report, DriftAction("accept")
        drift = FileDrift(
            event=signature_id(runtime.key, report.signature),
            where=self.where,
            report=report,
            added={c.column: source[c.column] for c in changes if c.change == "added"},
            known=frozenset(self.attempt.shape.target.names),
        )
        auto = self.ctx.auto_renames
        if auto is not None and runtime.decisions.status(drift.event) is None:
            renames = auto.approves(report)
            if renames:
                return report, DriftAction("auto_rename", renames=renames)
        action = runtime.policy.decide(drift, runtime.decisions)
        return DriftReport(report.file, report.policy, changes, action.actions), action

    def chunk(
        self, raw: pl.DataFrame, chunk: pl.DataFrame, action: DriftAction | None
    ) -> Iterator[pa.RecordBatch]:
        """One chunk's valid rows, as committed; its rejected rows become quarantine records."""
        tally = self.tally
        tally.rows_read += raw.height
        if action is not None and action.kind == "quarantine_file":
            failures = pl.DataFrame(
                {"row": raw[ROW], "column": "(file)", "rule": "schema_drift", "message": action.reason}
            )
            self.quarantine(raw, failures, raw.height)
            return
        valid = self.checked(raw, chunk)
        erased = self.ctx.rules.erased
        if erased is not None and valid.height:
            keep = erased.keep(valid)
            tally.rows_erased += valid.height - int(keep.sum())
            valid = valid.filter(keep)
        tally.rows_committed += valid.height
        if valid.height:
            tally.count_rescued(valid)
            yield from self.stored(valid)

    def checked(self, raw: pl.DataFrame, chunk: pl.DataFrame) -> pl.DataFrame:
        """The chunk conformed to the table and validated by the contract: its valid rows."""
        frame, failures = self.judged(chunk)
        if not failures.height:
            return frame
        bad = failures["row"].unique()
        is_bad = pl.col(ROW).is_in(bad.implode())
        bad_raw = raw.filter(is_bad)
        pii = self.ctx.rules.pii
        if pii:  # only the rows going to quarantine: treating is per value
            failures = pii.failures(failures, self.quoted(bad_raw, frame.filter(is_bad)))
        self.quarantine(bad_raw, failures, bad.len())
        return frame.filter(~is_bad)

    def judged(self, chunk: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Every row of the chunk conformed to the table (a value that cannot be converted is
        null), and the failures (``row``, ``column``, ``rule``, ``message``) of those that do not
        convert or do not pass the contract."""
        runtime, pii = self.runtime, self.ctx.rules.pii
        rules = ConformRules(
            source_names=runtime.source_names,
            formats=runtime.formats,
            rescue_values=runtime.policy.rescues_values,
            rescue_unknown=runtime.policy.rescues_unknown,
            treat=pii.treat_text if pii else None,
        )
        conformed = conform_chunk(chunk, self.attempt.shape.target, rules)
        failures = conformed.failures
        candidates = conformed.frame
        if failures.height:
            candidates = candidates.filter(~pl.col(ROW).is_in(failures["row"].implode()))
        found = validate_chunk(candidates, self.ctx.table.contract, self.tracker)
        if found.height:
            failures = pl.concat([failures, found])
        return conformed.frame, failures

    def quarantine(self, raw: pl.DataFrame, failures: pl.DataFrame, rows: int) -> None:
        pii = self.ctx.rules.pii
        stored = pii.raw(raw, self.runtime.source_names) if pii else raw
        self.tally.records.append(quarantine.row_records(stored, failures, context=self.context()))
        self.tally.rows_quarantined += rows

    def stored(self, valid: pl.DataFrame) -> Iterator[pa.RecordBatch]:
        """Valid rows as stored: personal data treated, provenance added, in the output schema."""
        yield from self.stored_table(valid, self.entry.path).to_batches()

    def stored_table(self, valid: pl.DataFrame, path: str | pl.Series) -> pa.Table:
        """``stored``, as one table; ``path`` is the rows' file in the lake (or each row's)."""
        rules, shape = self.ctx.rules, self.attempt.shape
        if rules.pii:
            valid = rules.pii.rows(valid)
        rows = rules.provenance.add(
            valid, lake=self.runtime.lake, path=path, batch=self.plan.version, at=self.attempt.ingested_at
        ).select(shape.columns)
        table = rows.to_arrow(compat_level=pl.CompatLevel.newest())
        if not table.schema.equals(shape.arrow):
            table = table.cast(shape.arrow)
        return table

    def quoted(self, raw: pl.DataFrame, conformed: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
        """The texts failure messages may quote for each personal-data column: raw and conformed."""
        quoted = []
        for name in self.ctx.rules.pii.rules:
            source = self.runtime.source_names.get(name, name)
            for frame, column in ((raw, source), (conformed, name)):
                if column in frame.columns:
                    text = as_text(frame[column]).alias("text")
                    quoted.append((name, frame.select(pl.col(ROW).alias("row"), text)))
        return quoted

"""Stream the files of a round of batches through read -> conform -> validate.

A :class:`RoundStream` yields Arrow record batches of valid rows (what the Delta commit
consumes, with bounded memory) and, as a by-product, collects per-file outcomes, quarantine
records and drift reports. When something is only found out after rows of a file were already
streamed (a truncated file, a column drift must add), the stream stops with a
:class:`Restart` saying how to redo the round; nothing of the aborted attempt is committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from lakesync.commit import quarantine
from lakesync.commit.delta import with_provenance
from lakesync.conform import DriftReport, TargetSchema, classify, conform_chunk, rename
from lakesync.discover import BatchPlan, FileEntry, FileOutcome
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.read import ROW, FileReadError, read_file
from lakesync.validate import CompiledContract, UniqueTracker, validate_chunk


@dataclass
class Restart(Exception):  # noqa: N818 - a signal to redo the round, not an error
    """Redo the round: leave a file out, add columns, or leave a dataset out."""

    exclude_file: tuple[str, str, str] | None = None
    """(dataset key, path, reason) of a file that failed after some of its rows were streamed."""
    add_columns: Mapping[str, pl.DataType] | None = None
    """Columns drift adds to the table (policy evolve)."""
    fail_dataset: tuple[str, str] | None = None
    """(dataset key, reason) of a dataset whose drift policy is ``fail``."""


@dataclass
class FileTally:
    rows_read: int = 0
    rows_committed: int = 0
    rows_quarantined: int = 0
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
        try:
            for plan, entry in self.files():
                yield from self._file(plan, entry)
        except Restart as restart:
            self.restart = restart
            raise

    def drain(self) -> None:
        """Consume the stream without keeping rows (outcomes and quarantine records only)."""
        for _ in self.batches():
            pass

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

    def _quarantine_file(
        self, runtime: DatasetRuntime, plan: BatchPlan, entry: FileEntry, reason: str, rule: str
    ) -> None:
        context = self._context(runtime, plan, entry)
        message = f"{runtime.lake}/{entry.path}: {reason}"
        self.records.append(quarantine.file_record(reason=message, rule=rule, context=context))
        self.outcomes[plan.dataset].append(FileOutcome(entry, "quarantined", 0, 0, 0, reason=message))

    def _file(self, plan: BatchPlan, entry: FileEntry) -> Iterator[pa.RecordBatch]:
        runtime = self.runtimes[plan.dataset]
        excluded = self.excluded.get((plan.dataset, entry.path))
        if excluded is not None:
            self._quarantine_file(runtime, plan, entry, excluded, "unreadable_file")
            return
        tally = FileTally()
        report: DriftReport | None = None
        quarantine_all: str | None = None
        tracker = UniqueTracker(self.compiled.unique)
        try:
            with runtime.store.local_path(entry) as path:
                for raw in read_file(path, runtime.read_spec):
                    chunk = rename(raw, runtime.config.columns)
                    if report is None:
                        report, quarantine_all = self._drift(runtime, entry, chunk)
                    yield from self._chunk(
                        runtime=runtime,
                        plan=plan,
                        entry=entry,
                        raw=raw,
                        chunk=chunk,
                        tally=tally,
                        tracker=tracker,
                        quarantine_all=quarantine_all,
                    )
        except (FileReadError, ValueError, OSError) as exc:
            reason = exc.reason if isinstance(exc, FileReadError) else str(exc)
            line = f"line {exc.line}: " if isinstance(exc, FileReadError) and exc.line else ""
            if tally.streamed:
                raise Restart(exclude_file=(plan.dataset, entry.path, f"{line}{reason}")) from exc
            self._quarantine_file(runtime, plan, entry, f"{line}{reason}", "unreadable_file")
            return
        self.records.extend(tally.records)
        status: Literal["ingested", "quarantined"] = "quarantined" if quarantine_all else "ingested"
        self.outcomes[plan.dataset].append(
            FileOutcome(
                entry,
                status,
                tally.rows_read,
                tally.rows_committed,
                tally.rows_quarantined,
                reason=quarantine_all,
                drift=report.to_dict() if report is not None and report.changes else None,
            )
        )

    def _drift(
        self, runtime: DatasetRuntime, entry: FileEntry, chunk: pl.DataFrame
    ) -> tuple[DriftReport, str | None]:
        """Classify the file's schema drift and apply the dataset's policy to the file as a whole."""
        source = {k: v for k, v in chunk.schema.items() if k != ROW}
        # Against the table as it was before this round, so columns this round adds are reported.
        changes = classify(source, self.base_target, text_source=runtime.config.format == "csv")
        report = DriftReport(entry.path, runtime.policy, changes)
        if not report.needs_review:
            return report, None
        added = {c.column: source[c.column] for c in changes if c.change == "added"}
        missing = [c.column for c in changes if c.change == "missing"]
        if runtime.policy == "fail":
            reason = (
                f"schema drift in {runtime.lake}/{entry.path}: {report.summary()}. The dataset's drift "
                "policy is 'fail': ingestion of this dataset is stopped until the contract or the "
                "mapping is changed to accept it"
            )
            raise Restart(fail_dataset=(runtime.key, reason))
        if runtime.policy == "quarantine":
            reason = f"schema drift (policy quarantine): {report.summary()}"
            return DriftReport(entry.path, runtime.policy, changes, ("quarantined the file",)), reason
        actions: list[str] = []
        if runtime.policy == "evolve":
            if any(self.target.get(name) is None for name in added):
                raise Restart(add_columns=added)
            actions.extend(
                f"added column {c.column!r} ({c.source_type}) to the table"
                for c in changes
                if c.change == "added"
            )
        elif added:
            actions.append(f"rescued {', '.join(added)} into _rescued_data")
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
            tally.records.append(quarantine.row_records(raw, failures, context=context))
            tally.rows_quarantined += raw.height
            return
        conformed = conform_chunk(
            chunk, self.target, source_names=runtime.source_names, formats=runtime.formats
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
            tally.records.append(quarantine.row_records(raw, failures, context=context))
            tally.rows_quarantined += bad.len()
        tally.rows_committed += valid.height
        if valid.height:
            rows = with_provenance(
                valid,
                lake=runtime.lake,
                dataset=runtime.name,
                file=entry.path,
                batch=plan.version,
                ingested_at=self.ingested_at,
                columns=self.output_columns,
            )
            table = rows.to_arrow(compat_level=pl.CompatLevel.newest())
            if not table.schema.equals(self.arrow_schema):
                table = table.cast(self.arrow_schema)
            tally.streamed += valid.height
            yield from table.to_batches()

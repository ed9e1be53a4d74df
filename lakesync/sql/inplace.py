"""Lake files read in place for a query: mapped, converted, judged by the contract and treated
for personal data by the sync's own code (:class:`~lakesync.pipeline.files.FileJob`), with
nothing written anywhere: no ledger, no quarantine, no table.

Each row says whether it passes the contract (``_lakesync_passes``) and, when not, which
column and rule it failed (``_lakesync_failed``); rows of erased data subjects are left out, as
the sync leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.pipeline.attempt import Attempt, Redo, attempt_shape, value_sampler
from lakesync.pipeline.context import TableContext
from lakesync.pipeline.files import FileJob, collect
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.read import ROW
from lakesync.state.values import BatchPlan, FileEntry

PASSES = "_lakesync_passes"
"""Whether the row passes the table's contract (rows of the lakehouse always do)."""
FAILED = "_lakesync_failed"
"""``column: rule`` of each check the row failed, ``; ``-separated (null when it passes)."""
_REDOS = 4


class InPlaceJob(FileJob):
    """A file of a lake read for a query: every row kept, judged, nothing quarantined."""

    def checked(self, raw: pl.DataFrame, chunk: pl.DataFrame) -> pl.DataFrame:
        frame, failures = self.judged(chunk)
        if not failures.height:
            return frame.with_columns(pl.lit(value=True).alias(PASSES), pl.lit(None, pl.String).alias(FAILED))
        # Only the column and the rule: a failure's message may quote a personal value.
        per_row = failures.group_by("row").agg(
            pl.format("{}: {}", "column", "rule").unique().sort().str.join("; ").alias(FAILED)
        )
        per_row = per_row.with_columns(pl.col("row").cast(frame.schema[ROW])).rename({"row": ROW})
        judged = frame.join(per_row, on=ROW, how="left", maintain_order="left")
        return judged.with_columns(pl.col(FAILED).is_null().alias(PASSES))

    def stored(self, valid: pl.DataFrame) -> Iterator[pa.RecordBatch]:
        rules, shape = self.ctx.rules, self.attempt.shape
        rows = rules.pii.rows(valid) if rules.pii else valid
        rows = rules.provenance.add(rows, lake=self.runtime.lake, path=self.entry.path, batch=0, at=_EPOCH)
        not_committed = [n for n in (rules.provenance.batch, rules.provenance.ingested_at) if n is not None]
        rows = rows.with_columns(pl.lit(None, rows.schema[n]).alias(n) for n in not_committed)
        yield from rows.select(*shape.columns, PASSES, FAILED).to_arrow().to_batches()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class InPlaceRows:
    """What reading some of a dataset's files in place gave."""

    frame: pl.DataFrame | None = None
    files_read: int = 0
    skipped: list[str] = field(default_factory=list)
    """``<lake>/<path>: why`` of each file whose rows a sync would not commit as they are
    (unreadable, quarantined whole by drift, its dataset stopped by drift)."""


def read_in_place(
    ctx: TableContext, runtime: DatasetRuntime, files: Sequence[FileEntry], snapshot: DeltaTable | None
) -> InPlaceRows:
    """The rows of ``files`` (of ``runtime``'s dataset) as the table ``snapshot`` would hold them."""
    found = InPlaceRows()
    plan = BatchPlan(runtime.key, runtime.table, 0, tuple(files))
    frames: list[pl.DataFrame] = []
    sampler = value_sampler(snapshot)
    for entry in files:
        redo = Redo()
        for _ in range(_REDOS):
            attempt = Attempt(
                snapshot=snapshot,
                shape=attempt_shape(ctx, snapshot, rescue=runtime.policy.rescues_values, added=redo.added),
                write=(plan,),
                done=(),
                redo=redo,
                ingested_at=datetime.now(tz=UTC),
                table_values=sampler,
            )
            batches, result = collect(InPlaceJob(ctx, attempt, plan, entry).run(streaming=False))
            if result.redo is None or result.redo.stopped:
                break
            redo = redo.merged(result.redo)
        where = f"{runtime.lake}/{entry.path}"
        if result.redo is not None:
            why = next(iter(result.redo.stopped.values()), ("drift the sync would stop at",))[0]
            found.skipped.append(f"{where}: {why}")
        elif result.outcome is not None and result.outcome.status == "quarantined":
            reason = result.outcome.reason or "quarantined"
            found.skipped.append(reason if reason.startswith(where) else f"{where}: {reason}")
        else:
            found.files_read += 1
            if batches:
                frames.append(pl.from_arrow(pa.Table.from_batches(batches)))  # type: ignore[arg-type]
    if frames:
        found.frame = pl.concat(frames, how="diagonal_relaxed")
    return found

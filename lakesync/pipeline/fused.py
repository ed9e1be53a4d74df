"""Small files of one batch, checked together: each read on its own, conformed and validated as one frame.

polars charges a fixed cost per call (~0.3 ms, whatever the rows) and a file takes some twenty
calls between its read and its Arrow rows (conform, the contract's checks, provenance, the output
schema): 1,000-row files cost ~6 ms each, several times what reading them takes. So whole files
of one batch that share a schema the drift policy simply accepts go through conform, validate and
provenance as one frame. Each is still read, checksummed and judged by drift on its own, and
comes out as if processed alone: its rows (in file order), its outcome, its quarantine records
with its own row numbers. A file that cannot be read, has records that do not parse, is replayed
in part, or drifts in a way the policy does more about than accept goes alone through
:class:`~lakesync.pipeline.files.FileJob`.

In the fused frame ``_lakesync_row`` is ``file index * 2**32 + row in the file``: rows stay
unique, so every stage works on it unchanged; uniqueness is checked per file
(:class:`~lakesync.validate.FileUniqueness`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import polars as pl
import pyarrow as pa

from lakesync.conform import DriftReport, rename
from lakesync.conform.target import RESCUED
from lakesync.discover.stores import file_checksum
from lakesync.pipeline.attempt import FileResult
from lakesync.pipeline.files import FileJob, collect
from lakesync.read import ROW, FileReadError, read_file
from lakesync.read.base import BROKEN
from lakesync.state import quarantine
from lakesync.validate import FileUniqueness

FUSE_FILES = 64
"""Files checked together, at most."""
SMALL_FILE_BYTES = 256 * 1024
"""Files this small are checked together (a larger file's own calls cost little beside its rows)."""
FUSE_BYTES = 2 * 1024 * 1024
"""Bytes of the files checked together, at most (about one chunk of rows: memory as one chunk's)."""
_PATH = "_lakesync_path"
_STEP = 1 << 32
"""A fused ``_lakesync_row`` is ``file index * _STEP + row in the file``."""
_ALONE = ("add_columns", "stop_dataset", "quarantine_file", "auto_rename")
"""Drift actions that need a file's own pass."""

Output = tuple[list[pa.RecordBatch], FileResult]
FusedRow = TypeVar("FusedRow", pl.Expr, pl.Series)


def fusable(job: FileJob) -> bool:
    """A small file read whole and entirely (not replayed in part, not read record by record)."""
    key = (job.plan.dataset, job.entry.path)
    redo = job.attempt.redo
    return (
        job.entry.size <= min(SMALL_FILE_BYTES, job.ctx.whole_file_bytes)
        and key not in redo.excluded
        and key not in redo.tolerant
        and job.plan.rows.get(job.entry.path) is None
    )


def process(jobs: Sequence[FileJob]) -> list[Output]:
    """Every file's rows and result, in order, for whole files of one batch."""
    if len(jobs) == 1:
        return [collect(jobs[0].run(streaming=False))]
    together = _read_parquet_together(jobs)
    if together is not None:
        return [together[i] for i in range(len(jobs))]
    out: dict[int, Output] = {}
    by_schema: dict[tuple[tuple[str, pl.DataType], ...], list[tuple[_Member, pl.DataFrame]]] = {}
    for index, job in enumerate(jobs):
        loaded = _load(index, job)
        if loaded is None:
            out[index] = collect(job.run(streaming=False))
        else:
            by_schema.setdefault(tuple(loaded[1].schema.items()), []).append(loaded)
    for group in by_schema.values():
        members = [member for member, _ in group]
        having = [m for m in members if m.rows]  # (an empty list must not explode into a null)
        part = pl.DataFrame(
            {"file": [m.index for m in having], "rows": [m.rows for m in having]},
            schema={"file": pl.Int64, "rows": pl.Int64},
        ).select(pl.col("file").repeat_by("rows").explode())["file"]
        raw = pl.concat([frame for _, frame in group]).with_columns(pl.col(ROW) + part * _STEP)
        out.update(_together(members, raw))
    return [out[i] for i in range(len(jobs))]


@dataclass(frozen=True)
class _Member:
    """One file of a fused frame."""

    index: int
    """The file's place among the jobs: the high part of its rows' ``_lakesync_row``."""
    job: FileJob
    rows: int
    checksum: str | None


def _load(index: int, job: FileJob) -> tuple[_Member, pl.DataFrame] | None:
    """The file's records, or ``None`` when it must go alone (its own pass says why)."""
    checksum: str | None = None
    try:
        with job.runtime.store.local_path(job.entry) as path:
            with contextlib.suppress(OSError):
                checksum = file_checksum(path)
            chunks = list(read_file(path, job.runtime.read_spec))
        raw = chunks[0] if len(chunks) == 1 else pl.concat(chunks)
    except (FileReadError, ValueError, OSError, pl.exceptions.PolarsError):
        return None
    if BROKEN in raw.columns:
        return None
    return _Member(index, job, raw.height, checksum), raw


def _read_parquet_together(jobs: Sequence[FileJob]) -> dict[int, Output] | None:
    """Parquet files of one schema read by one polars scan (6x cheaper a file than one scan
    each); ``None`` when any of them needs a read of its own (polars refuses files whose
    columns or types differ, or that are not parquet: their own read says why)."""
    if jobs[0].runtime.read_spec.format != "parquet" or any(
        j.entry.path.lower().endswith(".gz") for j in jobs
    ):
        return None
    with ExitStack() as stack:
        try:
            paths = [str(stack.enter_context(job.runtime.store.local_path(job.entry))) for job in jobs]
            checksums = [file_checksum(Path(path)) for path in paths]
            scanned = pl.scan_parquet(paths, row_index_name=ROW, include_file_paths=_PATH).collect()
            file = pl.col(_PATH).replace_strict(paths, list(range(len(paths))), return_dtype=pl.Int64)
            first = pl.col(ROW).cast(pl.Int64).min().over(_PATH)
            raw = scanned.select(
                pl.col(ROW).cast(pl.Int64) - first + 1 + file * _STEP, pl.exclude(ROW, _PATH)
            )
            counts = scanned[_PATH].value_counts()
        except (OSError, ValueError, pl.exceptions.PolarsError):
            return None
    rows = dict(zip(counts[_PATH].to_list(), counts["count"].to_list(), strict=True))
    members = [_Member(i, job, rows.get(paths[i], 0), checksums[i]) for i, job in enumerate(jobs)]
    return _together(members, raw)


def _alone(members: Sequence[_Member]) -> dict[int, Output]:
    return {member.index: collect(member.job.run(streaming=False)) for member in members}


def _together(members: Sequence[_Member], raw: pl.DataFrame) -> dict[int, Output]:
    """Files of one schema (``raw``, rows numbered as fused) through conform and validate as one
    frame; each file's output."""
    fused = _Fused(members)
    try:
        chunk = rename(raw, fused.runtime.columns)
    except ValueError:  # a mapping that clashes: each file says so on its own
        return _alone(members)
    report, action = fused.drift(chunk.head(members[0].rows))  # judged on the first file, as alone
    if action.kind in _ALONE:
        return _alone(members)
    valid = fused.checked(raw, chunk)
    erased = fused.ctx.rules.erased
    rows_erased: dict[int, int] = {}
    if erased is not None and valid.height:
        keep = erased.keep(valid)
        rows_erased = _per_file(valid.filter(~keep))
        valid = valid.filter(keep)
    committed = _per_file(valid)
    paths = pl.Series(
        [fused.parts[i].entry.path if i in fused.parts else None for i in range(max(fused.parts) + 1)]
    )
    files = _file(valid[ROW])
    table = fused.stored_table(valid.with_columns(_row(pl.col(ROW))), path=paths.gather(files))
    rescued = RESCUED in valid.columns and valid[RESCUED].null_count() < valid.height
    out: dict[int, Output] = {}
    offset = 0
    for member in members:
        job, rows = member.job, committed.get(member.index, 0)
        tally = job.tally
        tally.rows_read += member.rows
        tally.rows_committed += rows
        tally.rows_erased += rows_erased.get(member.index, 0)
        if rescued and rows:
            tally.count_rescued(valid.slice(offset, rows))
        job.source_types = fused.source_types
        own = DriftReport(job.entry.path, report.policy, report.changes, report.actions)
        batches = table.slice(offset, rows).to_batches() if rows else []
        out[member.index] = (batches, job.result(own, action, member.checksum))
        offset += rows
    return out


def _file(row: FusedRow) -> FusedRow:
    return row // _STEP


def _row(row: FusedRow) -> FusedRow:
    return row % _STEP


def _per_file(rows: pl.DataFrame) -> dict[int, int]:
    """Rows per file index (fused ``_lakesync_row``)."""
    if not rows.height:
        return {}
    counts = rows.select(_file(pl.col(ROW)).alias("file")).to_series().value_counts()
    return dict(zip(counts["file"].to_list(), counts["count"].to_list(), strict=True))


class _Fused(FileJob):
    """The files of a group as one job: their quarantine records go back to each file."""

    def __init__(self, members: Sequence[_Member]) -> None:
        lead = members[0].job
        super().__init__(lead.ctx, lead.attempt, lead.plan, lead.entry)
        self.parts = {member.index: member.job for member in members}
        self.tracker = FileUniqueness(lead.ctx.table.contract.unique, file_of=_file, row_of=_row)

    def quarantine(self, raw: pl.DataFrame, failures: pl.DataFrame, rows: int) -> None:
        pii = self.ctx.rules.pii
        stored = pii.raw(raw, self.runtime.source_names) if pii else raw
        by_file = failures.with_columns(_file(pl.col("row")).alias("file")).partition_by("file", as_dict=True)
        for (index,), found in by_file.items():
            job = self.parts[int(str(index))]
            own = found.drop("file").with_columns(_row(pl.col("row")))
            rows_of = stored.filter(_file(pl.col(ROW)) == index).with_columns(_row(pl.col(ROW)))
            job.tally.records.append(quarantine.row_records(rows_of, own, context=job.context()))
            job.tally.rows_quarantined += own["row"].n_unique()

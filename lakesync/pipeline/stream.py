"""Stream the files of some batches through read -> conform -> validate, in landing order.

A :class:`RoundStream` is what the Delta commit consumes: Arrow record batches of valid rows,
with bounded memory. Each file's :class:`~lakesync.pipeline.attempt.FileResult` is kept as the
stream goes; :meth:`RoundStream.results` hands them over once the stream was consumed to its end.

When a file's result asks for a redo, the stream must stop the Delta writer before it commits
anything: the only way to stop a writer that is reading a stream is to fail the stream, so the
stream raises :class:`StreamStopped` and keeps the redo in :attr:`RoundStream.redo` (the error
may reach the caller wrapped by the writer). The round turns it back into a value right there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa

from lakesync.pipeline import fused
from lakesync.pipeline.attempt import Attempt, FileResult, Redo
from lakesync.pipeline.context import TableContext
from lakesync.pipeline.files import FileJob
from lakesync.pipeline.keys import Duplicates, KeyGuard, settle
from lakesync.state.values import BatchPlan, FileEntry

_WORKERS = 2
"""Files processed at once (polars and the Delta writer use the other cores as well)."""
_AHEAD = 16
"""Files (or groups of small files) in flight ahead of the writer, at most; and at most
``_AHEAD_WHOLE`` whole-file size limits of bytes: memory stays bounded as with three large
files, while many small ones keep both cores busy."""
_AHEAD_WHOLE = 3


class StreamStopped(Exception):  # noqa: N818 - the stream's way of stopping the Delta writer
    """Raised from inside a stream so that the Delta writer reading it commits nothing."""


def _replay(rows: list[pa.RecordBatch], result: FileResult) -> Generator[pa.RecordBatch, None, FileResult]:
    """A file processed whole, as the generator of its rows its job would have been."""
    yield from rows
    return result


class RoundStream:
    """One pass over the files of some batches; see the module docstring."""

    def __init__(
        self,
        ctx: TableContext,
        attempt: Attempt,
        plans: Sequence[BatchPlan],
        guard: KeyGuard | None = None,
        *,
        drained: bool = False,
    ) -> None:
        self.ctx = ctx
        self.attempt = attempt
        self.plans = list(plans)
        self.guard = guard
        """Unique columns checked across files (append tables); shared by a round's streams."""
        self.drained = drained
        """The table holds these batches already: they are read again for their outcomes."""
        self._results: list[FileResult] = []
        self._finished = not self.plans  # nothing to stream is a stream consumed
        self.redo: Redo | None = None
        """Set when the stream stopped because the round must be redone."""

    def files(self) -> list[tuple[BatchPlan, FileEntry]]:
        """The files in landing order (oldest first): later rows win a merge."""
        pairs = [(plan, entry) for plan in self.plans for entry in plan.files]
        return sorted(pairs, key=lambda pe: (pe[1].modified, pe[0].dataset, pe[1].path))

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.attempt.shape.arrow, self.batches())

    def drain(self) -> None:
        """Consume the stream without keeping rows (for outcomes and quarantine records only)."""
        for _ in self.batches():
            pass

    def results(self) -> list[FileResult]:
        """Every file's result, once the stream was consumed to its end."""
        if not self._finished:
            msg = "the stream was not consumed to its end"
            raise RuntimeError(msg)
        return list(self._results)

    def _guarded(
        self, job: FileJob, source: Generator[pa.RecordBatch, None, FileResult]
    ) -> Generator[pa.RecordBatch, None, FileResult]:
        """A file's rows past the key guard; its result with the duplicates quarantined."""
        found: list[Duplicates] = []
        while True:
            try:
                batch = next(source)
            except StopIteration as done:
                final: FileResult = done.value
                break
            if self.guard is None:
                yield batch
                continue
            kept, duplicates = self.guard.check(batch, drained=self.drained)
            yield from kept
            if duplicates is not None:
                found.append(duplicates)
        if final.redo is not None or not found:
            return final
        return settle(final, found, job.context(), self.ctx.rules.provenance)

    def group(self, files: Sequence[tuple[BatchPlan, FileEntry]], position: int) -> list[FileJob]:
        """The next file's job, with the small files of its batch that follow it (checked
        together, :mod:`lakesync.pipeline.fused`)."""
        first = FileJob(self.ctx, self.attempt, *files[position])
        jobs = [first]
        if not fused.fusable(first):
            return jobs
        size = first.entry.size
        for plan, entry in files[position + 1 : position + fused.FUSE_FILES]:
            if plan is not first.plan or size + entry.size > fused.FUSE_BYTES:
                break
            job = FileJob(self.ctx, self.attempt, plan, entry)
            if not fused.fusable(job):
                break
            jobs.append(job)
            size += entry.size
        return jobs

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Valid rows of every file, in file order.

        Small files are processed whole on a thread pool, in groups, a few groups ahead (polars
        releases the GIL, so reading and checking overlap with the Delta writer); a large file
        streams chunk by chunk in this thread, so memory stays bounded whatever the file size.
        """
        files = self.files()
        ahead: deque[tuple[list[FileJob], Future[list[fused.Output]] | None]] = deque()
        budget = _AHEAD_WHOLE * max(1, self.ctx.whole_file_bytes)
        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="lakesync-read") as pool:
            try:
                position = 0
                while position < len(files) or ahead:
                    while position < len(files) and len(ahead) < _AHEAD:
                        jobs = self.group(files, position)
                        size = sum(j.entry.size for j in jobs)
                        if ahead and sum(j.entry.size for js, _ in ahead for j in js) + size > budget:
                            break
                        position += len(jobs)
                        whole = jobs[0].entry.size <= self.ctx.whole_file_bytes
                        ahead.append((jobs, pool.submit(fused.process, jobs) if whole else None))
                    jobs, future = ahead.popleft()
                    done = future.result() if future is not None else [None]
                    for job, output in zip(jobs, done, strict=True):
                        if output is None:
                            result = yield from self._guarded(job, job.run(streaming=True))
                        else:
                            rows, result = output
                            if result.outcome is not None and result.outcome.status == "ingested":
                                # (a file found unreadable at its end gives none)
                                result = yield from self._guarded(job, _replay(rows, result))
                        if result.redo is not None:
                            self.redo = result.redo
                            raise StreamStopped(str(result.redo))
                        self._results.append(result)
                self._finished = True
            finally:
                for _, pending in ahead:
                    if pending is not None:
                        pending.cancel()

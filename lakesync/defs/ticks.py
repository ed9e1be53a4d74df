"""What a sensor tick decides, as plain functions of what it saw (tested without Dagster).

A tick that finds new files plans their batches durably (at most ``MAX_RUNS_PER_TICK``) and asks
for one run per batch; the run ingests exactly the batches planned, so it never lists the lake
again. Run keys are deterministic (``<dataset>:batch:<n>:<config>``): a repeated tick never
requests the same work twice. A failed run pauses the dataset, then is retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from lakesync.config.datasets import SensorSettings
from lakesync.config.models import LakesyncConfig
from lakesync.conform.policies import Decisions
from lakesync.discover import split_batches
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.scan import DatasetScan
from lakesync.state.values import FileEntry

MAX_RUNS_PER_TICK = 5
RETRY_AFTER_SECONDS = 600.0


@dataclass(frozen=True)
class RunInfo:
    """What a tick needs to know about an earlier run of the dataset."""

    run_id: str
    status: str
    config: str | None
    end_time: float | None = None
    data_failed: bool = False
    """The run committed its batch but its data failed a blocking check: not a reason to pause."""


@dataclass(frozen=True)
class Tick:
    """What one tick saw."""

    scan: DatasetScan
    config: str
    """The dataset's configuration fingerprint (:func:`config_fingerprint`)."""
    now: float
    waiting: Sequence[RunInfo] = ()
    """Runs of the dataset not started yet."""
    last: RunInfo | None = None
    """The dataset's latest run."""
    stopped_by: str | None = None
    """An open drift event that stops the dataset (drift policy fail)."""


@dataclass(frozen=True)
class Decision:
    new: tuple[tuple[FileEntry, ...], ...] = ()
    """Batches of new files to plan now, oldest first."""
    pending: tuple[int, ...] = ()
    """Batches planned earlier that still want a run."""
    retry: RunInfo | None = None
    """A failed run whose batches are tried again."""
    skip: str | None = None


@dataclass(frozen=True)
class Request:
    run_key: str
    through: int
    """The run ingests the dataset's planned batches up to this one."""
    files: int = 0


def config_fingerprint(
    config: LakesyncConfig, runtime: DatasetRuntime, decisions: Decisions | None = None
) -> str:
    """Changes when the dataset's or its table's settings change, or a drift decision is taken
    (either lets a paused dataset resume)."""
    payload = {
        "dataset": runtime.config.model_dump(mode="json"),
        "table": config.tables[runtime.table].model_dump(mode="json"),
        "decisions": sorted(
            [*(decisions.approved if decisions else ()), *(decisions.rejected if decisions else ())]
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def decide(tick: Tick, *, lake: str, limits: SensorSettings) -> Decision:
    """Whether the tick plans batches and requests runs for one dataset, or why not."""
    scan, last = tick.scan, tick.last
    new = scan.discovery.new
    if not new and not scan.pending:
        found = scan.discovery
        if found.whole:
            return Decision(skip=f"no new files ({found.files} files, all known to the ledger)")
        after = f" after {found.started_after}" if found.started_after is not None else ""
        listed = f"no new files among the {found.files:,} listed{after}, all known to the ledger"
        return Decision(skip=f"{listed}; {found.resumes()}")
    if tick.stopped_by is not None:
        return Decision(skip=tick.stopped_by)
    if tick.waiting:
        run = tick.waiting[0].run_id
        return Decision(skip=f"{len(new)} new file(s) are planned once queued run {run} has started")
    batches = tuple(
        tuple(b) for b in split_batches(new, max_files=limits.max_files, max_bytes=limits.max_bytes)
    )[:MAX_RUNS_PER_TICK]
    if last is not None and last.status == "FAILURE" and last.config == tick.config and not last.data_failed:
        waited = tick.now - (last.end_time or tick.now)
        if waited < RETRY_AFTER_SECONDS:
            return Decision(
                skip=(
                    f"paused: run {last.run_id} failed; see its logs. lakesync retries in "
                    f"{RETRY_AFTER_SECONDS - waited:.0f} s, at once after a change of this dataset's "
                    f"configuration, or now with `lakesync sync --lake {lake}`"
                )
            )
        return Decision(new=batches, pending=scan.pending, retry=last)
    return Decision(new=batches, pending=scan.pending)


def run_requests(
    key: str,
    decision: Decision,
    *,
    pending: Sequence[tuple[int, int]],
    new: Sequence[tuple[int, int]],
    config: str,
) -> list[Request]:
    """The runs for a tick's batches, given as ``(batch, files)``: one per batch planned now (the
    first also finishes the pending ones, which come before it), else one for the pending ones."""
    if not pending and not new:
        return []
    if decision.retry is not None:
        through = max(version for version, _ in (*pending, *new))
        files = sum(n for _, n in (*pending, *new))
        return [Request(f"{key}:retry:{decision.retry.run_id}", through, files)]
    if not new:
        through = max(version for version, _ in pending)
        return [Request(f"{key}:batch:{through}:{config}", through, sum(n for _, n in pending))]
    return [Request(f"{key}:batch:{version}:{config}", version, files) for version, files in new]

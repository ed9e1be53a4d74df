"""Plan: which batches a dataset's sync ingests, decided from what its discovery source found.

Batches are planned durably in the ledger before any data is read (see
:mod:`lakesync.state.ledger`). A sensor that found new files plans their batches itself and
launches runs that only take planned batches (``through``), so a run never lists the lake again;
a run started by hand (``lakesync sync``, ``dagster asset materialize``) asks the dataset's source
once and plans its next batch from that.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lakesync.discover.planning import Discovery, take_batch
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.state.ledger import Ledger
from lakesync.state.ledger_state import DatasetLedger
from lakesync.state.values import BatchPlan, FileEntry

log = logging.getLogger("lakesync")


@dataclass(frozen=True)
class DatasetPlans:
    """The batches one run ingests for a dataset, in order, and what its source found."""

    plans: tuple[BatchPlan, ...]
    found: Discovery | None = None
    """``None`` when this run did not look for new files (the sensor had planned its batches)."""
    files_left: int = 0
    """New files no batch has taken yet (beyond ``max_files`` / ``max_bytes``)."""
    fresh: tuple[FileEntry, ...] = ()
    """Those files: a run started by hand plans its next batches from them, without listing the
    lake again, until it has caught up."""


def fresh_files(runtime: DatasetRuntime, found: Discovery) -> list[FileEntry]:
    """The files a batch may take: new ones, and changed ones when the dataset re-ingests them."""
    return [*found.new, *(found.changed if runtime.config.changed == "reingest" else ())]


def plan_batch(
    runtime: DatasetRuntime, ledger: Ledger, files: Sequence[FileEntry], *, run_id: str
) -> BatchPlan | None:
    """Durably plan the dataset's next batch from ``files`` (the oldest first, within the limits).

    Files another planner took meanwhile are left out: the choice is made again against the
    ledger the plan is committed to.
    """
    limits = runtime.config.sensor

    def choose(current: DatasetLedger) -> list[FileEntry]:
        return take_batch(current.untaken(files), max_files=limits.max_files, max_bytes=limits.max_bytes)

    return ledger.plan(runtime.key, runtime.table, choose, run_id=run_id)


def plan_dataset(
    runtime: DatasetRuntime,
    ledger: Ledger,
    *,
    run_id: str,
    through: int | None,
    state: DatasetLedger | None = None,
) -> DatasetPlans:
    """The batches this run ingests for ``runtime``.

    With ``through`` (a run the sensor launched), only the batches already planned, up to that
    version. Otherwise the pending batches (a killed or failed run's) come first; with none, the
    source is asked once and the next batch is planned from what it found.
    ``state`` is the dataset's ledger when the caller read it already (one snapshot of the
    ledger for many datasets). Raises :class:`~lakesync.discover.LakeUnavailableError` when the
    lake cannot be reached.
    """
    state = state or ledger.read(runtime.key)
    if through is not None:
        return DatasetPlans(tuple(p for p in state.pending if p.version <= through))
    found = runtime.source.scan(state)
    for entry in found.changed:
        log.warning(
            "%s: %s changed after it was ingested (new size or modification time)%s",
            runtime.key,
            entry.path,
            "; it is ingested again"
            if runtime.config.changed == "reingest"
            else "; it is not ingested again",
        )
    fresh = fresh_files(runtime, found)
    if state.pending:  # finish what an earlier run started before taking new files
        return DatasetPlans(state.pending, found, len(fresh), tuple(fresh))
    plan = plan_batch(runtime, ledger, fresh, run_id=run_id) if fresh else None
    if plan is None:
        return DatasetPlans((), found, 0)
    rest = _untaken(fresh, plan)
    if plan.version > state.planned_version + 1:
        # Another run planned batches since this one looked: they come first (batches commit in
        # order; whichever run commits one first, the other finds it done).
        earlier = [p for p in ledger.read(runtime.key).pending if p.version < plan.version]
        return DatasetPlans((*earlier, plan), found, len(rest), rest)
    return DatasetPlans((plan,), found, len(rest), rest)


def _untaken(files: Sequence[FileEntry], plan: BatchPlan) -> tuple[FileEntry, ...]:
    taken = {f.path for f in plan.files}
    return tuple(f for f in files if f.path not in taken)


def next_batch(
    runtime: DatasetRuntime, ledger: Ledger, plans: DatasetPlans, *, run_id: str
) -> tuple[tuple[BatchPlan, ...], DatasetPlans]:
    """Catching up: plan the next batch from the files this run found that no batch took yet
    (with any batch another run planned before it)."""
    plan = plan_batch(runtime, ledger, plans.fresh, run_id=run_id) if plans.fresh else None
    if plan is None:
        return (), replace(plans, fresh=(), files_left=0)
    rest = _untaken(plans.fresh, plan)
    # Another run may have planned batches meanwhile: they come first, as in plan_dataset.
    earlier = tuple(p for p in ledger.read(runtime.key).pending if p.version < plan.version)
    return (*earlier, plan), replace(
        plans, plans=(*plans.plans, *earlier, plan), fresh=rest, files_left=len(rest)
    )

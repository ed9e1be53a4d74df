"""What `lakesync sync` does before any run: look at every dataset once and plan its batches.

As a sensor tick does (see :mod:`lakesync.defs.ticks`), but for every dataset at once and
without a cap on batches (a hand-started sync catches up): one snapshot of the ledger for all,
the source of each dataset asked once, every batch of new files planned durably. A table's run
then ingests exactly the planned batches and never lists again; a table with nothing new gets no
run at all (a sync of 200 quiet datasets costs their listings, not 10 Dagster runs).

A dataset whose lake cannot be opened or reached is left to its table's run, which reports it
as it always has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.defs.providers import lake_resource, store_for
from lakesync.discover import LakeStore, LakeUnavailableError, split_batches
from lakesync.pipeline.results import DatasetSync
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.scan import DatasetScan, scan_dataset
from lakesync.state.append import AppendContentionError
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger
from lakesync.state.ledger_state import ledger_states
from lakesync.state.values import FileEntry

if TYPE_CHECKING:
    from lakesync.discover.events.intake import IntakeResult


@dataclass
class TablePlan:
    """One table's datasets before its run."""

    planned: dict[str, int] = field(default_factory=dict)
    """Dataset -> the last batch its run ingests (pending ones and those planned now)."""
    scans: dict[str, DatasetScan] = field(default_factory=dict)
    unplanned: list[str] = field(default_factory=list)
    """Datasets that could not be looked at here: the run lists them itself."""
    error: str | None = None
    """Why the new batches could not be planned (then the table gets no run)."""

    @property
    def idle(self) -> bool:
        """Nothing to ingest and nothing to report: no run."""
        return not self.planned and not self.unplanned

    def line(self, runtime: DatasetRuntime) -> DatasetSync:
        """The summary line of a dataset with nothing new."""
        scan = self.scans[runtime.key]
        return DatasetSync(
            runtime.key,
            runtime.lake,
            runtime.name,
            runtime.table,
            files_seen=scan.discovery.files,
            files_changed=len(scan.discovery.changed),
            newest_file=scan.newest_file,
        )

    def completed(self, line: DatasetSync) -> DatasetSync:
        """A run's line with what this look saw (a planned run does not list)."""
        scan = self.scans.get(line.key)
        if scan is None or line.files_seen is not None:
            return line
        return replace(line, files_seen=scan.discovery.files, files_changed=len(scan.discovery.changed))


@contextlib.contextmanager
def _stores(config: LakesyncConfig, lakes: Sequence[str]) -> Iterator[dict[str, LakeStore | None]]:
    """Each lake's store, or ``None`` where its resource cannot be opened (a variable unset)."""
    with contextlib.ExitStack() as stack:
        stores: dict[str, LakeStore | None] = {}
        for name in lakes:
            lake = config.lakes[name]
            resource = lake_resource(lake)
            try:
                initialized = (
                    stack.enter_context(resource.process_config_and_initialize_cm()) if resource else None
                )
            except dg.DagsterInvalidConfigError:
                stores[name] = None
                continue
            stores[name] = store_for(name, lake, initialized)
        yield stores


def plan_tables(
    config: LakesyncConfig,
    runtimes: Sequence[DatasetRuntime],
    lakehouse: Lakehouse,
    *,
    run_id: str,
    intakes: list[IntakeResult | str] | None = None,
) -> dict[str, TablePlan]:
    """Every table's planned batches, from one look at each dataset; the lakes in events mode
    first receive their events (as their intake sensor's tick does), into ``intakes``."""
    ledger = Ledger(lakehouse)
    plans: dict[str, TablePlan] = {r.table: TablePlan() for r in runtimes}
    wanted: dict[str, tuple[str, list[list[FileEntry]]]] = {}
    with _stores(config, sorted({r.lake for r in runtimes})) as stores:
        events = [
            (n, config.lakes[n], s)
            for n, s in stores.items()
            if s and config.lakes[n].discovery.mode == "events"
        ]
        if events:
            from lakesync.discover.events.intake import drain_all  # noqa: PLC0415 - queue SDKs load only when used
            from lakesync.governance.deletions import propagate  # noqa: PLC0415 - as above

            received = drain_all(
                events,
                lakehouse,
                run_id=run_id,
                on_deleted=lambda gone: propagate(config, lakehouse, gone, run_id=run_id),
            )
            if intakes is not None:
                intakes.extend(received)
        snapshot = lakehouse.open(ledger.uri)
        states = ledger_states(lakehouse, snapshot, [r.key for r in runtimes])
        for runtime in runtimes:
            plan = plans[runtime.table]
            store = stores[runtime.lake]
            if store is None:
                plan.unplanned.append(runtime.key)
                continue
            try:
                scan = scan_dataset(replace(runtime, store=store), states[runtime.key])
            except LakeUnavailableError:
                plan.unplanned.append(runtime.key)
                continue
            plan.scans[runtime.key] = scan
            if scan.pending:
                plan.planned[runtime.key] = max(scan.pending)
            limits = runtime.config.sensor
            batches = split_batches(
                scan.discovery.new, max_files=limits.max_files, max_bytes=limits.max_bytes
            )
            if batches:
                wanted[runtime.key] = (runtime.table, batches)
    # Every dataset's new batches in one ledger commit (200 datasets: one commit, not 200).
    try:
        planned_now = ledger.plan_many(wanted, run_id=run_id, known=states)
    except AppendContentionError as exc:  # nothing was planned: the tables with new files say so
        for table in {table for table, _ in wanted.values()}:
            plans[table].error = str(exc)
        return plans
    for key, planned in planned_now.items():
        plans[planned[0].table].planned[key] = planned[-1].version
    # Files another sync planned between this look and this commit: its batches are pending, and
    # this sync's run takes them too (whichever commits a batch first, the other finds it done).
    taken = [key for key in wanted if key not in planned_now]
    for key, state in ledger_states(lakehouse, lakehouse.open(ledger.uri), taken).items() if taken else ():
        if state.pending:
            plans[wanted[key][0]].planned[key] = max(p.version for p in state.pending)
    return plans

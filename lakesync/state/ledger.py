"""The durable file ledger: every file a dataset has planned, ingested or quarantined.

The ledger is a Delta table in the lakehouse (``<uri>/_ledger``, partitioned by dataset) and
an append-only log of events:

- ``planned``: a batch (version N of the dataset) is about to be read. Written before any
  data is read, with the application transaction ``plan:<dataset>`` = N, so two planners
  racing for version N cannot both win.
- ``announced``: a storage event or a reconciliation listing said the file is there (batch 0,
  written by :mod:`lakesync.state.inbox`); a later plan takes it like a listed file.
- ``deleted``: the file left its lake and its rows left the table (``on_delete: propagate``,
  written by :mod:`lakesync.governance.deletions`).
- ``ingested`` / ``quarantined``: the batch's outcome per file, written after the data
  commit, with ``done:<dataset>`` = N. Written once, however often it is retried.

A batch planned but not done is *pending*: the next run finishes it before planning a new
one, which is what makes a killed run safe to retry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lakesync.state.append import Append, Appended, append_once
from lakesync.state.lakehouse import Lakehouse, read_current, scan_current, transaction_version
from lakesync.state.ledger_files import compact
from lakesync.state.ledger_rows import outcome_fields, plan_event_row, reverted_rows
from lakesync.state.ledger_state import LEDGER_SCHEMA, DatasetLedger, ledger_state, ledger_states
from lakesync.state.values import BatchPlan, FileEntry, FileOutcome

T = TypeVar("T")

_COMPACT_EVERY = 25  # done-batches between compactions of a dataset's ledger partition


def _now() -> datetime:
    return datetime.now(tz=UTC)


class Ledger:
    """Read and append the ledger table of one lakehouse."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.uri = lakehouse.ledger_uri

    # -- reading -------------------------------------------------------------------------
    def read(self, dataset: str) -> DatasetLedger:
        """The dataset's ledger at the latest version of the ledger table."""
        return ledger_state(self.lakehouse, self.lakehouse.open(self.uri), dataset)

    def events_of(self, datasets: Sequence[str]) -> dict[str, pl.DataFrame]:
        """Each dataset's ledger events, from one read of the ledger (one snapshot, their
        partitions only)."""
        snapshot = self.lakehouse.open(self.uri)
        if snapshot is None or not datasets:
            empty = pl.from_arrow(LEDGER_SCHEMA.empty_table())
            return dict.fromkeys(datasets, empty)  # type: ignore[arg-type]
        table = read_current(snapshot, LEDGER_SCHEMA, partitions=[("dataset", "in", list(datasets))])
        events = pl.from_arrow(table)
        assert isinstance(events, pl.DataFrame)
        parts = events.partition_by("dataset", as_dict=True)
        return {key: parts.get((key,), events.clear()) for key in datasets}

    def batch_events(self, datasets: Sequence[str]) -> dict[str, pl.DataFrame]:
        """Each dataset's finished-file events with only what a volume history needs (batch,
        event, rows read, when, replay_of; no paths): one read of the ledger for all."""
        columns = ["dataset", "batch", "event", "rows_read", "recorded_at", "replay_of"]
        where = pl.col("dataset").is_in(list(datasets)) & pl.col("event").is_in(["ingested", "quarantined"])
        frame = scan_current(self.lakehouse.open(self.uri), LEDGER_SCHEMA, columns=columns, where=where)
        parts = frame.partition_by("dataset", as_dict=True)
        return {key: parts.get((key,), frame.clear()) for key in datasets}

    def all_events(self) -> pl.DataFrame:
        """Every ledger event (for status and audit views)."""
        snapshot = self.lakehouse.open(self.uri)
        return pl.from_arrow(read_current(snapshot, LEDGER_SCHEMA))  # type: ignore[return-value]

    # -- writing -------------------------------------------------------------------------
    def plan(
        self,
        dataset: str,
        table: str,
        choose: Callable[[DatasetLedger], Sequence[FileEntry]],
        *,
        run_id: str,
    ) -> BatchPlan | None:
        """Durably plan the dataset's next batch from the files ``choose`` picks.

        ``choose`` sees the ledger as of the snapshot the plan is committed against; if a
        concurrent planner commits first, the ledger is read again and ``choose`` called again.
        Returns ``None`` when ``choose`` picks nothing.
        """

        def build(snapshot: DeltaTable | None) -> Append[BatchPlan] | None:
            state = ledger_state(self.lakehouse, snapshot, dataset)
            files = tuple(choose(state))
            if not files:
                return None
            return self._plan_rows(BatchPlan(dataset, table, state.planned_version + 1, files), run_id)

        return self._append(build, f"a batch plan of {dataset}").value

    def plan_replay(
        self,
        dataset: str,
        table: str,
        files: Sequence[tuple[FileEntry, tuple[int, ...] | None]],
        *,
        replay_of: int,
        run_id: str,
    ) -> BatchPlan:
        """Durably plan a batch that ingests again what batch ``replay_of`` quarantined.

        Each file comes with the record numbers to take again (``None``: the whole file). A
        file of that batch already replayed, or planned for a replay, raises ``ValueError``.
        """

        def build(snapshot: DeltaTable | None) -> Append[BatchPlan]:
            state = ledger_state(self.lakehouse, snapshot, dataset)
            for entry, _ in files:
                earlier = state.replay_batch(entry.path, replay_of)
                if earlier is not None:
                    msg = (
                        f"{dataset}: {entry.path} of batch {replay_of} was already replayed (batch {earlier})"
                    )
                    raise ValueError(msg)
            plan = BatchPlan(
                dataset,
                table,
                state.planned_version + 1,
                tuple(entry for entry, _ in files),
                rows={entry.path: rows for entry, rows in files if rows is not None},
                replay_of=replay_of,
            )
            return self._plan_rows(plan, run_id)

        plan = self._append(build, f"a replay plan of {dataset}").value
        assert plan is not None
        return plan

    def _plan_rows(self, plan: BatchPlan, run_id: str) -> Append[BatchPlan]:
        """A plan's rows under ``plan:<dataset>`` = its version: two planners cannot both win it."""
        now = _now()
        rows = [
            plan_event_row(plan, entry, event="planned", run_id=run_id, recorded_at=now)
            for entry in plan.files
        ]
        return Append(
            pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
            transactions={f"plan:{plan.dataset}": plan.version},
            metadata={"lakesync.operation": "plan", "lakesync.dataset": plan.dataset},
            value=plan,
        )

    def record(
        self,
        plan: BatchPlan,
        outcomes: Sequence[FileOutcome],
        *,
        table_version: int | None,
        run_id: str,
    ) -> bool:
        """Record the outcome of a committed batch, once. Returns ``False`` if already recorded."""
        return bool(self.record_many([(plan, outcomes)], table_version=table_version, run_id=run_id))

    def record_many(
        self,
        batches: Sequence[tuple[BatchPlan, Sequence[FileOutcome]]],
        *,
        table_version: int | None,
        run_id: str,
    ) -> list[BatchPlan]:
        """Record the outcomes of a round's committed batches (one per dataset) in one commit, each
        once; returns those recorded now (not by an earlier attempt)."""

        def build(snapshot: DeltaTable | None) -> Append[list[BatchPlan]] | None:
            recorded_at = _now()
            rows: list[dict[str, Any]] = []
            written: list[BatchPlan] = []
            for plan, outcomes in batches:
                done = transaction_version(snapshot, f"done:{plan.dataset}")
                if done >= plan.version:
                    continue
                if done != plan.version - 1:
                    msg = (
                        f"dataset {plan.dataset!r}: batch {plan.version} cannot be recorded before "
                        f"batch {done + 1}"
                    )
                    raise RuntimeError(msg)
                rows += [
                    plan_event_row(plan, o.entry, event=o.status, run_id=run_id, recorded_at=recorded_at)
                    | outcome_fields(o, table_version)
                    for o in outcomes
                ]
                written.append(plan)
            if not written:
                return None
            return Append(
                pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
                transactions={f"done:{p.dataset}": p.version for p in written},
                metadata={
                    "lakesync.operation": "record",
                    "lakesync.dataset": ", ".join(p.dataset for p in written),
                },
                value=written,
            )

        names = ", ".join(f"batch {p.version} of {p.dataset}" for p, _ in batches)
        appended = self._append(build, f"the outcome of {names} in the ledger")
        for plan in appended.value or []:
            self._maintain(plan)
        return appended.value or []

    def record_reverted(self, dataset: str, moved: Mapping[str, int], *, reason: str, app: str) -> bool:
        """Mark ingested files of ``dataset`` whose rows were moved out of their table to its
        quarantine (``moved``: path -> rows) as quarantined (:func:`reverted_rows`), once per
        ``app`` (a revert's transaction). Returns ``False`` if already recorded."""
        if not moved:
            return False

        def build(snapshot: DeltaTable | None) -> Append[bool] | None:
            if snapshot is None or transaction_version(snapshot, app) >= 1:
                return None
            ingested = (
                pl.scan_delta(snapshot)
                .filter(
                    (pl.col("dataset") == dataset)
                    & pl.col("path").is_in(list(moved))
                    & (pl.col("event") == "ingested")
                )
                .sort("recorded_at")
                .unique("path", keep="last")
                .collect()
            )
            rows = reverted_rows(ingested, moved, reason=reason, app=app, at=_now())
            return Append(
                pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
                transactions={app: 1},
                metadata={"lakesync.operation": "revert", "lakesync.dataset": dataset},
                value=True,
            )

        return bool(self._append(build, f"the reverted files of {dataset} in the ledger").value)

    def plan_many(
        self,
        wanted: Mapping[str, tuple[str, Sequence[Sequence[FileEntry]]]],
        *,
        run_id: str,
        known: Mapping[str, DatasetLedger] | None = None,
    ) -> dict[str, list[BatchPlan]]:
        """Durably plan, in one commit, the batches of several datasets: dataset -> (its table, the
        files of each batch, oldest first). Files another planner took meanwhile are left out.

        ``known``: the datasets' ledgers as read by the caller; reused when the commit is made
        against the same snapshot, read again otherwise.
        """

        def build(snapshot: DeltaTable | None) -> Append[dict[str, list[BatchPlan]]] | None:
            now = _now()
            rows: list[dict[str, Any]] = []
            plans: dict[str, list[BatchPlan]] = {}
            states = {
                d: s
                for d, s in (known or {}).items()
                if d in wanted and _version(s.snapshot) == _version(snapshot)
            }
            if missing := [d for d in wanted if d not in states]:  # read again, together
                states.update(ledger_states(self.lakehouse, snapshot, missing))
            for dataset, (table, batches) in wanted.items():
                state = states[dataset]
                version = state.planned_version
                untaken = {f.path for f in state.untaken([f for files in batches for f in files])}
                for files in batches:
                    fresh = tuple(f for f in files if f.path in untaken)
                    if not fresh:
                        continue
                    version += 1
                    plan = BatchPlan(dataset, table, version, fresh)
                    plans.setdefault(dataset, []).append(plan)
                    rows += [
                        plan_event_row(plan, e, event="planned", run_id=run_id, recorded_at=now)
                        for e in fresh
                    ]
            if not rows:
                return None
            return Append(
                pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
                transactions={f"plan:{d}": p[-1].version for d, p in plans.items()},
                metadata={"lakesync.operation": "plan", "lakesync.dataset": ", ".join(plans)},
                value=plans,
            )

        if not wanted:
            return {}
        what = (
            f"a batch plan of {next(iter(wanted))}"
            if len(wanted) == 1
            else f"the batch plans of {len(wanted)} datasets"
        )
        return self._append(build, what).value or {}

    def _append(self, build: Callable[[DeltaTable | None], Append[T] | None], what: str) -> Appended[T]:
        return append_once(self.lakehouse, self.uri, build, what=what, create=self.create)

    def create(self) -> DeltaTable:
        return DeltaTable.create(
            self.uri,
            LEDGER_SCHEMA,
            mode="ignore",
            partition_by=["dataset"],
            name="lakesync_ledger",
            description="Every file lakesync planned, ingested or quarantined",
            storage_options=dict(self.lakehouse.storage_options) or None,
        )

    def _maintain(self, plan: BatchPlan) -> None:
        """Keep the ledger cheap to read: compact a dataset's small files now and then, and
        rewrite its compacted state (:mod:`lakesync.state.ledger_files`) from them.

        (delta-rs checkpoints the log by itself every 100 versions.)
        """
        if plan.version % _COMPACT_EVERY != 0:
            return
        snapshot = self.lakehouse.open(self.uri)
        if snapshot is None:
            return
        with contextlib.suppress(CommitFailedError):  # a concurrent writer won: next time
            snapshot.optimize.compact(partition_filters=[("dataset", "=", plan.dataset)])
        compact(self.lakehouse, plan.dataset)  # each path's latest event, for the next reads


def _version(snapshot: DeltaTable | None) -> int | None:
    return snapshot.version() if snapshot is not None else None

"""The durable file ledger: every file a dataset has planned, ingested or quarantined.

The ledger is a Delta table in the lakehouse (``<uri>/_ledger``, partitioned by dataset) and
an append-only log of events:

- ``planned``: a batch (version N of the dataset) is about to be read. Written before any
  data is read, with the application transaction ``plan:<dataset>`` = N, so two planners
  racing for version N cannot both win.
- ``ingested`` / ``quarantined``: the batch's outcome per file, written after the data
  commit, with ``done:<dataset>`` = N. Written once, however often it is retried.

A batch planned but not done is *pending*: the next run finishes it before planning a new
one, which is what makes a killed run safe to retry.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lakesync.discover.stores import FileEntry
from lakesync.lakehouse import Lakehouse, read_current, transaction_version

FileStatus = Literal["planned", "ingested", "quarantined"]

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("batch", pa.int64(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("modified", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("etag", pa.string()),
        pa.field("rows_read", pa.int64()),
        pa.field("rows_committed", pa.int64()),
        pa.field("rows_quarantined", pa.int64()),
        pa.field("table_version", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("drift", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("rows", pa.list_(pa.int64())),
        pa.field("replay_of", pa.int64()),
        pa.field("rows_erased", pa.int64()),
    ]
)
_COMPACT_EVERY = 25  # done-batches between compactions of a dataset's ledger partition
_MAX_PLAN_ATTEMPTS = 32


@dataclass(frozen=True)
class BatchPlan:
    """Version ``version`` of a dataset: the files one ingestion commit will carry."""

    dataset: str
    table: str
    version: int
    files: tuple[FileEntry, ...]
    rows: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Replays only: path -> the record numbers to ingest again (absent: the whole file)."""
    replay_of: int | None = None
    """Replays only: the batch whose quarantined rows or files this batch ingests again."""

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file of a batch."""

    entry: FileEntry
    status: Literal["ingested", "quarantined"]
    rows_read: int
    rows_committed: int
    rows_quarantined: int
    reason: str | None = None
    drift: dict[str, Any] | None = None
    rows_erased: int = 0
    """Rows of subjects erased earlier (``lakesync erase``), dropped on arrival."""
    checksum: str | None = None
    """SHA-256 of the file's content as read (``None`` when it could not be read at all)."""


@dataclass(frozen=True)
class DatasetLedger:
    """One dataset's ledger at one version of the ledger table."""

    dataset: str
    files: pl.DataFrame
    """Latest event per path: path, version_tag, status, batch, recorded_at."""
    pending: tuple[BatchPlan, ...]
    planned_version: int
    done_version: int
    snapshot: DeltaTable | None = field(default=None, repr=False, compare=False)
    events: pl.DataFrame | None = field(default=None, repr=False, compare=False)
    """Every event of the dataset (path, batch, event, replay_of...)."""

    def replay_batch(self, path: str, replay_of: int) -> int | None:
        """The batch that replays (or will replay) ``path`` from batch ``replay_of``, if any."""
        if self.events is None or self.events.is_empty():
            return None
        found = self.events.filter((pl.col("path") == path) & (pl.col("replay_of") == replay_of))
        return int(found["batch"].max()) if found.height else None  # type: ignore[arg-type]

    def known_tags(self) -> dict[str, str]:
        """Path -> version tag of every file the ledger has seen (planned, ingested or quarantined)."""
        return dict(zip(self.files["path"].to_list(), self.files["version_tag"].to_list(), strict=True))

    def count(self, status: FileStatus) -> int:
        return int((self.files["status"] == status).sum())

    @property
    def last_recorded_at(self) -> datetime | None:
        done = self.files.filter(pl.col("status") != "planned")
        if done.is_empty():
            return None
        value = done["recorded_at"].max()
        return value if isinstance(value, datetime) else None


class PlanConflictError(RuntimeError):
    """Another process planned the same dataset version at the same time, repeatedly."""


def _backoff(attempt: int) -> None:
    """Wait a little, more after each lost race, with jitter so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # noqa: S311 - jitter, not crypto


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _version_tag() -> pl.Expr:
    micros = pl.col("modified").dt.epoch("us").cast(pl.String)
    return pl.coalesce(pl.col("etag"), pl.col("size").cast(pl.String) + pl.lit(":") + micros)


class Ledger:
    """Read and append the ledger table of one lakehouse."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.uri = lakehouse.ledger_uri

    # -- reading -------------------------------------------------------------------------
    def read(self, dataset: str) -> DatasetLedger:
        """The dataset's ledger at the latest version of the ledger table."""
        return self._state(self.lakehouse.open(self.uri), dataset)

    def _state(self, snapshot: DeltaTable | None, dataset: str) -> DatasetLedger:
        planned_version = transaction_version(snapshot, f"plan:{dataset}")
        done_version = transaction_version(snapshot, f"done:{dataset}")
        events = self._events(snapshot, dataset)
        ranked = events.with_columns(
            rank=pl.when(pl.col("event") == "planned").then(0).otherwise(1),
            version_tag=_version_tag(),
        ).sort(["batch", "rank", "recorded_at"])
        latest = ranked.group_by("path", maintain_order=True).last()
        files = latest.select(
            "path",
            "version_tag",
            pl.col("event").alias("status"),
            "batch",
            "recorded_at",
        )
        pending: list[BatchPlan] = []
        planned = ranked.filter((pl.col("event") == "planned") & (pl.col("batch") > done_version))
        for (batch,), rows in planned.group_by(["batch"], maintain_order=True):
            records = list(rows.iter_rows(named=True))
            entries = tuple(
                FileEntry(path=r["path"], size=r["size"], modified=r["modified"], etag=r["etag"])
                for r in records
            )
            selected = {r["path"]: tuple(r["rows"]) for r in records if r["rows"] is not None}
            replay_of = records[0]["replay_of"]
            pending.append(
                BatchPlan(
                    dataset=dataset,
                    table=str(rows["table"][0]),
                    version=int(batch),
                    files=entries,
                    rows=selected,
                    replay_of=int(replay_of) if replay_of is not None else None,
                )
            )
        return DatasetLedger(
            dataset=dataset,
            files=files,
            pending=tuple(sorted(pending, key=lambda p: p.version)),
            planned_version=planned_version,
            done_version=done_version,
            snapshot=snapshot,
            events=events,
        )

    @staticmethod
    def _events(snapshot: DeltaTable | None, dataset: str) -> pl.DataFrame:
        columns = [
            "table",
            "batch",
            "event",
            "path",
            "size",
            "modified",
            "etag",
            "recorded_at",
            "rows",
            "replay_of",
            "rows_read",
            "run_id",
            "table_version",
        ]
        table = read_current(snapshot, LEDGER_SCHEMA, columns=columns, partitions=[("dataset", "=", dataset)])
        return pl.from_arrow(table)  # type: ignore[return-value]

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
        for attempt in range(_MAX_PLAN_ATTEMPTS):
            snapshot = self._ensure()
            state = self._state(snapshot, dataset)
            files = tuple(choose(state))
            if not files:
                return None
            plan = BatchPlan(dataset, table, state.planned_version + 1, files)
            if self._commit_plan(snapshot, plan, run_id=run_id):
                return plan
            _backoff(attempt)  # someone else planned this version first; look again
        msg = f"dataset {dataset!r}: could not plan a batch after {_MAX_PLAN_ATTEMPTS} concurrent attempts"
        raise PlanConflictError(msg)

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
        for attempt in range(_MAX_PLAN_ATTEMPTS):
            snapshot = self._ensure()
            state = self._state(snapshot, dataset)
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
            if self._commit_plan(snapshot, plan, run_id=run_id):
                return plan
            _backoff(attempt)
        msg = f"dataset {dataset!r}: could not plan a replay after {_MAX_PLAN_ATTEMPTS} concurrent attempts"
        raise PlanConflictError(msg)

    def _commit_plan(self, snapshot: DeltaTable, plan: BatchPlan, *, run_id: str) -> bool:
        """Write a plan's rows under ``plan:<dataset>`` = its version; False if another won the race."""
        rows = [
            self._row(
                plan,
                entry,
                event="planned",
                run_id=run_id,
                recorded_at=_now(),
                rows=plan.rows.get(entry.path),
            )
            for entry in plan.files
        ]
        try:
            self.lakehouse.append(
                snapshot,
                pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
                app_transactions={f"plan:{plan.dataset}": plan.version},
                metadata={"lakesync.operation": "plan", "lakesync.dataset": plan.dataset},
                schema_mode="merge",
            )
        except CommitFailedError:
            return False
        return True

    def record(
        self,
        plan: BatchPlan,
        outcomes: Sequence[FileOutcome],
        *,
        table_version: int | None,
        run_id: str,
    ) -> bool:
        """Record the outcome of a committed batch, once. Returns ``False`` if already recorded."""
        for attempt in range(_MAX_PLAN_ATTEMPTS):
            snapshot = self._ensure()
            done = transaction_version(snapshot, f"done:{plan.dataset}")
            if done >= plan.version:
                return False
            if done != plan.version - 1:
                msg = (
                    f"dataset {plan.dataset!r}: batch {plan.version} cannot be recorded before "
                    f"batch {done + 1}"
                )
                raise RuntimeError(msg)
            recorded_at = _now()
            rows = [
                self._row(
                    plan,
                    outcome.entry,
                    event=outcome.status,
                    run_id=run_id,
                    recorded_at=recorded_at,
                    rows_read=outcome.rows_read,
                    rows_committed=outcome.rows_committed,
                    rows_quarantined=outcome.rows_quarantined,
                    rows_erased=outcome.rows_erased,
                    table_version=table_version,
                    reason=outcome.reason,
                    drift=json.dumps(outcome.drift, sort_keys=True) if outcome.drift else None,
                )
                for outcome in outcomes
            ]
            try:
                self.lakehouse.append(
                    snapshot,
                    pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
                    app_transactions={f"done:{plan.dataset}": plan.version},
                    metadata={"lakesync.operation": "record", "lakesync.dataset": plan.dataset},
                    schema_mode="merge",
                )
            except CommitFailedError:
                _backoff(attempt)
                continue
            self._maintain(plan)
            return True
        msg = f"dataset {plan.dataset!r}: could not record batch {plan.version} (concurrent commits)"
        raise PlanConflictError(msg)

    def _ensure(self) -> DeltaTable:
        snapshot = self.lakehouse.open(self.uri)
        if snapshot is not None:
            return snapshot
        try:
            return DeltaTable.create(
                self.uri,
                LEDGER_SCHEMA,
                mode="ignore",
                partition_by=["dataset"],
                name="lakesync_ledger",
                description="Every file lakesync planned, ingested or quarantined",
                storage_options=dict(self.lakehouse.storage_options) or None,
            )
        except CommitFailedError:
            snapshot = self.lakehouse.open(self.uri)
            assert snapshot is not None
            return snapshot

    def _maintain(self, plan: BatchPlan) -> None:
        """Keep the ledger cheap to read: compact a dataset's small files now and then.

        (delta-rs checkpoints the log by itself every 100 versions.)
        """
        if plan.version % _COMPACT_EVERY != 0:
            return
        snapshot = self.lakehouse.open(self.uri)
        if snapshot is None:
            return
        with contextlib.suppress(CommitFailedError):  # a concurrent writer won: next time
            snapshot.optimize.compact(partition_filters=[("dataset", "=", plan.dataset)])

    @staticmethod
    def _row(
        plan: BatchPlan,
        entry: FileEntry,
        *,
        event: str,
        run_id: str,
        recorded_at: datetime,
        rows_read: int | None = None,
        rows_committed: int | None = None,
        rows_quarantined: int | None = None,
        rows_erased: int | None = None,
        table_version: int | None = None,
        reason: str | None = None,
        drift: str | None = None,
        rows: tuple[int, ...] | None = None,
    ) -> dict[str, Any]:
        return {
            "dataset": plan.dataset,
            "table": plan.table,
            "batch": plan.version,
            "event": event,
            "path": entry.path,
            "size": entry.size,
            "modified": entry.modified,
            "etag": entry.etag,
            "rows_read": rows_read,
            "rows_committed": rows_committed,
            "rows_quarantined": rows_quarantined,
            "rows_erased": rows_erased,
            "table_version": table_version,
            "reason": reason,
            "drift": drift,
            "run_id": run_id,
            "recorded_at": recorded_at,
            "rows": list(rows) if rows is not None else None,
            "replay_of": plan.replay_of,
        }

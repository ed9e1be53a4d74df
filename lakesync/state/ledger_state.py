"""A dataset's view of the ledger: every file it knows, its pending batches, its versions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.state.lakehouse import scan_current, transaction_version
from lakesync.state.values import BatchPlan, FileEntry, FileOutcome

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

FileStatus = Literal["announced", "planned", "ingested", "quarantined", "deleted"]
"""``announced``: a storage event (or a reconciliation) said the file is there, not planned yet;
``deleted``: gone from the lake, its rows removed (``on_delete: propagate``)."""

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
        pa.field("rows_rescued", pa.int64()),
        pa.field("discovered_by", pa.string()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
    ]
)


def event_row(
    dataset: str, table: str, batch: int, event: FileStatus, entry: FileEntry, **fields: Any
) -> dict[str, Any]:
    """One row of the ledger: a file's event (``fields``: run_id, recorded_at and the others)."""
    return {
        "dataset": dataset,
        "table": table,
        "batch": batch,
        "event": event,
        "path": entry.path,
        "size": entry.size,
        "modified": entry.modified,
        "etag": entry.etag,
        **fields,
    }


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

    @cached_property
    def known(self) -> pl.DataFrame:
        """``path``, ``version_tag`` of every file the ledger has seen (planned, ingested or
        quarantined): what a listing is diffed against (:func:`lakesync.discover.discover`)."""
        return self.files.filter(pl.col("status") != "announced").select("path", "version_tag")

    def known_tags(self) -> dict[str, str]:
        """Path -> version tag of every file the ledger has seen, as a dict (small uses; a
        listing is diffed against :attr:`known`)."""
        return dict(zip(self.known["path"].to_list(), self.known["version_tag"].to_list(), strict=True))

    def untaken(self, files: Sequence[FileEntry]) -> list[FileEntry]:
        """Those of ``files`` the ledger has not seen with this content (a batch's candidates,
        checked again against the snapshot the plan is committed to)."""
        if not files:
            return []
        tags = entry_frame(files).join(self.known, on=["path", "version_tag"], how="semi")
        taken = set(tags["path"].to_list())
        return [f for f in files if f.path not in taken]

    def discovered_by(self) -> dict[str, str]:
        """Path -> how the file was found (``event``, ``reconcile``, ``listing``), for the files
        announced in events mode."""
        if self.events is None or "discovered_by" not in self.events.columns:
            return {}
        told = self.events.filter(pl.col("discovered_by").is_not_null())
        return dict(zip(told["path"].to_list(), told["discovered_by"].to_list(), strict=True))

    def announced(self) -> tuple[FileEntry, ...]:
        """Files announced (by events or a reconciliation) and not planned yet, oldest first."""
        waiting = self.files.filter(pl.col("status") == "announced")["path"]
        if self.events is None or waiting.is_empty():
            return ()
        rows = (
            self.events.filter((pl.col("event") == "announced") & pl.col("path").is_in(waiting.implode()))
            .unique("path", keep="last", maintain_order=True)
            .sort("modified", "path")
        )
        return tuple(
            FileEntry(path=r["path"], size=r["size"], modified=r["modified"], etag=r["etag"])
            for r in rows.iter_rows(named=True)
        )

    def count(self, status: FileStatus) -> int:
        return int((self.files["status"] == status).sum())

    @property
    def last_recorded_at(self) -> datetime | None:
        done = self.files.filter(~pl.col("status").is_in(["planned", "announced"]))
        if done.is_empty():
            return None
        value = done["recorded_at"].max()
        return value if isinstance(value, datetime) else None


def version_tag() -> pl.Expr:
    """A file's version tag from its ``etag``, ``size`` and ``modified`` columns, as
    :attr:`FileEntry.version_tag` makes it: the etag, else ``size:mtime-in-microseconds``."""
    micros = pl.col("modified").dt.epoch("us").cast(pl.String)
    etag = pl.col("etag")
    fallback = pl.col("size").cast(pl.String) + pl.lit(":") + micros
    return pl.when(etag.is_null() | (etag == "")).then(fallback).otherwise(etag).alias("version_tag")


def entry_frame(entries: Sequence[FileEntry]) -> pl.DataFrame:
    """``entries`` as a frame: path, size, modified, etag, version_tag.

    The times go in as exact integer microseconds since the epoch (polars converts a million
    timezone-aware Python datetimes in ~1.7 s, integers in ~0.1 s)."""
    micros = [
        ((m if m.tzinfo else m.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND
        for m in (e.modified for e in entries)
    ]
    return (
        pl.DataFrame(
            {
                "path": [e.path for e in entries],
                "size": [e.size for e in entries],
                "modified": micros,
                "etag": [e.etag for e in entries],
            },
            schema={"path": pl.String, "size": pl.Int64, "modified": pl.Int64, "etag": pl.String},
        )
        .with_columns(
            pl.from_epoch("modified", time_unit="us").dt.replace_time_zone("UTC"),
        )
        .with_columns(version_tag())
    )


def ledger_states(snapshot: DeltaTable | None, datasets: Sequence[str]) -> dict[str, DatasetLedger]:
    """Several datasets' ledgers as of ``snapshot``, from one read of their partitions."""
    if snapshot is None or len(datasets) < 2:
        return {d: ledger_state(snapshot, d) for d in datasets}
    every = _events(snapshot, list(datasets), with_dataset=True)
    parts = every.partition_by("dataset", as_dict=True, include_key=False)
    return {
        d: ledger_state(snapshot, d, events=parts.get((d,), every.clear().drop("dataset"))) for d in datasets
    }


def ledger_summary(snapshot: DeltaTable | None, datasets: Sequence[str]) -> pl.DataFrame:
    """Per dataset, from one read of the ledger: files whose latest event is ``ingested``,
    ``quarantined`` or ``planned`` (pending), and when a file was last recorded as done."""
    schema = {
        "dataset": pl.String(),
        "ingested": pl.UInt32(),
        "quarantined": pl.UInt32(),
        "pending": pl.UInt32(),
        "last_recorded_at": pl.Datetime("us", "UTC"),
    }
    if snapshot is None or not datasets:
        return pl.DataFrame(schema=schema)
    events = scan_current(
        snapshot,
        LEDGER_SCHEMA,
        columns=["dataset", "batch", "event", "path", "recorded_at"],
        where=pl.col("dataset").is_in(list(datasets)),
    )
    latest = (
        events.with_columns(rank=pl.when(pl.col("event") == "planned").then(0).otherwise(1))
        .sort(["dataset", "batch", "rank", "recorded_at"])
        .unique(["dataset", "path"], keep="last", maintain_order=True)
    )
    done = ~pl.col("event").is_in(["planned", "announced"])
    return (
        latest.group_by("dataset")
        .agg(
            ingested=(pl.col("event") == "ingested").sum(),
            quarantined=(pl.col("event") == "quarantined").sum(),
            pending=(pl.col("event") == "planned").sum(),
            last_recorded_at=pl.col("recorded_at").filter(done).max(),
        )
        .select([pl.col(c).cast(t) for c, t in schema.items()])
    )


def ledger_state(
    snapshot: DeltaTable | None, dataset: str, *, events: pl.DataFrame | None = None
) -> DatasetLedger:
    """A dataset's ledger as of ``snapshot`` of the ledger table (``events``: its rows, when the
    caller read them already)."""
    planned_version = transaction_version(snapshot, f"plan:{dataset}")
    done_version = transaction_version(snapshot, f"done:{dataset}")
    events = _events(snapshot, [dataset]) if events is None else events
    # The latest event per path: the highest batch, an outcome after its plan, then the latest.
    files = (
        events.select("path", "event", "batch", "recorded_at", "size", "modified", "etag")
        .with_columns(rank=pl.when(pl.col("event") == "planned").then(0).otherwise(1))
        .sort(["batch", "rank", "recorded_at"])
        .unique("path", keep="last", maintain_order=True)
        .select("path", version_tag(), pl.col("event").alias("status"), "batch", "recorded_at")
    )
    pending: list[BatchPlan] = []
    planned = events.filter((pl.col("event") == "planned") & (pl.col("batch") > done_version)).sort(
        ["batch", "recorded_at"], maintain_order=True
    )
    for (batch,), rows in planned.group_by(["batch"], maintain_order=True):
        records = list(rows.iter_rows(named=True))
        entries = tuple(
            FileEntry(path=r["path"], size=r["size"], modified=r["modified"], etag=r["etag"]) for r in records
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


def _events(snapshot: DeltaTable | None, datasets: list[str], *, with_dataset: bool = False) -> pl.DataFrame:
    columns = [
        *(["dataset"] if with_dataset else []),
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
        "event_time",
        "discovered_by",
    ]
    where = pl.col("dataset") == datasets[0] if len(datasets) == 1 else pl.col("dataset").is_in(datasets)
    return scan_current(snapshot, LEDGER_SCHEMA, columns=columns, where=where)


def plan_event_row(
    plan: BatchPlan, entry: FileEntry, *, event: FileStatus, run_id: str, recorded_at: datetime
) -> dict[str, Any]:
    """A file's event in one of the dataset's batches (a plan's rows kept with its planned event)."""
    rows = plan.rows.get(entry.path) if event == "planned" else None
    return event_row(
        plan.dataset,
        plan.table,
        plan.version,
        event,
        entry,
        run_id=run_id,
        recorded_at=recorded_at,
        rows=list(rows) if rows is not None else None,
        replay_of=plan.replay_of,
    )


def outcome_fields(outcome: FileOutcome, table_version: int | None) -> dict[str, Any]:
    """What a finished file's event says of it: rows, the table version, why, its drift."""
    return {
        "rows_read": outcome.rows_read,
        "rows_committed": outcome.rows_committed,
        "rows_quarantined": outcome.rows_quarantined,
        "rows_erased": outcome.rows_erased,
        "rows_rescued": outcome.rows_rescued,
        "table_version": table_version,
        "reason": outcome.reason,
        "drift": json.dumps(outcome.drift, sort_keys=True) if outcome.drift else None,
    }


def reverted_rows(
    ingested: pl.DataFrame, moved: Mapping[str, int], *, reason: str, app: str, at: datetime
) -> list[dict[str, Any]]:
    """The quarantined events of ingested files whose rows a revert moved out of their table:
    their batch stays theirs, no rows are read again, the rows leave as negative committed."""
    kept = ("dataset", "table", "batch", "path", "size", "modified", "etag")
    return [
        {
            **{k: row[k] for k in kept},
            "event": "quarantined",
            "rows_read": 0,
            "rows_committed": -moved[row["path"]],
            "rows_quarantined": moved[row["path"]],
            "reason": reason,
            "run_id": app,
            "recorded_at": at,
        }
        for row in ingested.iter_rows(named=True)
    ]

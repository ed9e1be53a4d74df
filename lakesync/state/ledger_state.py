"""A dataset's view of the ledger: every file it knows, its pending batches, its versions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.state.lakehouse import read_current, transaction_version
from lakesync.state.values import BatchPlan, FileEntry

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

    def known_tags(self) -> dict[str, str]:
        """Path -> version tag of every file the ledger has seen (planned, ingested or quarantined)."""
        seen = self.files.filter(pl.col("status") != "announced")
        return dict(zip(seen["path"].to_list(), seen["version_tag"].to_list(), strict=True))

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


def _version_tag() -> pl.Expr:
    micros = pl.col("modified").dt.epoch("us").cast(pl.String)
    return pl.coalesce(pl.col("etag"), pl.col("size").cast(pl.String) + pl.lit(":") + micros)


def ledger_states(snapshot: DeltaTable | None, datasets: Sequence[str]) -> dict[str, DatasetLedger]:
    """Several datasets' ledgers as of ``snapshot``, from one read of their partitions."""
    if snapshot is None or len(datasets) < 2:
        return {d: ledger_state(snapshot, d) for d in datasets}
    every = _events(snapshot, list(datasets), with_dataset=True)
    parts = every.partition_by("dataset", as_dict=True, include_key=False)
    return {
        d: ledger_state(snapshot, d, events=parts.get((d,), every.clear().drop("dataset"))) for d in datasets
    }


def ledger_state(
    snapshot: DeltaTable | None, dataset: str, *, events: pl.DataFrame | None = None
) -> DatasetLedger:
    """A dataset's ledger as of ``snapshot`` of the ledger table (``events``: its rows, when the
    caller read them already)."""
    planned_version = transaction_version(snapshot, f"plan:{dataset}")
    done_version = transaction_version(snapshot, f"done:{dataset}")
    events = _events(snapshot, [dataset]) if events is None else events
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
    where = ("dataset", "=", datasets[0]) if len(datasets) == 1 else ("dataset", "in", datasets)
    table = read_current(snapshot, LEDGER_SCHEMA, columns=columns, partitions=[where])
    return pl.from_arrow(table)  # type: ignore[return-value]

"""Where storage events land: files announced in the ledger, and the intake's own log.

An event's file is written into the ledger as ``announced`` (batch 0) before its message is
acknowledged; a later plan takes it like a listed file, so duplicate, late and out-of-order
events change nothing. The intake log (``<lakehouse>/_intake``) keeps what the ledger does not:
each drain of a lake's queue, each reconciliation listing with how many files the events had
missed, and every message that could not be understood, with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.state.append import Append, append_once
from lakesync.state.lakehouse import Lakehouse, read_current, scan_current
from lakesync.state.ledger import Ledger
from lakesync.state.ledger_state import LEDGER_SCHEMA, DatasetLedger, event_row
from lakesync.state.values import FileEntry

DiscoveredBy = Literal["event", "reconcile", "listing"]
IntakeKind = Literal["intake", "reconciled", "failed_message"]
INTAKE_SCHEMA = pa.schema(
    [
        pa.field("lake", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("messages", pa.int64()),
        pa.field("files", pa.int64()),
        pa.field("missed", pa.int64()),
        pa.field("message_id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("excerpt", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class Announcement:
    dataset: str
    table: str
    entry: FileEntry
    discovered_by: DiscoveredBy
    event_time: datetime | None = None


@dataclass(frozen=True)
class IntakeSummary:
    """What the intake log says about one lake."""

    last_reconciled: datetime | None
    missed_last: int
    missed_total: int
    failed_messages: int
    last_intake: datetime | None
    first_intake: datetime | None = None
    """When the lake's first intake was recorded (events mode began)."""
    recent_failures: tuple[str, ...] = ()
    """The last messages not understood: ``<message id>: <reason>``."""


class Inbox:
    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.ledger = Ledger(lakehouse)
        self.uri = lakehouse.intake_uri

    def announce(self, announced: Sequence[Announcement], *, run_id: str) -> list[Announcement]:
        """Write the files the ledger does not know yet (in one commit); returns those written."""

        def build(snapshot: DeltaTable | None) -> Append[list[Announcement]] | None:
            # A path with any event (announced, planned, ingested, quarantined, deleted) is known:
            # looked up for the announced paths only, not every path of the datasets.
            datasets = sorted({a.dataset for a in announced})
            where = pl.col("dataset").is_in(datasets) & pl.col("path").is_in(
                sorted({a.entry.path for a in announced})
            )
            known = scan_current(snapshot, LEDGER_SCHEMA, columns=["dataset", "path"], where=where).unique()
            seen: dict[str, set[str]] = {d: set() for d in datasets}
            for dataset, path in known.iter_rows():
                seen[dataset].add(path)
            fresh: list[Announcement] = []
            for a in announced:
                if a.entry.path not in seen[a.dataset]:
                    seen[a.dataset].add(a.entry.path)
                    fresh.append(a)
            if not fresh:
                return None
            now = datetime.now(tz=UTC)
            rows = [_row(a, run_id, now) for a in fresh]
            return Append(
                pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA),
                metadata={"lakesync.operation": "announce", "lakesync.files": str(len(rows))},
                value=fresh,
            )

        if not announced:
            return []
        done = append_once(
            self.lakehouse,
            self.ledger.uri,
            build,
            what="files announced by events",
            create=self.ledger.create,
        )
        return done.value or []

    def log(self, lake: str, kind: IntakeKind, *, run_id: str, **fields: Any) -> None:
        self.log_many(lake, kind, [fields], run_id=run_id)

    def log_many(self, lake: str, kind: IntakeKind, rows: Sequence[dict[str, Any]], *, run_id: str) -> None:
        """Rows of the intake log, in one commit."""
        if not rows:
            return
        now = datetime.now(tz=UTC)
        data = pa.Table.from_pylist(
            [{"lake": lake, "kind": kind, "recorded_at": now, "run_id": run_id, **r} for r in rows],
            schema=INTAKE_SCHEMA,
        )
        append_once(self.lakehouse, self.uri, lambda _: Append(data), what=f"the intake log of lake {lake!r}")

    def entries(self, lake: str | None = None) -> pl.DataFrame:
        frame = pl.from_arrow(read_current(self.lakehouse.open(self.uri), INTAKE_SCHEMA))
        assert isinstance(frame, pl.DataFrame)
        return frame if lake is None else frame.filter(pl.col("lake") == lake)

    def summary(self, lake: str) -> IntakeSummary:
        rows = self.entries(lake)
        reconciled = rows.filter(pl.col("kind") == "reconciled").sort("recorded_at")
        intakes = rows.filter(pl.col("kind") == "intake")
        failed = rows.filter(pl.col("kind") == "failed_message")
        return IntakeSummary(
            last_reconciled=reconciled["recorded_at"][-1] if reconciled.height else None,
            missed_last=int(reconciled["missed"][-1] or 0) if reconciled.height else 0,
            missed_total=int(reconciled["missed"].sum() or 0),
            failed_messages=failed.height,
            last_intake=intakes["recorded_at"].max() if intakes.height else None,  # type: ignore[arg-type]
            first_intake=intakes["recorded_at"].min() if intakes.height else None,  # type: ignore[arg-type]
            recent_failures=tuple(
                f"{r['message_id']}: {r['reason']}"
                for r in failed.sort("recorded_at").tail(5).iter_rows(named=True)
            ),
        )


def event_lags(states: Sequence[DatasetLedger], *, last: int = 1000) -> tuple[float, float] | None:
    """Seconds from a file's storage event to its commit (p50, p95) over the last ``last`` files
    announced by an event, or ``None`` when none is ingested yet."""
    frames = []
    for state in states:
        events = state.events
        if events is None or "event_time" not in events.columns:
            continue
        told = events.filter((pl.col("event") == "announced") & pl.col("event_time").is_not_null())
        done = events.filter(pl.col("event") == "ingested").select(
            "path", pl.col("recorded_at").alias("done")
        )
        frames.append(told.select("path", "event_time").join(done, on="path"))
    lags = pl.concat(frames) if frames else pl.DataFrame()
    if not lags.height:
        return None
    seconds = (
        lags.sort("done")
        .tail(last)
        .select((pl.col("done") - pl.col("event_time")).dt.total_milliseconds() / 1000)
    ).to_series()
    return float(seconds.quantile(0.5) or 0.0), float(seconds.quantile(0.95) or 0.0)


def _row(a: Announcement, run_id: str, now: datetime) -> dict[str, Any]:
    return event_row(
        a.dataset,
        a.table,
        0,
        "announced",
        a.entry,
        run_id=run_id,
        recorded_at=now,
        discovered_by=a.discovered_by,
        event_time=a.event_time,
    )

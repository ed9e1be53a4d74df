"""Drift as a reviewable change: every drift event, and what a person decided about it.

``<lakehouse>/_drift`` is an append-only Delta table (asset ``lakehouse/_drift``). A drift
*event* is one kind of drift of one dataset (its :attr:`DriftReport.signature`), whatever the
number of files showing it; its id is stable (``lakesync drift approve 3f2a9c1e``). Rows are
either *sightings* (a file showed the drift; ``open`` when the file was held back by policy
quarantine or fail, ``handled`` when evolve or rescue took care of it) or *decisions*
(``approved`` / ``rejected``, by whom and when). The latest decision wins.

Approving an event makes files with that drift acceptable to the dataset (renamed columns are
mapped, added columns join the table); rejecting it quarantines such files for good.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import polars as pl
import pyarrow as pa

from lakesync.config.models import LakesyncConfig
from lakesync.conform.drift import DriftReport, signature_id
from lakesync.conform.policies import Decisions, drift_policy
from lakesync.state.append import Append, append_once
from lakesync.state.audit import AuditLog
from lakesync.state.lakehouse import Lakehouse, read_current

Status = Literal["open", "handled", "approved", "rejected"]
DRIFT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("file", pa.string()),
        pa.field("batch", pa.int64()),
        pa.field("report", pa.string()),
        pa.field("actor", pa.string()),
        pa.field("note", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


@dataclass(frozen=True)
class DriftEvent:
    id: str
    dataset: str
    table: str
    status: Status
    report: DriftReport
    """The latest sighting's report."""
    files: tuple[str, ...]
    held_back: tuple[str, ...]
    """Files quarantined (or stopped) by this drift, oldest first."""
    first_seen: datetime
    last_seen: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None

    @property
    def stops_dataset(self) -> bool:
        """An open event of a policy that stops its dataset until the drift is reviewed."""
        return self.status == "open" and drift_policy(self.report.policy).stops_dataset

    @property
    def renames(self) -> dict[str, str]:
        """Source column -> canonical column, for the probable renames of this drift."""
        return {
            str(c.evidence["source_column"]): c.column for c in self.report.changes if c.change == "renamed"
        }


class DriftLog:
    """Read and append ``<lakehouse>/_drift``."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.uri = lakehouse.drift_uri

    def _rows(self) -> pl.DataFrame:
        snapshot = self.lakehouse.open(self.uri)
        frame = pl.from_arrow(read_current(snapshot, DRIFT_SCHEMA))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def _append(self, rows: list[dict[str, object]], what: str) -> None:
        data = pa.Table.from_pylist(rows, schema=DRIFT_SCHEMA)
        append_once(self.lakehouse, self.uri, lambda _: Append(data), what=what)

    def record(
        self,
        dataset: str,
        table: str,
        sightings: Sequence[tuple[DriftReport, Literal["open", "handled"]]],
        *,
        batch: int | None,
        run_id: str,
    ) -> list[str]:
        """Record that files showed drift; returns the event ids (idempotent per file and batch)."""
        if not sightings:
            return []
        now = datetime.now(tz=UTC)
        rows: list[dict[str, object]] = []
        ids = []
        for report, status in sightings:
            event_id = signature_id(dataset, report.signature)
            ids.append(event_id)
            rows.append(
                {
                    "id": event_id,
                    "dataset": dataset,
                    "table": table,
                    "status": status,
                    "file": report.file,
                    "batch": batch,
                    "report": json.dumps(report.to_dict(), sort_keys=True, default=str),
                    "actor": None,
                    "note": None,
                    "run_id": run_id,
                    "recorded_at": now,
                }
            )
        self._append(rows, f"the drift {', '.join(ids)} of {dataset}")
        return ids

    def events(self, *, dataset: str | None = None) -> list[DriftEvent]:
        """Every drift event (of one dataset), most recent first."""
        rows = self._rows()
        if dataset is not None:
            rows = rows.filter(pl.col("dataset") == dataset)
        events = []
        for (event_id,), group in rows.sort("recorded_at").group_by(["id"], maintain_order=True):
            sightings = group.filter(pl.col("status").is_in(["open", "handled"]))
            decisions = group.filter(pl.col("status").is_in(["approved", "rejected"]))
            if sightings.is_empty():
                continue
            last = sightings.row(-1, named=True)
            decision = decisions.row(-1, named=True) if decisions.height else None
            status: Status
            if decision is not None:
                status = decision["status"]
            else:
                status = "open" if (sightings["status"] == "open").any() else "handled"
            files = tuple(dict.fromkeys(sightings["file"].drop_nulls().to_list()))
            held = tuple(
                dict.fromkeys(sightings.filter(pl.col("status") == "open")["file"].drop_nulls().to_list())
            )
            events.append(
                DriftEvent(
                    id=str(event_id),
                    dataset=str(last["dataset"]),
                    table=str(last["table"]),
                    status=status,
                    report=DriftReport.from_dict(json.loads(last["report"])),
                    files=files,
                    held_back=held,
                    first_seen=sightings["recorded_at"].min(),  # type: ignore[arg-type]
                    last_seen=sightings["recorded_at"].max(),  # type: ignore[arg-type]
                    decided_by=decision["actor"] if decision else None,
                    decided_at=decision["recorded_at"] if decision else None,
                    note=decision["note"] if decision else None,
                )
            )
        return sorted(events, key=lambda e: e.last_seen, reverse=True)

    def event(self, event_id: str) -> DriftEvent | None:
        return next((e for e in self.events() if e.id == event_id), None)

    def decide(
        self,
        event_id: str,
        decision: Literal["approved", "rejected"],
        *,
        actor: str | None = None,
        note: str | None = None,
    ) -> DriftEvent:
        """Approve or reject a drift event; records who and when."""
        event = self.event(event_id)
        if event is None:
            msg = f"no drift event {event_id!r} (see `lakesync drift list --all`)"
            raise KeyError(msg)
        self._append(
            [
                {
                    "id": event.id,
                    "dataset": event.dataset,
                    "table": event.table,
                    "status": decision,
                    "file": None,
                    "batch": None,
                    "report": None,
                    "actor": actor or getpass.getuser(),
                    "note": note,
                    "run_id": None,
                    "recorded_at": datetime.now(tz=UTC),
                }
            ],
            f"the decision on drift {event.id}",
        )
        lake, dataset = event.dataset.split(".", 1)
        AuditLog(self.lakehouse).append(
            [
                {
                    "kind": "drift_decision",
                    "lake": lake,
                    "dataset": dataset,
                    "table": event.table,
                    "status": decision,
                    "actor": actor or getpass.getuser(),
                    "note": note,
                    "detail": json.dumps({"event": event.id, "summary": event.report.summary()}),
                }
            ],
            what=f"the decision on drift {event.id} in the audit trail",
        )
        decided = self.event(event_id)
        assert decided is not None
        return decided

    def decisions(self, dataset: str) -> Decisions:
        return _decisions(self.events(dataset=dataset))

    def every_decision(self) -> dict[str, Decisions]:
        """Each dataset's decisions, from one read of the log."""
        by_dataset: dict[str, list[DriftEvent]] = {}
        for event in self.events():
            by_dataset.setdefault(event.dataset, []).append(event)
        return {dataset: _decisions(events) for dataset, events in by_dataset.items()}

    def source_columns(self, config: LakesyncConfig, table: str) -> dict[str, str]:
        """Source column name -> canonical name, over the datasets feeding ``table``: the
        configured mappings and the renames reviewers approved (a file may also use a canonical
        name as it is)."""
        names: dict[str, str] = {}
        for lake, spec in config.lakes.items():
            for name, dataset in spec.datasets.items():
                if dataset.table == table:
                    names |= self.decisions(f"{lake}.{name}").renames | dataset.columns
        return names


def _decisions(events: list[DriftEvent]) -> Decisions:
    """What reviewers decided, from a dataset's events."""
    approved: set[str] = set()
    rejected: dict[str, str] = {}
    renames: dict[str, str] = {}
    for event in events:
        if event.status == "approved":
            approved.add(event.id)
            renames.update(event.renames)
        elif event.status == "rejected":
            when = event.decided_at.strftime("%Y-%m-%d %H:%M UTC") if event.decided_at else "?"
            rejected[event.id] = f"{event.decided_by} on {when}"
    return Decisions(frozenset(approved), rejected, renames)

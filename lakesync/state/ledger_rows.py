"""The rows a batch writes to the ledger: its planned and finished files' events, a revert's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

from lakesync.state.ledger_state import FileStatus, event_row
from lakesync.state.values import BatchPlan, FileEntry, FileOutcome


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

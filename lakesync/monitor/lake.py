"""Judgments about a lake dataset over time (no Dagster here).

- volume: rows of the latest batch and of the last complete day against the recent median;
- freshness: age of the newest file, and how long new files have waited to be ingested;
- events (a lake in events mode): files the storage events missed, by the last reconciliation.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from lakesync.config.datasets import VolumeSettings
from lakesync.monitor.verdict import Verdict, add_duration, human_duration
from lakesync.state.inbox import IntakeSummary


def batch_history(events: pl.DataFrame) -> pl.DataFrame:
    """Rows read per finished batch (``batch``, ``rows``, ``at``) from a dataset's ledger events;
    replays are left out (they re-ingest old rows)."""
    if events.is_empty():
        return pl.DataFrame(schema={"batch": pl.Int64, "rows": pl.Int64, "at": pl.Datetime("us", "UTC")})
    done = events.filter(pl.col("event").is_in(["ingested", "quarantined"]))
    if "replay_of" in done.columns:
        done = done.filter(pl.col("replay_of").is_null())
    return (
        done.group_by("batch")
        .agg(
            pl.col("rows_read").fill_null(0).sum().cast(pl.Int64).alias("rows"),
            pl.col("recorded_at").max().alias("at"),
        )
        .sort("batch")
    )


def _judge(value: float, history: Sequence[float], tolerance: float) -> tuple[float, bool]:
    median = statistics.median(history)
    low, high = median * (1 - tolerance), median * (1 + tolerance)
    return median, low <= value <= high


def volume_verdict(
    history: pl.DataFrame, *, settings: VolumeSettings, latest_batch: int, now: datetime | None = None
) -> Verdict:
    """Rows of ``latest_batch`` and of the last complete UTC day against the median of up to
    ``settings.history`` earlier batches / days, within ``settings.tolerance``. WARN outside;
    passed while the history is shorter than ``settings.min_history`` (and it says so)."""
    now = now or datetime.now(tz=UTC)
    tolerance = settings.tolerance
    facts: dict[str, Any] = {"tolerance": tolerance, "min_history": settings.min_history}
    batches = history.filter(pl.col("batch") <= latest_batch)
    current = batches.filter(pl.col("batch") == latest_batch)
    earlier = batches.filter(pl.col("batch") < latest_batch).tail(settings.history)["rows"].to_list()
    rows = int(current["rows"][0]) if current.height else 0
    findings: list[str] = []
    notes: list[str] = []

    def judge(what: str, value: int, earlier: list[int], unit: str, finding: str) -> None:
        facts[f"{what}_rows"] = value
        facts[f"{what}_history"] = len(earlier)
        if len(earlier) < settings.min_history:
            notes.append(
                f"{what}: {len(earlier)} of {settings.min_history} earlier {unit} needed before judging"
            )
            return
        median, ok = _judge(value, earlier, tolerance)
        facts[f"{what}_median"] = median
        if not ok:
            findings.append(
                f"{finding} has {value} rows, median of the {len(earlier)} {unit} before is {median:g}"
            )

    judge("batch", rows, earlier, "batches", f"batch {latest_batch}")
    today = now.astimezone(UTC).date()
    days = (
        history.with_columns(day=pl.col("at").dt.convert_time_zone("UTC").dt.date())
        .filter(pl.col("day") < today)
        .group_by("day")
        .agg(pl.col("rows").sum())
        .sort("day")
    )
    yesterday = today - timedelta(days=1)
    previous = days.filter(pl.col("day") < yesterday).tail(settings.history)["rows"].to_list()
    last_day = days.filter(pl.col("day") == yesterday)["rows"].to_list()
    facts["day"] = yesterday.isoformat()
    judge("day", int(last_day[0]) if last_day else 0, previous, "days", str(yesterday))
    if findings:
        return Verdict("failed", "; ".join(findings) + f" (tolerance {tolerance:.0%})", facts)
    judged = "within tolerance" if len(notes) < 2 else "not judged yet"
    return Verdict("passed", "; ".join([judged, *notes]), facts)


def freshness_verdict(
    *,
    newest_file: datetime | None,
    oldest_waiting: datetime | None,
    last_ingested: datetime | None,
    max_lag: float | None,
    now: datetime | None = None,
) -> Verdict:
    """How fresh a lake dataset is.

    ERROR when a new file has waited longer than ``max_lag`` without being ingested (lakesync is
    behind: a paused sensor, failing runs); WARN when the newest file landed longer than
    ``max_lag`` ago (the source stopped delivering). Without ``max_lag`` it reports and passes.
    """
    now = now or datetime.now(tz=UTC)
    facts: dict[str, Any] = {}
    if newest_file is not None:
        facts["newest_file_at"] = newest_file
        add_duration(facts, "newest_file_age", (now - newest_file).total_seconds())
    if last_ingested is not None:
        facts["last_ingestion_at"] = last_ingested
        add_duration(facts, "since_last_ingestion", (now - last_ingested).total_seconds())
    waited = (now - oldest_waiting).total_seconds() if oldest_waiting is not None else 0.0
    add_duration(facts, "oldest_waiting_file_age", waited)
    if max_lag is None:
        facts["max_lag"] = "(not set)"
        return Verdict("passed", "no freshness.max_lag set: ages reported, not judged", facts)
    add_duration(facts, "max_lag", max_lag)
    if oldest_waiting is not None and waited > max_lag:
        return Verdict(
            "failed",
            f"a new file has waited {human_duration(waited)} to be ingested "
            f"(max_lag {human_duration(max_lag)}): is the sensor running, or are its runs failing? "
            "See lakesync status",
            facts,
            severity="ERROR",
        )
    if newest_file is None:
        return Verdict("failed", "no file has landed in the lake yet", facts)
    age = (now - newest_file).total_seconds()
    if age > max_lag:
        return Verdict(
            "failed",
            f"no new file for {human_duration(age)} (max_lag {human_duration(max_lag)}): "
            "ask the lake's owners",
            facts,
        )
    return Verdict(
        "passed",
        f"newest file {human_duration(age)} old, nothing waiting (max_lag {human_duration(max_lag)})",
        facts,
    )


def events_verdict(summary: IntakeSummary) -> Verdict:
    """Did the storage events tell of every file? The last reconciliation's count says (WARN)."""
    facts: dict[str, Any] = {
        "files_missed_by_events": summary.missed_last,
        "files_missed_by_events_total": summary.missed_total,
        "messages_not_understood_total": summary.failed_messages,
    }
    if summary.last_reconciled is not None:
        facts["last_reconciled"] = summary.last_reconciled
    if summary.last_reconciled is None:
        return Verdict("passed", "no reconciliation yet: nothing to compare the events with", facts)
    if summary.missed_last:
        return Verdict(
            "failed",
            f"{summary.missed_last} file(s) landed without an event before the last reconciliation "
            f"({summary.missed_total} in all); they were ingested from its listing. Check the bucket's "
            "notification configuration or the queue's retention",
            facts,
        )
    return Verdict(
        "passed",
        f"every file had its event at the last reconciliation ({summary.missed_total} missed in all)",
        facts,
    )

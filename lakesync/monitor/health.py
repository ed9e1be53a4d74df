"""Judgments about a sync or a lake: each returns a :class:`Verdict` (no Dagster here).

- contract: the share of a run's rows the contract rejected, against ``max_failed_rows``;
- conservation: rows read = rows committed + rows quarantined, per dataset;
- volume: rows of the latest batch and of the last complete day against the recent median;
- freshness: age of the newest file, and how long new files have waited to be ingested.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from lakesync.config.datasets import VolumeSettings
from lakesync.pipeline.results import TableSync

Severity = Literal["WARN", "ERROR"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    severity: Severity
    description: str
    facts: dict[str, Any] = field(default_factory=dict)
    """Plain values (numbers, text, datetimes) shown as the check's metadata."""
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)
    """Named tables (header, rows) shown as markdown."""


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def contract_verdict(result: TableSync, *, max_failed_rows: float) -> Verdict:
    """ERROR (blocking downstream) when more than ``max_failed_rows`` of the run's rows failed the
    contract; WARN when some rows or files (unreadable, held back by drift) were quarantined."""
    held = sum(d.failures.rows_held_by_drift for d in result.datasets)
    rows_checked = result.rows_read - held
    rows_failed = sum(d.failures.rows_failed for d in result.datasets)
    files_failed = sum(d.failures.files_failed for d in result.datasets)
    files = result.files_ingested + result.files_quarantined
    share = rows_failed / rows_checked if rows_checked else 0.0
    by_rule: dict[tuple[str, str], int] = {}
    for dataset in result.datasets:
        for rule, column, rows in dataset.failures.by_rule:
            by_rule[(rule, column)] = by_rule.get((rule, column), 0) + rows
    samples = [
        (f"{d.lake}/{case.file}", case.row if case.row is not None else "(file)", case.columns, case.reason)
        for d in result.datasets
        for case in d.failures.samples
    ][:10]
    facts: dict[str, Any] = {
        "rows_checked": rows_checked,
        "rows_failed": rows_failed,
        "failed_share": round(share, 6),
        "max_failed_rows": max_failed_rows,
        "files_checked": files,
        "files_failed": files_failed,
        "rows_held_by_drift": held,
        "rows_rescued": sum(d.rows_rescued for d in result.datasets),
        "contract_fingerprint": result.contract,
    }
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
        "datasets": (
            ["dataset", "batches", "rows read", "rows failed", "files unreadable", "rows held by drift"],
            [
                (
                    d.key,
                    ", ".join(str(b) for b in d.batches),
                    d.rows_read,
                    d.failures.rows_failed,
                    d.failures.files_failed,
                    d.failures.rows_held_by_drift,
                )
                for d in result.datasets
                if d.batches
            ],
        )
    }
    if by_rule:
        ranked = sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        tables["failures_by_rule"] = (["rule", "column", "rows"], [(r, c, n) for (r, c), n in ranked])
    if samples:
        tables["failure_examples"] = (["file", "row", "columns", "reason"], samples)
    rescued = [(d.key, column, n) for d in result.datasets for column, n in sorted(d.rescued.items())]
    if rescued:
        tables["rescued_by_column"] = (["dataset", "column", "values kept in _rescued_data"], rescued)
    if share > max_failed_rows:
        return Verdict(
            False,
            "ERROR",
            f"{share:.2%} of rows failed (more than max_failed_rows {max_failed_rows:.2%}): downstream "
            "assets are not updated. See lakesync quarantine list, fix the source or the contract, "
            "then replay",
            facts,
            tables,
        )
    if rows_failed or files_failed:
        return Verdict(
            False,
            "WARN",
            f"{rows_failed} of {rows_checked} rows ({share:.2%})"
            + (f" and {files_failed} file(s)" if files_failed else "")
            + f" quarantined (within max_failed_rows {max_failed_rows:.2%})",
            facts,
            tables,
        )
    kept = facts["rows_rescued"]
    rescued_note = f" ({kept} with values kept in _rescued_data)" if kept else ""
    return Verdict(True, "ERROR", f"all {rows_checked} rows passed the contract{rescued_note}", facts, tables)


def conservation_verdict(result: TableSync) -> Verdict:
    """ERROR when any dataset's rows read differ from its rows committed + quarantined."""
    rows = [
        (
            d.key,
            d.rows_read,
            d.rows_committed,
            d.rows_quarantined,
            d.rows_erased,
            "yes" if d.conserved else "NO",
        )
        for d in result.datasets
        if d.batches
    ]
    broken = [r for r in rows if r[5] == "NO"]
    facts = {
        "rows_read": result.rows_read,
        "rows_committed": result.rows_committed,
        "rows_quarantined": result.rows_quarantined,
        "rows_erased": result.rows_erased,
    }
    tables = {"datasets": (["dataset", "read", "committed", "quarantined", "erased", "conserved"], rows)}
    if broken:
        names = ", ".join(r[0] for r in broken)
        return Verdict(
            False,
            "ERROR",
            f"rows read != committed + quarantined for {names}: rows were lost or duplicated. "
            "This is a lakesync bug; please report it with this run's logs",
            facts,
            tables,
        )
    return Verdict(
        True,
        "ERROR",
        f"{result.rows_read} rows read = {result.rows_committed} committed"
        f" + {result.rows_quarantined} quarantined"
        + (f" + {result.rows_erased} of erased subjects dropped" if result.rows_erased else ""),
        facts,
        tables,
    )


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
        return Verdict(False, "WARN", "; ".join(findings) + f" (tolerance {tolerance:.0%})", facts)
    judged = "within tolerance" if len(notes) < 2 else "not judged yet"
    return Verdict(True, "WARN", "; ".join([judged, *notes]), facts)


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
        facts["newest_file_age_seconds"] = round((now - newest_file).total_seconds(), 1)
    if last_ingested is not None:
        facts["last_ingestion_at"] = last_ingested
        facts["since_last_ingestion_seconds"] = round((now - last_ingested).total_seconds(), 1)
    waited = (now - oldest_waiting).total_seconds() if oldest_waiting is not None else 0.0
    facts["oldest_waiting_file_age_seconds"] = round(waited, 1)
    if max_lag is None:
        facts["max_lag_seconds"] = "(not set)"
        return Verdict(True, "WARN", "no freshness.max_lag set: ages reported, not judged", facts)
    facts["max_lag_seconds"] = max_lag
    if oldest_waiting is not None and waited > max_lag:
        return Verdict(
            False,
            "ERROR",
            f"a new file has waited {_age(waited)} to be ingested (max_lag {_age(max_lag)}): is the "
            "sensor running, or are its runs failing? See lakesync status",
            facts,
        )
    if newest_file is None:
        return Verdict(False, "WARN", "no file has landed in the lake yet", facts)
    age = (now - newest_file).total_seconds()
    if age > max_lag:
        return Verdict(
            False,
            "WARN",
            f"no new file for {_age(age)} (max_lag {_age(max_lag)}): ask the lake's owners",
            facts,
        )
    return Verdict(
        True, "WARN", f"newest file {_age(age)} old, nothing waiting (max_lag {_age(max_lag)})", facts
    )

"""Plain-text tables for people: what a sync did, where every dataset and table stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lakesync.conform.drift import drift_lines
from lakesync.pipeline.results import DatasetSync


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned table; numbers right-aligned, everything else left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(header))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return str(value)


@dataclass(frozen=True)
class TableLine:
    table: str
    delta_version: int | None
    rows: int
    quarantined_rows: int
    superseded_rows: int = 0


@dataclass(frozen=True)
class CheckLine:
    """The result of one asset check of a table in a sync."""

    table: str
    check: str
    status: str
    """passed, passed with warnings or failed (:data:`lakesync.monitor.Outcome`)."""
    description: str


@dataclass(frozen=True)
class FeatureLine:
    feature: str
    delta_version: int | None
    rows: int | None
    status: str


def sync_summary(
    datasets: Sequence[DatasetSync],
    tables: Sequence[TableLine],
    checks: Sequence[CheckLine] = (),
    features: Sequence[FeatureLine] = (),
) -> str:
    """The summary `lakesync sync` and `make demo` print."""
    first = text_table(
        ["lake", "dataset", "files seen", "ingested", "quarantined", "rows read", "committed", "quarantined"],
        [
            (
                d.lake,
                d.dataset,
                d.files_seen,
                d.files_ingested,
                d.files_quarantined,
                d.rows_read,
                d.rows_committed_here,
                d.rows_quarantined,
            )
            for d in datasets
        ],
    )
    second = text_table(
        ["table", "delta version", "rows", "superseded", "quarantine records"],
        [(t.table, t.delta_version, t.rows, t.superseded_rows, t.quarantined_rows) for t in tables],
    )
    out = [first, "", second]
    if checks:
        out += [
            "",
            text_table(
                ["table", "check", "result", "detail"],
                [(c.table, c.check, c.status, c.description) for c in checks],
            ),
        ]
    if features:
        out += [
            "",
            text_table(
                ["feature", "delta version", "rows", "status"],
                [(f.feature, f.delta_version, f.rows, f.status) for f in features],
            ),
        ]
    batched = [d for d in datasets if len(d.batches) > 1]
    if batched:
        out += ["", "Caught up in several batches (each at most the dataset's sensor.max_files / max_bytes):"]
        out += [f"  {d.lake}.{d.dataset}: {len(d.batches)} batches ({d.files_seen} files)" for d in batched]
    elsewhere = [d for d in datasets if d.rows_committed_elsewhere]
    if elsewhere:
        out += [
            "",
            "Committed by another run first (a sync racing this one, or one killed after its commit):",
        ]
        out += [
            f"  {d.lake}.{d.dataset}: {d.rows_committed_elsewhere} row(s); this run read their batch again "
            "and finished recording it (not counted as committed above)"
            for d in elsewhere
        ]
    waiting = [d for d in datasets if d.files_pending]
    if waiting:
        out += ["", "Not ingested yet (lakesync sync again, or the sensor will):"]
        out += [f"  {d.lake}.{d.dataset}: {d.files_pending} file(s)" for d in waiting]
    rescued = [d for d in datasets if d.rows_rescued]
    if rescued:
        out += ["", "Values that did not fit their column, kept in _rescued_data (their rows are committed):"]
        out += [
            f"  {d.lake}.{d.dataset}: {d.rows_rescued} row(s); "
            + ", ".join(f"{column} {n}" for column, n in sorted(d.rescued.items()))
            for d in rescued
        ]
    unreadable = [(d, case) for d in datasets for case in d.failures.unreadable]
    if unreadable:
        out += ["", "Files quarantined whole (lakesync quarantine list shows every record):"]
        out += [
            f"  {d.lake}.{d.dataset}: "
            + (case.reason if case.file in case.reason else f"{case.file}: {case.reason}")
            for d, case in unreadable
        ]
    drifted = [(d, line) for d in datasets for line in drift_lines(d.drift)]
    if drifted:
        out += ["", "Schema drift:"] + [f"  {d.lake}.{d.dataset}: {line}" for d, line in drifted]
    errors = [d for d in datasets if d.error]
    if errors:
        out += ["", "Could not sync:"] + [f"  {d.lake}.{d.dataset}: {d.error}" for d in errors]
    return "\n".join(out)

"""Judgments about one sync of a table (no Dagster here).

- contract: the share of a run's rows the contract rejected, against ``max_failed_rows``;
- conservation: rows read = rows committed + rows quarantined, per dataset;
- drift: what schema drift the run's files had, and whether it held files back.
"""

from __future__ import annotations

from typing import Any

from lakesync.conform.drift import drift_lines
from lakesync.monitor.verdict import Verdict
from lakesync.pipeline.results import DatasetSync, TableSync


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
            "failed",
            f"{share:.2%} of rows failed (more than max_failed_rows {max_failed_rows:.2%}): downstream "
            "assets are not updated. See lakesync quarantine list, fix the source or the contract, "
            "then replay",
            facts,
            tables,
            severity="ERROR",
        )
    kept = facts["rows_rescued"]
    rescued_note = f"; {kept} row(s) with values kept in _rescued_data" if kept else ""
    if rows_failed or files_failed:
        return Verdict(
            "passed with warnings",
            f"{rows_failed} of {rows_checked} rows ({share:.2%})"
            + (f" and {files_failed} file(s)" if files_failed else "")
            + f" quarantined, within max_failed_rows {max_failed_rows:.2%}{rescued_note}",
            facts,
            tables,
        )
    if kept:
        return Verdict("passed with warnings", f"all {rows_checked} rows passed{rescued_note}", facts, tables)
    return Verdict("passed", f"all {rows_checked} rows passed the contract", facts, tables)


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
            "failed",
            f"rows read != committed + quarantined for {names}: rows were lost or duplicated. "
            "This is a lakesync bug; please report it with this run's logs",
            facts,
            tables,
            severity="ERROR",
        )
    return Verdict(
        "passed",
        f"{result.rows_read} rows read = {result.rows_committed} committed"
        f" + {result.rows_quarantined} quarantined"
        + (f" + {result.rows_erased} of erased subjects dropped" if result.rows_erased else ""),
        facts,
        tables,
    )


def drift_verdict(result: DatasetSync) -> Verdict:
    """The schema drift of one dataset's files in a run.

    Failed (ERROR) when drift held files back (quarantined by policy or rejection, or stopping the
    dataset under policy fail); passed with warnings when drift was handled (columns added, values
    rescued, approved drift); passed when there was none, or only safe widenings.
    """
    lines = drift_lines(result.drift)
    facts: dict[str, Any] = {
        "files_held_back": result.drift_held_back,
        "files_with_handled_drift": result.drift_handled,
        "rows_rescued": result.rows_rescued,
    }
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    if lines:
        tables["drift"] = (["what (and what lakesync did)"], [(line,) for line in lines])
    if result.rescued:
        tables["rescued_by_column"] = (
            ["column", "values kept in _rescued_data"],
            sorted(result.rescued.items()),
        )
    seen = "; ".join(lines)
    if result.drift_held_back:
        facts["review"] = "lakesync drift list, then lakesync drift approve|reject ID"
        return Verdict(
            "failed",
            f"{result.drift_held_back} file(s) held back by schema drift, waiting for review "
            f"(lakesync drift list): {seen}",
            facts,
            tables,
            severity="ERROR",
        )
    if result.drift_handled:
        rescued = (
            f"; {result.rows_rescued} row(s) with values kept in _rescued_data" if result.rows_rescued else ""
        )
        return Verdict(
            "passed with warnings",
            f"{result.drift_handled} file(s) with handled drift{rescued}" + (f": {seen}" if seen else ""),
            facts,
            tables,
        )
    return Verdict("passed", f"safe changes only: {seen}" if seen else "no drift", facts, tables)

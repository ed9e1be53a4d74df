"""What failed the contract in a batch: counts by rule and column, and a few examples.

Computed from the quarantine records a batch wrote (one per rejected row, one per unreadable
file), so the contract check shows exactly what the quarantine table holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

SAMPLE_SIZE = 10
FILES_SHOWN = 100
"""At most this many files per dataset and run are named (the quarantine table has them all)."""
DRIFT_RULE = "schema_drift"


@dataclass(frozen=True)
class FailureCase:
    file: str
    row: int | None
    columns: str
    rules: str
    reason: str


@dataclass(frozen=True)
class ContractFailures:
    """One dataset's rejected rows and files of a run."""

    rows_failed: int = 0
    """Rows the contract (types, nullability, checks, uniqueness) rejected."""
    files_failed: int = 0
    """Files that could not be read at all."""
    rows_held_by_drift: int = 0
    """Rows of files quarantined whole by schema drift (the drift check reports those)."""
    by_rule: tuple[tuple[str, str, int], ...] = ()
    """(rule, column, rows), most frequent first."""
    samples: tuple[FailureCase, ...] = ()
    unreadable: tuple[FailureCase, ...] = ()
    """Files rejected whole because they could not be read, with why."""
    files: tuple[tuple[str, int, str, str], ...] = ()
    """(file, rows rejected, rules, first reason) of each file that had rows rejected, most first."""

    def merged(self, other: ContractFailures) -> ContractFailures:
        counts = Counter({(rule, column): n for rule, column, n in self.by_rule})
        counts.update({(rule, column): n for rule, column, n in other.by_rule})
        return ContractFailures(
            rows_failed=self.rows_failed + other.rows_failed,
            files_failed=self.files_failed + other.files_failed,
            rows_held_by_drift=self.rows_held_by_drift + other.rows_held_by_drift,
            by_rule=_ranked(counts),
            samples=(*self.samples, *other.samples)[:SAMPLE_SIZE],
            unreadable=(*self.unreadable, *other.unreadable)[:FILES_SHOWN],
            files=tuple(sorted((*self.files, *other.files), key=lambda f: (-f[1], f[0])))[:FILES_SHOWN],
        )


def _ranked(counts: Counter[tuple[str, str]]) -> tuple[tuple[str, str, int], ...]:
    return tuple(
        (rule, column, n) for (rule, column), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def _pairs(rules: Sequence[str], columns: Sequence[str]) -> Iterable[tuple[str, str]]:
    if len(rules) == len(columns):
        return zip(rules, columns, strict=True)
    return ((rule, column) for rule in rules for column in (columns or [""]))


def summarize(records: Sequence[pl.DataFrame]) -> dict[str, ContractFailures]:
    """Per ``<lake>.<dataset>``, the failures in its quarantine records."""
    frames = [f for f in records if f.height]
    if not frames:
        return {}
    data = pl.concat(frames, how="diagonal_relaxed")
    result: dict[str, ContractFailures] = {}
    for (lake, dataset), group in data.group_by(["lake", "dataset"], maintain_order=True):
        counts: Counter[tuple[str, str]] = Counter()
        samples: list[FailureCase] = []
        level_rows = group.filter(pl.col("level") == "row")
        drifted = pl.col("rules").list.contains(DRIFT_RULE)
        held = level_rows.filter(drifted).height
        rows = level_rows.filter(~drifted)
        for record in rows.select("file", "row", "rules", "columns", "reason").iter_rows(named=True):
            counts.update(_pairs(record["rules"] or [], record["columns"] or []))
            if len(samples) < SAMPLE_SIZE:
                samples.append(
                    FailureCase(
                        file=record["file"],
                        row=record["row"],
                        columns=", ".join(record["columns"] or []),
                        rules=", ".join(record["rules"] or []),
                        reason=record["reason"] or "",
                    )
                )
        files = group.filter(pl.col("level") == "file")
        unreadable: list[FailureCase] = []
        for record in files.select("file", "rules", "reason").iter_rows(named=True):
            counts.update((rule, "(file)") for rule in record["rules"] or [])
            case = FailureCase(
                file=record["file"],
                row=None,
                columns="",
                rules=", ".join(record["rules"] or []),
                reason=record["reason"] or "",
            )
            if len(unreadable) < FILES_SHOWN:
                unreadable.append(case)
            if len(samples) < SAMPLE_SIZE:
                samples.append(case)
        per_file = (
            rows.group_by("file")
            .agg(
                pl.len().alias("rows"),
                pl.col("rules").first().list.join(", ").alias("rules"),
                pl.col("reason").first(),
            )
            .sort(["rows", "file"], descending=[True, False])
        )
        result[f"{lake}.{dataset}"] = ContractFailures(
            rows_failed=rows.height,
            files_failed=files.height,
            rows_held_by_drift=held,
            by_rule=_ranked(counts),
            samples=tuple(samples),
            unreadable=tuple(unreadable),
            files=tuple(
                (str(f), int(n), str(rules or ""), str(reason or ""))
                for f, n, rules, reason in per_file.head(FILES_SHOWN).iter_rows()
            ),
        )
    return result

"""Schema drift of one file against the table: what differs, and whether it needs a person.

Each difference is one :class:`ColumnDrift`:

- ``added`` — a column the table does not have;
- ``missing`` — a contract column the file does not have;
- ``widened`` — a narrower type whose every value fits the table's (int32 into int64,
  float32 into float64, date into datetime, an int into a decimal with room): harmless;
- ``narrowed`` — a type that may not fit (int64 into int32, float into int, text into a
  date): every value is checked, none is changed;
- ``renamed`` — probably: a missing column and an added one whose names and values are alike
  (the evidence says how alike);
- ``reordered`` — the same columns in another order: harmless;
- ``rescued`` — values that did not fit their column were kept in ``_rescued_data`` (drift
  policies evolve and rescue): the rows are committed, the values are not lost, someone should
  look.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import polars as pl

from lakesync.config.datatypes import describe
from lakesync.conform.target import PROVENANCE_PREFIX, TargetSchema

Change = Literal["added", "missing", "widened", "narrowed", "renamed", "reordered", "rescued"]
SourceKind = Literal["text", "json", "typed"]
"""What a file's types mean: none (CSV: text is parsed per value), JSON's (strings for dates,
times and decimals are normal there), or the format's own (parquet)."""
HARMLESS: tuple[str, ...] = ("widened", "reordered", "renamed")
"""Changes that need no decision by themselves (a probable rename comes with added + missing)."""
RENAME_NAME_SIMILARITY = 0.6
RENAME_VALUE_OVERLAP = 0.5
_SAMPLE = 1000
_INT_BITS = {pl.Int8: 8, pl.Int16: 16, pl.Int32: 32, pl.Int64: 64}
_UINT_BITS = {pl.UInt8: 8, pl.UInt16: 16, pl.UInt32: 32, pl.UInt64: 64}
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}


@dataclass(frozen=True)
class ColumnDrift:
    """One difference between a file's columns (after mapping) and the table's."""

    column: str
    change: Change
    source_type: str | None
    table_type: str | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.change == "added":
            return f"new column {self.column!r} ({self.source_type})"
        if self.change == "missing":
            return f"column {self.column!r} ({self.table_type}) is missing"
        if self.change == "widened":
            return f"{self.column!r} is {self.source_type}, safely widened to {self.table_type}"
        if self.change == "renamed":
            source = self.evidence.get("source_column")
            return (
                f"{source!r} is probably {self.column!r} renamed (name similarity "
                f"{self.evidence.get('name_similarity')}, value overlap {self.evidence.get('value_overlap')})"
            )
        if self.change == "reordered":
            return "columns are in another order (harmless)"
        if self.change == "rescued":
            examples = ", ".join(repr(e) for e in self.evidence.get("examples", [])[:3])
            rows, kept = self.evidence.get("rows"), f" (e.g. {examples})" if examples else ""
            where = f"{self.column!r} did not fit {self.table_type}"
            return f"{rows} value(s) of {where}: kept in _rescued_data{kept}"
        return (
            f"{self.column!r} is {self.source_type}, the table has {self.table_type}: each value is checked"
        )


@dataclass(frozen=True)
class DriftReport:
    """How one file's schema differs from the table's, and what lakesync did about it."""

    file: str
    policy: str
    changes: tuple[ColumnDrift, ...]
    actions: tuple[str, ...] = ()

    @property
    def needs_review(self) -> bool:
        """True when the file changes the table's shape (added, missing or narrowed columns)."""
        return any(c.change not in HARMLESS for c in self.changes)

    @property
    def signature(self) -> tuple[tuple[str, str, str | None, str | None], ...]:
        """What identifies this drift whatever the file: its review-needing changes."""
        return tuple(
            sorted(
                (c.column, c.change, c.source_type, c.table_type)
                for c in self.changes
                if c.change not in HARMLESS
            )
        )

    def suggestion(self) -> str:
        """What a reviewer would most likely do about it."""
        rescued = [c.column for c in self.changes if c.change == "rescued"]
        if rescued and all(c.change == "rescued" for c in self.changes):
            return (
                f"fix the source of {', '.join(rescued)}, or give the column the type its values have; "
                "the rows are committed and their values kept in _rescued_data"
            )
        renames = [c for c in self.changes if c.change == "renamed"]
        if renames:
            pairs = ", ".join(f"{c.evidence['source_column']}: {c.column}" for c in renames)
            return f"approve to map the renamed column(s) ({pairs}) in the dataset's columns"
        added = [c.column for c in self.changes if c.change == "added"]
        missing = [c.column for c in self.changes if c.change == "missing"]
        narrowed = [c.column for c in self.changes if c.change == "narrowed"]
        parts = []
        if added:
            parts.append(f"add {', '.join(added)} to the table (nullable)")
        if missing:
            parts.append(f"accept files without {', '.join(missing)} (null where the contract allows)")
        if narrowed:
            parts.append(f"accept {', '.join(narrowed)} with each value checked against the table's type")
        return "approve to " + "; ".join(parts) if parts else "nothing to decide"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "policy": self.policy,
            "changes": [asdict(c) for c in self.changes],
            "actions": list(self.actions),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        return cls(
            file=str(data["file"]),
            policy=str(data["policy"]),
            # "nullability" (recorded by earlier lakesync) is a contract failure, not drift
            changes=tuple(ColumnDrift(**c) for c in data.get("changes", []) if c["change"] != "nullability"),
            actions=tuple(data.get("actions", [])),
        )

    def summary(self) -> str:
        return "; ".join(c.describe() for c in self.changes)


def drift_lines(reports: Sequence[DriftReport]) -> tuple[str, ...]:
    """The drift of a dataset's files, the same drift of many files on one line."""
    files: dict[str, list[str]] = {}
    for report in reports:
        shown = [c for c in report.changes if c.change != "reordered"]
        if not shown:
            continue
        done = f" -> {'; '.join(report.actions)}" if report.actions else ""
        what = "; ".join(c.describe() for c in shown)
        files.setdefault(f"{what}{done}", []).append(report.file)
    return tuple(
        f"{what} ({paths[0] if len(paths) == 1 else f'{len(paths)} files, e.g. {paths[0]}'})"
        for what, paths in files.items()
    )


def signature_id(dataset: str, signature: tuple[tuple[str, str, str | None, str | None], ...]) -> str:
    """A short, stable id for one kind of drift of one dataset (``lakesync drift approve ID``)."""
    payload = json.dumps([dataset, [list(s) for s in signature]])
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def _bits(dtype: pl.DataType, table: Mapping[Any, int]) -> int | None:
    for kind, bits in table.items():
        if isinstance(dtype, kind):
            return bits
    return None


def is_safe_widening(source: pl.DataType, target: pl.DataType) -> bool:
    """True when every value of ``source`` has an exact, equal value in ``target``."""
    if source in (target, pl.Null):
        return True
    src_int, dst_int = _bits(source, _INT_BITS), _bits(target, _INT_BITS)
    src_uint = _bits(source, _UINT_BITS)
    if src_int is not None and dst_int is not None:
        return dst_int >= src_int
    if src_uint is not None and dst_int is not None:
        return dst_int > src_uint
    if (src_int or src_uint) and target == pl.Float64:
        return (src_int or src_uint or 64) <= 32
    if (src_int or src_uint) and target == pl.Float32:
        return (src_int or src_uint or 64) <= 16
    if source == pl.Float32 and target == pl.Float64:
        return True
    if (src_int or src_uint) and isinstance(target, pl.Decimal):
        digits = _INT_DIGITS[src_int or src_uint or 64] + (1 if src_uint == 64 else 0)
        return (target.precision or 38) - (target.scale or 0) >= digits
    if isinstance(source, pl.Decimal) and isinstance(target, pl.Decimal):
        s_scale, t_scale = source.scale or 0, target.scale or 0
        return t_scale >= s_scale and (target.precision or 38) - t_scale >= (source.precision or 38) - s_scale
    if source == pl.Date and isinstance(target, pl.Datetime):
        return True
    if isinstance(source, pl.Datetime) and isinstance(target, pl.Datetime):
        return source.time_unit in ("ms", "us") and target.time_unit == "us"
    return False


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_numeric():
        return "number"
    if dtype.is_temporal():
        return "time"
    return "text" if dtype == pl.String else str(dtype)


def _overlap(values: pl.Series, existing: pl.Series) -> float:
    """Share of a sample of ``values`` also found among ``existing`` (compared as text)."""
    if values.dtype.is_nested() or existing.dtype.is_nested():
        return 0.0
    sample = values.drop_nulls().cast(pl.String, strict=False).drop_nulls().unique().head(_SAMPLE)
    if sample.is_empty() or existing.is_empty():
        return 0.0
    known = existing.drop_nulls().cast(pl.String, strict=False).drop_nulls().unique()
    share = sample.is_in(known.implode()).mean()
    return round(float(share), 2) if isinstance(share, int | float) else 0.0


def classify(
    source: Mapping[str, pl.DataType],
    target: TargetSchema,
    *,
    kind: SourceKind,
    chunk: pl.DataFrame | None = None,
    table_values: Callable[[str], pl.Series | None] | None = None,
) -> tuple[ColumnDrift, ...]:
    """The differences between a file's columns (already mapped to canonical names) and the target.

    Args:
        source: the file's columns and types (canonical names).
        target: the table's columns as this batch writes them.
        kind: what the file's types mean (:data:`SourceKind`): text in CSV is parsed, not drifted;
            text in JSON is normal for dates, times and decimals; in parquet every type counts.
        chunk: the file's first rows, for rename evidence. (Nulls in a never-null column are
            contract failures, reported with the quarantine, not drift.)
        table_values: a sample of a table column's values, for rename evidence.
    """
    changes: list[ColumnDrift] = []
    names = [n for n in source if not n.startswith(PROVENANCE_PREFIX)]
    for name in names:
        dtype = source[name]
        column = target.get(name)
        if column is None:
            changes.append(ColumnDrift(name, "added", describe(dtype), None))
            continue
        if dtype in (column.dtype, pl.Null) or (dtype == pl.String and _text_is_normal(kind, column.dtype)):
            continue  # parsed per value
        change: Change = "widened" if is_safe_widening(dtype, column.dtype) else "narrowed"
        changes.append(ColumnDrift(name, change, describe(dtype), describe(column.dtype)))
    missing = [c for c in target.columns if c.origin == "contract" and c.name not in source]
    changes.extend(ColumnDrift(c.name, "missing", None, describe(c.dtype)) for c in missing)
    added = [n for n in names if target.get(n) is None]
    changes.extend(_renames(missing, added, source, chunk, table_values))
    known = [n for n in names if target.get(n) is not None]
    order = [c.name for c in target.columns if c.name in known]
    if known != order:
        changes.append(ColumnDrift("(all)", "reordered", None, None, {"file_order": known}))
    return tuple(changes)


def _text_is_normal(kind: SourceKind, target: pl.DataType) -> bool:
    """Text in a column of type ``target`` is how such a file spells it (not a type change)."""
    if kind == "text":
        return True
    if kind == "json":  # JSON has no dates, times or decimals: text is how it writes them
        return not (target.is_numeric() and not isinstance(target, pl.Decimal)) and target != pl.Boolean
    return False


def _renames(
    missing: list[Any],
    added: list[str],
    source: Mapping[str, pl.DataType],
    chunk: pl.DataFrame | None,
    table_values: Callable[[str], pl.Series | None] | None,
) -> list[ColumnDrift]:
    """Probable renames: a missing and an added column with alike names or alike values.

    Each carries its ``score`` (the mean of name similarity and value overlap) and ``margin``
    (over the next candidate for the same column, or the same candidate's other column)."""
    found = []
    scores: dict[tuple[str, str], float] = {}
    for gone in missing:
        best: ColumnDrift | None = None
        for new in added:
            similarity = round(
                difflib.SequenceMatcher(None, _normalised(gone.name), _normalised(new)).ratio(), 2
            )
            compatible = _kind(source[new]) == _kind(gone.dtype) or source[new] == pl.String
            if not compatible:
                continue
            existing = table_values(gone.name) if table_values is not None else None
            overlap = (
                _overlap(chunk[new], existing)
                if chunk is not None and existing is not None and new in chunk.columns
                else 0.0
            )
            if similarity >= RENAME_NAME_SIMILARITY or overlap >= RENAME_VALUE_OVERLAP:
                evidence = {"source_column": new, "name_similarity": similarity, "value_overlap": overlap}
                candidate = ColumnDrift(
                    gone.name, "renamed", describe(source[new]), describe(gone.dtype), evidence
                )
                score = similarity + overlap
                scores[(gone.name, new)] = round(score / 2, 2)
                if best is None or score > best.evidence["name_similarity"] + best.evidence["value_overlap"]:
                    best = candidate
        if best is not None:
            found.append(best)
    scored = []
    for rename in found:
        named = str(rename.evidence["source_column"])
        score = scores[(rename.column, named)]
        rivals = [
            v for (gone, added_name), v in scores.items() if (gone == rename.column) != (added_name == named)
        ]
        evidence = {**rename.evidence, "score": score, "margin": round(score - max(rivals, default=0.0), 2)}
        scored.append(ColumnDrift(rename.column, "renamed", rename.source_type, rename.table_type, evidence))
    return scored

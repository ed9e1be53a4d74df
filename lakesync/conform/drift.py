"""Schema drift of one file against the table: what differs, and whether it is harmless."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import polars as pl

from lakesync.config.datatypes import describe
from lakesync.conform.target import PROVENANCE_PREFIX, TargetSchema

Change = Literal["added", "missing", "widened", "narrowed"]
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

    def describe(self) -> str:
        if self.change == "added":
            return f"new column {self.column!r} ({self.source_type})"
        if self.change == "missing":
            return f"column {self.column!r} ({self.table_type}) is missing"
        if self.change == "widened":
            return f"{self.column!r} is {self.source_type}, safely widened to {self.table_type}"
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
        """True when the file changes the table's shape (anything but a safe widening)."""
        return any(c.change != "widened" for c in self.changes)

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
            changes=tuple(ColumnDrift(**c) for c in data.get("changes", [])),
            actions=tuple(data.get("actions", [])),
        )

    def summary(self) -> str:
        return "; ".join(c.describe() for c in self.changes)


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


def classify(
    source: Mapping[str, pl.DataType],
    target: TargetSchema,
    *,
    text_source: bool,
) -> tuple[ColumnDrift, ...]:
    """The differences between a file's columns (already mapped to canonical names) and the target.

    ``text_source`` files (CSV) carry no types: their text columns are parsed, not drifted.
    Columns earlier drift added to the table may be absent from a file without it being drift.
    """
    changes: list[ColumnDrift] = []
    for name, dtype in source.items():
        if name.startswith(PROVENANCE_PREFIX):
            continue
        column = target.get(name)
        if column is None:
            changes.append(ColumnDrift(name, "added", describe(dtype), None))
            continue
        if dtype in (column.dtype, pl.Null) or (text_source and dtype == pl.String):
            continue
        if dtype == pl.String and column.dtype != pl.String:
            continue  # text in a typed column (JSON timestamps, numbers as strings): parsed per value
        kind: Change = "widened" if is_safe_widening(dtype, column.dtype) else "narrowed"
        changes.append(ColumnDrift(name, kind, describe(dtype), describe(column.dtype)))
    changes.extend(
        ColumnDrift(column.name, "missing", None, describe(column.dtype))
        for column in target.columns
        if column.origin == "contract" and column.name not in source
    )
    return tuple(changes)

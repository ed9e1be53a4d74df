"""The logical column types a contract may declare, and how they map onto polars.

A contract says ``type: int64`` or ``type: decimal(18,2)``; every stage that needs the
physical type asks this module, so the mapping lives in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

INTEGER_TYPES = ("int8", "int16", "int32", "int64")
FLOAT_TYPES = ("float32", "float64")
SIMPLE_TYPES = (*INTEGER_TYPES, *FLOAT_TYPES, "bool", "string", "date", "datetime")
TYPE_NAMES = (*SIMPLE_TYPES, "decimal(p,s)")

_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_POLARS: dict[str, pl.DataType] = {
    "int8": pl.Int8(),
    "int16": pl.Int16(),
    "int32": pl.Int32(),
    "int64": pl.Int64(),
    "float32": pl.Float32(),
    "float64": pl.Float64(),
    "bool": pl.Boolean(),
    "string": pl.String(),
    "date": pl.Date(),
    # Timestamps are stored as instants in UTC with microsecond precision (Delta `timestamp`).
    "datetime": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class LogicalType:
    """A parsed contract type: its canonical name and its polars dtype."""

    name: str
    dtype: pl.DataType

    def __str__(self) -> str:
        return self.name


def parse_type(text: str) -> LogicalType:
    """Parse a contract type name; raise ``ValueError`` naming the allowed types."""
    name = text.strip().lower().replace(" ", "")
    if name in _POLARS:
        return LogicalType(name, _POLARS[name])
    match = _DECIMAL.match(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            msg = f"{text!r}: decimal precision must be 1..38 and scale at most the precision"
            raise ValueError(msg)
        return LogicalType(f"decimal({precision},{scale})", pl.Decimal(precision, scale))
    msg = f"{text!r} is not one of {', '.join(TYPE_NAMES)}"
    raise ValueError(msg)


def describe(dtype: pl.DataType) -> str:
    """A type as people should read it in drift reports (units and zones included)."""
    if isinstance(dtype, pl.Datetime):
        zone = f", {dtype.time_zone}" if dtype.time_zone else ", no time zone"
        return f"datetime({dtype.time_unit}{zone})"
    return logical_name(dtype)


def logical_name(dtype: pl.DataType) -> str:
    """The contract type name closest to a polars dtype (used to describe source columns)."""
    for name, candidate in _POLARS.items():
        if dtype == candidate:
            return name
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return str(dtype).lower()

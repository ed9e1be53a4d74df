"""The schema rows are conformed to: the contract's columns plus columns drift added."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import polars as pl

from lakesync.config.contracts import ResolvedContract

RESCUED = "_rescued_data"
"""JSON of the values of a row that did not fit the table (drift policy ``rescue``)."""
PROVENANCE_PREFIX = "_lakesync_"


@dataclass(frozen=True)
class TargetColumn:
    name: str
    dtype: pl.DataType
    nullable: bool
    origin: Literal["contract", "evolved"]


@dataclass(frozen=True)
class TargetSchema:
    """What one batch writes: contract columns, evolved columns, maybe ``_rescued_data``."""

    columns: tuple[TargetColumn, ...]
    rescue: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def get(self, name: str) -> TargetColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    def with_added(self, added: Mapping[str, pl.DataType]) -> TargetSchema:
        """This schema with new nullable columns (schema evolution)."""
        new = tuple(
            TargetColumn(name, storable(dtype), nullable=True, origin="evolved")
            for name, dtype in added.items()
            if self.get(name) is None
        )
        return replace(self, columns=self.columns + new)

    def polars_schema(self) -> dict[str, pl.DataType]:
        schema = {c.name: c.dtype for c in self.columns}
        if self.rescue:
            schema[RESCUED] = pl.String()
        return schema


def storable(dtype: pl.DataType) -> pl.DataType:
    """The Delta-storable type a new column of source type ``dtype`` gets (losslessly)."""
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us", "UTC")
    if dtype == pl.Null or isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    unsigned: dict[type[pl.DataType], pl.DataType] = {
        pl.Int128: pl.Decimal(38, 0),
        pl.UInt8: pl.Int16(),
        pl.UInt16: pl.Int32(),
        pl.UInt32: pl.Int64(),
        pl.UInt64: pl.Decimal(20, 0),
    }
    for kind, wider in unsigned.items():
        if isinstance(dtype, kind):
            return wider
    return dtype


def target_schema(
    contract: ResolvedContract,
    table_schema: Mapping[str, pl.DataType] | None,
    *,
    rescue: bool,
    provenance: Collection[str] = (),
) -> TargetSchema:
    """Contract columns, then columns earlier drift added to the Delta table, in table order
    (``provenance`` names the table's provenance columns, which are not data)."""
    columns = [
        TargetColumn(c.name, c.type.dtype, nullable=c.nullable, origin="contract") for c in contract.columns
    ]
    known = {c.name for c in columns}
    for name, dtype in (table_schema or {}).items():
        if name in known or name == RESCUED or name in provenance or name.startswith(PROVENANCE_PREFIX):
            continue
        columns.append(TargetColumn(name, dtype, nullable=True, origin="evolved"))
    return TargetSchema(tuple(columns), rescue=rescue or RESCUED in (table_schema or {}))

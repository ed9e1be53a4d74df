"""Stage 3: give a chunk the table's canonical column names and types, losing nothing.

A value that cannot take its column's type becomes a *failure* of its row (row number, column,
reason, raw value) for the quarantine, or, under the ``rescue`` policy, moves into the row's
``_rescued_data`` JSON. Columns the table does not know are rescued there too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import polars as pl

from lakesync.config.datatypes import logical_name
from lakesync.conform.convert import TextFormats, convert, nulls
from lakesync.conform.target import RESCUED, TargetSchema
from lakesync.read import ROW

FAILURE_SCHEMA = {"row": pl.Int64, "column": pl.String, "rule": pl.String, "message": pl.String}


@dataclass(frozen=True)
class ConformedChunk:
    frame: pl.DataFrame
    """``_lakesync_row``, then the target columns (and ``_rescued_data`` when rescuing)."""
    failures: pl.DataFrame
    """One row per failed value: row, column, rule, message."""


def rename(chunk: pl.DataFrame, mapping: Mapping[str, str]) -> pl.DataFrame:
    """Source names to canonical names; a clash (two columns, one name) is an error."""
    present = {source: canonical for source, canonical in mapping.items() if source in chunk.columns}
    if not present:
        return chunk
    renamed = [present.get(name, name) for name in chunk.columns]
    seen: set[str] = set()
    for original, name in zip(chunk.columns, renamed, strict=True):
        if name in seen:
            msg = (
                f"column {original!r} maps to {name!r}, but the file also has a column {name!r}; "
                "fix the dataset's `columns` mapping"
            )
            raise ValueError(msg)
        seen.add(name)
    return chunk.rename(present)


def empty_failures() -> pl.DataFrame:
    return pl.DataFrame(schema=FAILURE_SCHEMA)


def as_text(series: pl.Series) -> pl.Series:
    """Values as text for messages and quarantine (nested values as JSON)."""
    if series.dtype == pl.String:
        return series
    if series.dtype.is_nested():
        return convert(series, pl.String(), TextFormats()).values
    return series.cast(pl.String, strict=False)


def _json_object(columns: Mapping[str, pl.Series]) -> pl.Series:
    """Per row, a JSON object of the non-null values among ``columns`` (null when none)."""
    fragments = []
    for name, values in columns.items():
        encoded = pl.struct(values.alias(name)).struct.json_encode()
        fragments.append(
            pl.when(values.is_not_null()).then(encoded.str.slice(1, encoded.str.len_chars() - 2))
        )
    joined = pl.concat_list(fragments).list.drop_nulls().list.join(",")
    frame = pl.select(pl.when(joined != "").then(pl.lit("{") + joined + pl.lit("}")).alias(RESCUED))
    return frame.to_series()


@dataclass(frozen=True)
class ConformRules:
    """How one dataset's chunks are conformed."""

    source_names: Mapping[str, str] = field(default_factory=dict)
    """Canonical name -> name in the file, for messages and rescued data."""
    formats: TextFormats = field(default_factory=TextFormats)
    """How text becomes dates and timestamps."""
    rescue_values: bool = False
    """A value that does not fit its (nullable) column moves to ``_rescued_data`` instead of
    failing its row (drift policies evolve and rescue)."""
    rescue_unknown: bool = False
    """Columns the table does not have move to ``_rescued_data`` (drift policy rescue)."""
    treat: Callable[[str, pl.Series], pl.Series | None] | None = None
    """How a column's rescued text may be stored (personal data: hashed, masked, or ``None``
    when the column is dropped)."""


def conform_chunk(
    chunk: pl.DataFrame, target: TargetSchema, rules: ConformRules | None = None
) -> ConformedChunk:
    """Conform an already renamed chunk (canonical names and ``_lakesync_row``) to ``target``."""
    rules = rules or ConformRules()
    source_names, formats, treat = rules.source_names, rules.formats, rules.treat
    rescue_values, rescue_unknown = rules.rescue_values, rules.rescue_unknown
    columns: list[pl.Series] = [chunk[ROW]]
    failures: list[pl.DataFrame] = []
    rescued: dict[str, pl.Series] = {}
    rows = chunk[ROW]
    for column in target.columns:
        source_name = source_names.get(column.name, column.name)
        if column.name not in chunk.columns:
            columns.append(nulls(column.name, chunk.height, column.dtype))
            if not column.nullable and chunk.height:
                failures.append(
                    pl.DataFrame(
                        {
                            "row": rows,
                            "column": column.name,
                            "rule": "column_missing",
                            "message": f"required column {column.name!r} is missing from the file",
                        },
                        schema=FAILURE_SCHEMA,
                    )
                )
            continue
        source = chunk[column.name]
        if source.dtype == column.dtype:  # the common case: nothing to convert, nothing to check
            columns.append(source)
            continue
        converted = convert(source, column.dtype, formats)
        if converted.bad.any():
            if rescue_values and target.rescue and column.nullable:
                text = as_text(source).set(~converted.bad, None)
                kept = treat(column.name, text) if treat is not None else text
                if kept is not None:
                    rescued[source_name] = kept
            else:
                bad_raw = as_text(source.filter(converted.bad))
                message = pl.select(
                    pl.lit(f"{source_name}: '") + bad_raw + pl.lit(f"' {converted.reason}")
                ).to_series()
                failures.append(
                    pl.DataFrame(
                        {
                            "row": rows.filter(converted.bad),
                            "column": column.name,
                            "rule": f"type({logical_name(column.dtype)})",
                            "message": message,
                        },
                        schema=FAILURE_SCHEMA,
                    )
                )
        columns.append(converted.values.alias(column.name))
    if target.rescue:
        if rescue_unknown:
            for name in chunk.columns:
                if name != ROW and target.get(name) is None:
                    rescued[source_names.get(name, name)] = chunk[name]
        columns.append(_json_object(rescued) if rescued else nulls(RESCUED, chunk.height, pl.String()))
    frame = pl.DataFrame(columns)
    merged = pl.concat(failures) if failures else empty_failures()
    return ConformedChunk(frame=frame, failures=merged)

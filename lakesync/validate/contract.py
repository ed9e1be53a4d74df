"""Stage 4: check conformed rows against the table's pandera contract.

pandera is the authority on what fails and why. Running it on every chunk costs ~6x the same
checks written as one polars ``select``, so when every check of a contract is one of pandera's
built-ins, they are compiled to polars expressions (a *fast path*) that find the failing rows;
pandera then validates just those rows (``lazy=True``) and its failure cases become the
quarantine reasons. Contracts with custom checks go through pandera for every chunk.

Uniqueness is per file and streaming: the first occurrence of a value is kept, later ones fail
(``field_uniqueness``), across the chunks of the file (:class:`UniqueTracker`), or across the
files of one frame when small files are checked together (:class:`FileUniqueness`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from lakesync.config.contracts import ResolvedContract
from lakesync.conform.conform import FAILURE_SCHEMA, empty_failures
from lakesync.read import ROW

if TYPE_CHECKING:
    import pandera.polars as pa


@dataclass(frozen=True)
class FastCheck:
    column: str
    rule: str
    ok: pl.Expr
    """True where the row passes."""


@dataclass(frozen=True)
class CompiledContract:
    contract: ResolvedContract
    fast_checks: tuple[FastCheck, ...] | None
    """``None`` when a check has no polars translation: pandera then sees every row."""
    unique: tuple[str, ...]

    @property
    def fast(self) -> bool:
        return self.fast_checks is not None


def _bound(name: str) -> Callable[[pl.Expr, dict[str, Any]], pl.Expr] | None:
    builtins: dict[str, Callable[[pl.Expr, dict[str, Any]], pl.Expr]] = {
        "greater_than_or_equal_to": lambda c, s: c.ge(s["min_value"]),
        "greater_than": lambda c, s: c.gt(s["min_value"]),
        "less_than_or_equal_to": lambda c, s: c.le(s["max_value"]),
        "less_than": lambda c, s: c.lt(s["max_value"]),
        "equal_to": lambda c, s: c.eq(s["value"]),
        "not_equal_to": lambda c, s: c.ne(s["value"]),
        "in_range": lambda c, s: (
            (c.ge(s["min_value"]) if s.get("include_min", True) else c.gt(s["min_value"]))
            & (c.le(s["max_value"]) if s.get("include_max", True) else c.lt(s["max_value"]))
        ),
        "isin": lambda c, s: c.is_in(list(s["allowed_values"])),
        "notin": lambda c, s: c.is_in(list(s["forbidden_values"])).not_(),
        "str_matches": lambda c, s: c.str.contains(
            s["pattern"] if str(s["pattern"]).startswith("^") else f"^{s['pattern']}"
        ),
        "str_contains": lambda c, s: c.str.contains(s["pattern"]),
        "str_startswith": lambda c, s: c.str.starts_with(s["string"]),
        "str_endswith": lambda c, s: c.str.ends_with(s["string"]),
        "str_length": _str_length,
    }
    return builtins.get(name)


def _str_length(column: pl.Expr, stats: dict[str, Any]) -> pl.Expr:
    n = column.str.len_chars()
    if stats.get("exact_value") is not None:
        return n.eq(stats["exact_value"])
    low, high = stats.get("min_value"), stats.get("max_value")
    if low is not None and high is not None:
        return n.is_between(low, high)
    return n.ge(low) if low is not None else n.le(high)


def compile_contract(contract: ResolvedContract) -> CompiledContract:
    """Compile a contract's checks to polars expressions where pandera's built-ins allow it."""
    unique = tuple(c.name for c in contract.columns if c.unique)
    if contract.frame_checks:  # dataframe-wide checks of a model: only pandera knows them
        return CompiledContract(contract, None, unique)
    checks: list[FastCheck] = []
    for column in contract.columns:
        col = pl.col(column.name)
        if not column.nullable:
            ok = col.is_not_null()
            if column.type.dtype.is_float():
                ok = ok & col.is_not_nan()
            checks.append(FastCheck(column.name, "not_nullable", ok))
        for check in column.checks:
            builder = _bound(str(check.name))
            if builder is None or check.statistics is None:
                return CompiledContract(contract, None, unique)
            expr = builder(col, dict(check.statistics))
            if check.ignore_na:
                expr = expr | col.is_null()
            checks.append(FastCheck(column.name, str(check.error or check.name), expr.fill_null(False)))
    return CompiledContract(contract, tuple(checks), unique)


RowPart = Callable[[pl.Expr], pl.Expr]
"""A part of ``_lakesync_row`` (its file, or its row in the file), as an expression."""


class UniqueTracker:
    """Remembers the values of ``unique`` columns seen so far in one file."""

    def __init__(self, columns: tuple[str, ...]) -> None:
        self._seen: dict[str, pl.DataFrame] = {
            c: pl.DataFrame(schema={"value": pl.Null, "first_row": pl.Int64}) for c in columns
        }

    def failures(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows of ``frame`` repeating a value seen earlier in the file; remembers the rest."""
        found: list[pl.DataFrame] = []
        for column, seen in self._seen.items():
            values = frame.select(pl.col(ROW), pl.col(column).alias("value")).filter(
                pl.col("value").is_not_null()
            )
            if (
                not seen.height and values["value"].n_unique() == values.height
            ):  # a file's first chunk, no value twice
                self._seen[column] = values.select("value", pl.col(ROW).alias("first_row"))
                continue
            if seen.height:
                values_typed = values.with_columns(pl.col("value").cast(seen["value"].dtype))
                earlier = values_typed.join(seen, on="value", how="inner")
            else:
                earlier = values.with_columns(first_row=pl.lit(None, dtype=pl.Int64)).clear()
            if values["value"].n_unique() == values.height:  # the usual chunk: no value twice in it
                firsts = values.select("value", pl.col(ROW).alias("first_row"))
                within = values.with_columns(first_row=pl.lit(None, dtype=pl.Int64)).clear()
            else:
                firsts = values.group_by("value", maintain_order=True).agg(
                    pl.col(ROW).min().alias("first_row")
                )
                within = values.join(firsts, on="value").filter(pl.col(ROW) != pl.col("first_row"))
            dupes = pl.concat(
                [earlier.select(ROW, "value", "first_row"), within.select(ROW, "value", "first_row")],
                how="vertical_relaxed",
            )
            if dupes.height:
                found.append(_duplicates(dupes, column))
            new_firsts = firsts if not seen.height else firsts.join(seen, on="value", how="anti")
            self._seen[column] = pl.concat(
                [seen, new_firsts.select("value", "first_row")] if seen.height else [new_firsts],
                how="vertical_relaxed",
            )
        return pl.concat(found) if found else empty_failures()


def _duplicates(dupes: pl.DataFrame, column: str, first_row: pl.Expr | None = None) -> pl.DataFrame:
    """Failures of rows (``_lakesync_row``) repeating a ``value`` first seen in ``first_row``."""
    first = pl.col("first_row") if first_row is None else first_row
    return dupes.select(
        pl.col(ROW).alias("row"),
        pl.lit(column).alias("column"),
        pl.lit("field_uniqueness").alias("rule"),
        (
            pl.lit(f"{column}: duplicate value '")
            + pl.col("value").cast(pl.String)
            + pl.lit("' (first in row ")
            + first.cast(pl.String)
            + pl.lit(")")
        ).alias("message"),
    )


class FileUniqueness:
    """The ``unique`` columns of whole files checked at once, in one frame: a value may appear
    once per file. ``file_of`` and ``row_of`` take a row's file and its row in that file from a
    ``_lakesync_row`` expression (messages name the row in its own file)."""

    def __init__(self, columns: tuple[str, ...], file_of: RowPart, row_of: RowPart) -> None:
        self.columns = columns
        self.file_of = file_of
        self.row_of = row_of

    def failures(self, frame: pl.DataFrame) -> pl.DataFrame:
        found: list[pl.DataFrame] = []
        for column in self.columns:
            values = frame.select(
                pl.col(ROW), self.file_of(pl.col(ROW)).alias("file"), pl.col(column).alias("value")
            ).filter(pl.col("value").is_not_null())
            if values.select(pl.struct("file", "value").n_unique()).item() == values.height:
                continue  # the usual case: no value twice in a file
            firsts = values.group_by("file", "value").agg(pl.col(ROW).min().alias("first_row"))
            dupes = values.join(firsts, on=["file", "value"]).filter(pl.col(ROW) != pl.col("first_row"))
            found.append(_duplicates(dupes.sort(ROW), column, self.row_of(pl.col("first_row"))))
        return pl.concat(found) if found else empty_failures()


def _pandera_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    """pandera's failure cases for ``frame`` as (row, column, rule, message)."""
    import pandera.errors  # noqa: PLC0415 - lazy: seconds to import, and only failing rows need it

    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        if not isinstance(cases, pl.DataFrame):
            cases = pl.DataFrame(cases)
    except pandera.errors.SchemaError as exc:  # a non-lazy error (should not happen with lazy=True)
        cases = pl.DataFrame(
            {"failure_case": [str(exc)], "column": [None], "check": [str(exc.check)], "index": [None]}
        )
    else:
        return empty_failures()
    rows = frame[ROW]
    records: list[dict[str, Any]] = []
    for case in cases.iter_rows(named=True):
        column = case.get("column") or "(table)"
        check = str(case.get("check"))
        value = case.get("failure_case")
        if check == "not_nullable":
            message = f"{column}: is null, but the contract says nullable: false"
        else:
            message = f"{column}: '{value}' fails {check}"
        index = case.get("index")
        targets = rows.to_list() if index is None else [rows[int(index)]]
        records.extend({"row": r, "column": column, "rule": check, "message": message} for r in targets)
    return pl.DataFrame(records, schema=FAILURE_SCHEMA) if records else empty_failures()


def validate_chunk(
    frame: pl.DataFrame, compiled: CompiledContract, tracker: UniqueTracker | FileUniqueness
) -> pl.DataFrame:
    """Failures of a conformed chunk: pandera's verdict plus per-file uniqueness."""
    if compiled.fast_checks is None:
        failures = _pandera_failures(frame, compiled.contract.schema)
    elif not compiled.fast_checks or frame.height == 0:
        failures = empty_failures()
    else:
        verdict = frame.select(pl.all_horizontal([c.ok for c in compiled.fast_checks]).alias("ok"))
        passed = verdict.to_series()
        failures = (
            empty_failures()
            if passed.all()
            else _pandera_failures(frame.filter(~passed), compiled.contract.schema)
        )
    if compiled.unique:
        duplicates = tracker.failures(frame)
        if duplicates.height:
            failures = pl.concat([failures, duplicates])
    return failures

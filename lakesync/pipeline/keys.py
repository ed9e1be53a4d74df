"""``unique`` columns of an append table, across files: a row whose value the table already holds,
or an earlier file of this round holds, is a duplicate key (quarantined, naming the row that holds
the value first). Within one file the validate stage already keeps the first occurrence.

Rows are checked as they leave for the Delta writer, in landing order. The table is asked only for
values inside the column's range in the Delta log's file statistics, and only the files whose
range holds them are read: keys that only grow (order ids, timestamps) cost nearly nothing. A
row the table holds *itself* (a retried round reading a committed batch again) is not its own
duplicate.

The Delta writer reads the rows from inside its own async runtime, where nothing may start
another: the guard asks the table (and the ledger) from a thread of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.commit.provenance import Provenance
from lakesync.conform.target import RESCUED
from lakesync.pipeline.attempt import FileResult
from lakesync.pipeline.key_index import Seen, bounds_of, in_sorted
from lakesync.pipeline.tally import Tally
from lakesync.read import ROW
from lakesync.state import quarantine

Holder = Callable[[str], int | None]
"""``<lake>/<path>`` of a file -> the table version that committed it (``None`` when unknown)."""


@dataclass(frozen=True)
class Duplicates:
    """Rows of one batch whose unique value is held elsewhere."""

    rows: pl.DataFrame
    """The rows as stored (provenance included)."""
    failures: pl.DataFrame
    """row, column, rule, message (one per duplicate value)."""


def _token(column: str, value: object) -> str:
    """Where a message names the table's row holding a value, until it is looked up."""
    return f"\x1f{column}\x1f{value}\x1f"


class KeyGuard:
    """The ``unique`` columns of an append table, checked across the files of one round."""

    def __init__(
        self, snapshot: DeltaTable, columns: Sequence[str], provenance: Provenance, holder: Holder
    ) -> None:
        self.snapshot = snapshot
        self.columns = list(columns)
        self.provenance = provenance
        self.holder = holder
        self.seen = {c: Seen() for c in self.columns}
        self.ranges = _ranges(snapshot, self.columns)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakesync-keys")
        self._keys: dict[str, pl.Series] = {}
        self._unnamed: dict[str, list[pl.Series]] = {c: [] for c in self.columns}
        """Values found in the table whose holders messages still have to name."""

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def check(
        self, batch: pa.RecordBatch, *, drained: bool = False
    ) -> tuple[list[pa.RecordBatch], Duplicates | None]:
        """The batch without its duplicate rows, and those rows with why. ``drained``: a batch the
        table already holds, read again (its own rows are in the table: compare the holders).

        A batch whose values lie outside what the table and this round hold (keys that only
        grow) is looked at through its min and max only."""
        if batch.num_rows == 0:
            return [batch], None
        file = str(batch.column(self.provenance.file)[0])  # a batch holds the rows of one file
        rows = batch.column(self.provenance.row)
        bounds = {c: bounds_of(batch.column(c)) for c in self.columns}
        if not drained and not any(b is not None and self._may_hold(c, *b) for c, b in bounds.items()):
            for column, extent in bounds.items():
                if extent is not None:
                    self.seen[column].add(batch.column(column), rows, file, extent)
            return [batch], None
        frame = pl.from_arrow(batch.select([self.provenance.row, *self.columns]))
        assert isinstance(frame, pl.DataFrame)
        failures: list[pl.DataFrame] = []
        for column in self.columns:
            extent = bounds[column]
            if extent is None:
                continue
            values = frame.select(
                pl.col(self.provenance.row).alias("row"), pl.col(column).alias("value")
            ).filter(pl.col("value").is_not_null())
            round_hits = self._in_round(column, values) if self.seen[column].overlaps(*extent) else []
            found = [*round_hits, *self._in_table(column, values, file, drained=drained)]
            failures.extend(found)
            fresh = (
                values.join(pl.concat([f.select("row") for f in found]), on="row", how="anti")
                if found
                else values
            )
            if fresh.height:
                self.seen[column].add(fresh["value"].to_arrow(), fresh["row"].to_arrow(), file, extent)
        if not failures:
            return [batch], None
        merged = pl.concat(failures).unique(subset=["row", "column"], keep="first", maintain_order=True)
        full = pl.from_arrow(batch)  # (string views: filtered by polars, not pyarrow)
        assert isinstance(full, pl.DataFrame)
        is_bad = pl.col(self.provenance.row).is_in(merged["row"].unique().implode())
        kept = full.filter(~is_bad).to_arrow(compat_level=pl.CompatLevel.newest())
        kept = kept.cast(batch.schema) if not kept.schema.equals(batch.schema) else kept
        return kept.to_batches(), Duplicates(full.filter(is_bad), merged)

    def _may_hold(self, column: str, low: Any, high: Any) -> bool:
        """Whether the table or this round may already hold a value between ``low`` and ``high``."""
        table = self.ranges.get(column)
        return self.seen[column].overlaps(low, high) or (
            table is not None and low <= table[1] and high >= table[0]
        )

    def _in_round(self, column: str, values: pl.DataFrame) -> list[pl.DataFrame]:
        seen = self.seen[column]
        if seen.low is None or values.is_empty():
            return []
        candidates = values.filter(pl.col("value").is_between(seen.low, seen.high))
        if candidates.is_empty():
            return []
        hits = seen.holders(candidates)
        if hits.is_empty():
            return []
        holder = pl.col("file") + pl.lit(" record ") + pl.col("held_row").cast(pl.String)
        message = pl.lit(f"{column}: duplicate key '") + pl.col("value").cast(pl.String)
        message = message + pl.lit("': an earlier file of this sync holds it (") + holder + pl.lit(")")
        return [_failures(hits, column, message)]

    def _in_table(self, column: str, values: pl.DataFrame, file: str, *, drained: bool) -> list[pl.DataFrame]:
        bounds = self.ranges.get(column)
        if bounds is None or values.is_empty():
            return []
        candidates = values.filter(pl.col("value").is_between(*bounds))
        if candidates.is_empty():
            return []
        if drained:
            return self._worker.submit(self._held, column, candidates, file).result()
        keys = self._keys.get(column)
        if keys is None:  # read once, from the guard's thread
            keys = self._worker.submit(self._table_keys, column).result()
        hits = candidates.filter(in_sorted(keys, candidates["value"]))
        if hits.is_empty():
            return []
        self._unnamed[column].append(hits["value"])
        token = pl.lit(f"\x1f{column}\x1f") + pl.col("value").cast(pl.String) + pl.lit("\x1f")
        message = pl.lit(f"{column}: duplicate key '") + pl.col("value").cast(pl.String)
        return [
            _failures(hits, column, message + pl.lit("': the table already holds it (") + token + pl.lit(")"))
        ]

    def _held(self, column: str, candidates: pl.DataFrame, file: str) -> list[pl.DataFrame]:
        """Candidates the table holds from another row than their own (on the guard's thread)."""
        present = candidates.filter(in_sorted(self._table_keys(column), candidates["value"]))
        if present.is_empty():
            return []
        holders = self._holders(column, present["value"])
        own = pl.lit(file) + pl.lit(" record ") + pl.col("row").cast(pl.String)
        hits = present.join(holders, on="value", how="inner").filter(pl.col("source") != own)
        if hits.is_empty():
            return []
        message = pl.lit(f"{column}: duplicate key '") + pl.col("value").cast(pl.String)
        return [
            _failures(
                hits,
                column,
                message + pl.lit("': the table already holds it (") + pl.col("holder") + pl.lit(")"),
            )
        ]

    def _holders(self, column: str, values: pl.Series) -> pl.DataFrame:
        """value, source (``<file> record <n>``) and holder (with the Delta version) of rows the
        table holds, one read of the table for all of them."""
        file, row = self.provenance.file, self.provenance.row
        held = (
            pl.scan_delta(self.snapshot)
            .filter(pl.col(column).is_in(values.unique().implode()))
            .select(pl.col(column).alias("value"), pl.col(file).alias("file"), pl.col(row).alias("held_row"))
            .collect()
            .unique(subset="value", keep="first")
        )
        source = pl.col("file") + pl.lit(" record ") + pl.col("held_row").cast(pl.String)
        versions = {f: self.holder(f) for f in held["file"].unique().to_list()}
        version = pl.col("file").replace_strict(versions, default=None, return_dtype=pl.Int64).cast(pl.String)
        named = source + pl.when(version.is_not_null()).then(pl.lit(", Delta version ") + version).otherwise(
            pl.lit("")
        )
        return held.select("value", source.alias("source"), named.alias("holder"))

    def _table_keys(self, column: str) -> pl.Series:
        """The column's values in the table, sorted; read once per round, the first time a row's
        value falls inside the table's range."""
        if column not in self._keys:
            values = pl.scan_delta(self.snapshot).select(pl.col(column)).drop_nulls().collect().to_series()
            self._keys[column] = values.sort()
        return self._keys[column]

    def named(self, results: Sequence[FileResult]) -> tuple[FileResult, ...]:
        """The results with each table row holding a duplicate named in the messages (one read
        of the table, after the round's rows left for the writer)."""
        swaps: dict[str, str] = {}
        for column, found in self._unnamed.items():
            if found:
                holders = self._holders(column, pl.concat(found))
                swaps |= {_token(column, v): h for v, h in holders.select("value", "holder").iter_rows()}
        if not swaps:
            return tuple(results)
        return tuple(replace(r, records=tuple(_swapped(f, swaps) for f in r.records)) for r in results)


_TOKEN = re.compile("\x1f[^\x1f]*\x1f[^\x1f]*\x1f")


def _swapped(records: pl.DataFrame, swaps: dict[str, str]) -> pl.DataFrame:
    if records.is_empty() or not records["reason"].str.contains("\x1f", literal=True).any():
        return records
    reasons = [
        None if text is None else _TOKEN.sub(lambda m: swaps.get(m.group(0), "?"), text)
        for text in records["reason"].to_list()
    ]
    return records.with_columns(reason=pl.Series(reasons, dtype=pl.String))


def _failures(hits: pl.DataFrame, column: str, message: pl.Expr) -> pl.DataFrame:
    return hits.select(
        pl.col("row").cast(pl.Int64),
        pl.lit(column).alias("column"),
        pl.lit("duplicate_key").alias("rule"),
        message.alias("message"),
    )


def _ranges(snapshot: DeltaTable, columns: Sequence[str]) -> dict[str, tuple[Any, Any] | None]:
    """Each column's (min, max) in the table, from the Delta log's file statistics. A column
    without statistics gets its whole range; an empty table has none."""
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    ranges: dict[str, tuple[Any, Any] | None] = {}
    for column in columns:
        if actions.num_rows == 0:
            ranges[column] = None
            continue
        low, high = f"min.{column}", f"max.{column}"
        if low not in actions.column_names or actions.column(low).null_count:
            values = pl.scan_delta(snapshot).select(
                pl.col(column).min().alias("lo"), pl.col(column).max().alias("hi")
            )
            found = values.collect().row(0)
            ranges[column] = None if found[0] is None else (found[0], found[1])
            continue
        lo = pl.Series(actions.column(low)).min()
        hi = pl.Series(actions.column(high)).max()
        ranges[column] = (lo, hi)
    return ranges


def settle(
    result: FileResult, duplicates: Sequence[Duplicates], context: Mapping[str, Any], provenance: Provenance
) -> FileResult:
    """A file's result once its duplicate rows are taken out: quarantined, with their records."""
    if result.outcome is None or not duplicates:
        return result
    rows = pl.concat([d.rows for d in duplicates], how="vertical_relaxed")
    failures = pl.concat([d.failures for d in duplicates])
    stored = rows.select(pl.col(provenance.row).alias(ROW), pl.exclude([*provenance.names, RESCUED]))
    records = quarantine.row_records(stored, failures, context=context)
    rescued = Tally()
    rescued.count_rescued(rows)
    outcome = result.outcome
    kept = {
        column: {**seen, "rows": seen["rows"] - rescued.rescued.get(column, 0)}
        for column, seen in (outcome.rescued or {}).items()
        if seen["rows"] > rescued.rescued.get(column, 0)
    }
    outcome = replace(
        outcome,
        rows_committed=outcome.rows_committed - rows.height,
        rows_quarantined=outcome.rows_quarantined + rows.height,
        rows_rescued=outcome.rows_rescued - rescued.rows_rescued,
        rescued=kept or None,
    )
    return replace(result, outcome=outcome, records=(*result.records, records))

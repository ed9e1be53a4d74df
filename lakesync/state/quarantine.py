"""The quarantine table of a unified table: every rejected row and file, with its reason.

Rows keep their raw values (as the source file had them, JSON) so they can be replayed after
a contract or mapping fix. Files that could not be read at all have one record with no row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.conform.conform import as_text
from lakesync.read import ROW
from lakesync.state.append import Append, append_once
from lakesync.state.lakehouse import Lakehouse, transaction_version
from lakesync.state.values import dataset_id

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "lake": pl.String(),
    "dataset": pl.String(),
    "file": pl.String(),
    "row": pl.Int64(),
    "level": pl.String(),
    "rules": pl.List(pl.String()),
    "columns": pl.List(pl.String()),
    "reason": pl.String(),
    "raw": pl.String(),
    "batch": pl.Int64(),
    "run_id": pl.String(),
    "contract": pl.String(),
    "quarantined_at": pl.Datetime("us", "UTC"),
}
"""One record per rejected row (``level`` = row) or unreadable file (``level`` = file, no row)."""
QUARANTINE_ARROW: pa.Schema = (
    pl.DataFrame(schema=QUARANTINE_SCHEMA).to_arrow(compat_level=pl.CompatLevel.newest()).schema
)


def raw_json(chunk: pl.DataFrame) -> pl.Series:
    """Each row of a raw chunk (source column names) as a JSON object, values as text."""
    columns = [c for c in chunk.columns if c != ROW]
    if not columns:
        return pl.Series("raw", ["{}"] * chunk.height, dtype=pl.String)
    texts = [as_text(chunk[c]).alias(c) for c in columns]
    return pl.DataFrame(texts).select(pl.struct(pl.all()).struct.json_encode().alias("raw")).to_series()


def row_records(
    raw_chunk: pl.DataFrame,
    failures: pl.DataFrame,
    *,
    context: Mapping[str, Any],
) -> pl.DataFrame:
    """Quarantine records for the failing rows of one raw chunk (one record per row)."""
    if failures.is_empty():
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    grouped = failures.group_by("row", maintain_order=True).agg(
        pl.col("rule").unique(maintain_order=True).alias("rules"),
        pl.col("column").unique(maintain_order=True).alias("columns"),
        pl.col("message").str.join("; ").alias("reason"),
    )
    bad = raw_chunk.filter(pl.col(ROW).is_in(grouped["row"].implode()))
    raw = bad.select(pl.col(ROW).alias("row"), raw_json(bad))
    records = grouped.join(raw, on="row", how="left").with_columns(
        **{k: pl.lit(v, dtype=QUARANTINE_SCHEMA[k]) for k, v in context.items()},
        level=pl.lit("row"),
    )
    return records.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])


def file_record(*, reason: str, rule: str, context: Mapping[str, Any]) -> pl.DataFrame:
    """The quarantine record of a file that could not be ingested at all."""
    record = {
        **dict.fromkeys(QUARANTINE_SCHEMA),
        **context,
        "level": "file",
        "rules": [rule],
        "columns": [],
        "reason": reason,
    }
    return pl.DataFrame([record], schema=QUARANTINE_SCHEMA)


def _dataset(records: pl.DataFrame) -> str:
    """The dataset id of a frame of one dataset's quarantine records."""
    return dataset_id(str(records["lake"][0]), str(records["dataset"][0]))


def write(
    lakehouse: Lakehouse,
    table: str,
    records: Sequence[pl.DataFrame],
    *,
    batches: Mapping[str, int],
    metadata: Mapping[str, Any],
) -> int | None:
    """Append quarantine records once per batch; returns the quarantine table's version.

    Batches whose records were already committed (a retried run) are left out.
    """

    def build(snapshot: DeltaTable | None) -> Append[None] | None:
        pending = {k: v for k, v in batches.items() if transaction_version(snapshot, k) < v}
        frames = [f for f in records if f.height and _dataset(f) in pending]
        if not frames:
            return None
        data: pa.Table = pl.concat(frames).to_arrow(compat_level=pl.CompatLevel.newest())
        return Append(data, transactions=pending, metadata=metadata)

    what = f"the quarantine records of table {table!r}"
    return append_once(lakehouse, lakehouse.quarantine_uri(table), build, what=what).version

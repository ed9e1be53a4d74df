"""Parquet: the footer first (a file that is not parquet fails there, with a clear reason), then
record batches of ``chunk_rows``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lakesync.read.base import (
    ROW,
    FileReadError,
    ReadSpec,
    check_unique_names,
    polars_reason,
    with_rows,
)


def read_parquet(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    # The footer first (cheap): a file that is not parquet at all fails here with a clear reason.
    try:
        footer = pq.read_metadata(path)
        schema = footer.schema.to_arrow_schema()
    except (pa.ArrowInvalid, OSError) as exc:
        msg = f"not a readable parquet file: {exc}"
        raise FileReadError(msg) from None
    check_unique_names(schema.names)
    scan = pl.scan_parquet(path, row_index_name=ROW, row_index_offset=1)
    read = 0
    try:
        # A file of one chunk is collected at once (a third cheaper than a stream of one batch).
        chunks = (
            [scan.collect()]
            if footer.num_rows <= spec.chunk_rows
            else scan.collect_batches(chunk_size=spec.chunk_rows)
        )
        for chunk in chunks:
            if not chunk.height:
                continue
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64))
            read += chunk.height
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"corrupt parquet data after record {read}: {polars_reason(exc)}"
        raise FileReadError(msg) from None
    if not read:
        empty = pl.from_arrow(schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        yield with_rows(empty, 1)

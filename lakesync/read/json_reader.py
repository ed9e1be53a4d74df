"""JSON lines (streamed) and JSON arrays of records (read whole: the format has no record
boundaries)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from lakesync.read.base import ROW, FileReadError, ReadSpec, polars_reason, with_rows


def read_ndjson(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    scan = pl.scan_ndjson(path, infer_schema_length=None, row_index_name=ROW, row_index_offset=1)
    yielded = False
    try:
        for chunk in scan.collect_batches(chunk_size=spec.chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64))
            yielded = True
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        reason = polars_reason(exc)
        hint = (
            " (a JSON array of records? use format: json)"
            if "expected to contain JSON object" in reason
            else ""
        )
        msg = f"not valid JSON lines: {reason}{hint}"
        raise FileReadError(msg) from None
    if not yielded:
        yield pl.DataFrame(schema={ROW: pl.Int64})


def read_json(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    try:
        frame = pl.read_json(path, infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        msg = f"not a JSON array of records: {polars_reason(exc)}"
        raise FileReadError(msg) from None
    frame = with_rows(frame, 1)
    if frame.height == 0:
        yield frame
        return
    for start in range(0, frame.height, spec.chunk_rows):
        yield frame.slice(start, spec.chunk_rows)

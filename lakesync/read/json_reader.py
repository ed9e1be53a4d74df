"""JSON lines (streamed) and JSON arrays of records (read whole: the format has no record
boundaries).

JSON lines are read by polars; when it refuses the file (a malformed line, a key whose values are
objects on some lines and numbers on others), the file is read again line by line
(``ReadSpec.tolerant``): each line that is not a JSON object becomes a broken record (its line,
why, its text), and a key of mixed kinds is read as text (an object's JSON, a number's digits), so
that conform can rescue or reject each value on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.read.base import (
    ROW,
    FileReadError,
    ReadSpec,
    broken_chunk,
    polars_reason,
    tempdir,
    with_rows,
)

_ARRAY_HINT = " (a JSON array of records? use format: json)"


def read_ndjson(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    if spec.tolerant:
        yield from _line_by_line(path, spec, stack)
        return
    scan = pl.scan_ndjson(path, infer_schema_length=None, row_index_name=ROW, row_index_offset=1)
    yielded = False
    try:
        for chunk in scan.collect_batches(chunk_size=spec.chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64))
            yielded = True
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        reason = polars_reason(exc)
        hint = _ARRAY_HINT if "expected to contain JSON object" in reason else ""
        msg = f"not valid JSON lines: {reason}{hint}"
        raise FileReadError(msg, recoverable=True) from None
    if not yielded:
        yield pl.DataFrame(schema={ROW: pl.Int64})


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text" if isinstance(value, str) else "nested"


def _parse(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A line's JSON object, or why it is not one."""
    try:
        value = json.loads(line.decode("utf-8").rstrip("\r\n"))
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 (byte {exc.start} of the line)"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (character {exc.pos + 1})"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__} where a record (an object) was expected"
    return value, None


def _records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(record number, line number, line) of each non-blank line."""
    record = 0
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                record += 1
                yield record, line_number, line


def _line_by_line(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    """Two passes: find the broken lines and the keys of mixed kinds, then hand the good records
    (mixed keys as text, each with its record number) to polars."""
    kinds: dict[str, set[str]] = {}
    broken: list[tuple[int, str, str]] = []
    for record, line_number, line in _records(path):
        value, reason = _parse(line)
        if value is None:
            broken.append((record, f"line {line_number}: {reason}", line.decode("utf-8", "replace").rstrip()))
            continue
        for key, item in value.items():
            kinds.setdefault(key, set()).add(_kind(item))
    bad = {b[0] for b in broken}
    textual = {key for key, seen in kinds.items() if len(seen - {"null"}) > 1}
    good = tempdir(stack) / "records.ndjson"
    count = 0
    with good.open("w", encoding="utf-8") as sink:
        for record, _, line in _records(path):
            if record in bad:
                continue
            value = json.loads(line)
            for key in textual & value.keys():
                if value[key] is not None and not isinstance(value[key], str):
                    value[key] = json.dumps(value[key], ensure_ascii=False)
            value[ROW] = record
            sink.write(json.dumps(value, ensure_ascii=False) + "\n")
            count += 1
    if not count:  # not one JSON object: this is not JSON lines at all
        first = broken[0][1] if broken else "no record"
        hint = _ARRAY_HINT if broken and broken[0][2].lstrip().startswith("[") else ""
        msg = f"not valid JSON lines: {first}{hint}"
        raise FileReadError(msg)
    scan = pl.scan_ndjson(good, infer_schema_length=None)
    try:
        for chunk in scan.collect_batches(chunk_size=spec.chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64)).select(ROW, pl.exclude(ROW))
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        msg = f"not valid JSON lines: {polars_reason(exc)}"
        raise FileReadError(msg) from None
    if broken:
        yield broken_chunk(broken)


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

"""Read one lake file as a stream of polars chunks, whatever its format.

Every chunk carries ``_lakesync_row``: the 1-based number of the record in its file, so a
rejected row can always be found again. Memory stays bounded by ``chunk_rows`` for parquet,
CSV and NDJSON; a JSON array file is read whole (the format has no record boundaries).
Text is read as text: types are decided by the conform stage, never guessed here.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lakesync.config.datasets import Format, FormatOptions

ROW = "_lakesync_row"
"""Column holding each record's 1-based number within its file."""
DEFAULT_CHUNK_ROWS = 131_072
_DUPLICATED = re.compile(r"^(.*)_duplicated_\d+$")


class FileReadError(Exception):
    """A file that cannot be read; ``reason`` says why, ``line`` where when known."""

    def __init__(self, reason: str, *, line: int | None = None, column: str | None = None) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


@dataclass(frozen=True)
class ReadSpec:
    """How to read the files of one dataset."""

    format: Format
    options: FormatOptions
    chunk_rows: int = DEFAULT_CHUNK_ROWS


def read_file(path: Path, spec: ReadSpec) -> Iterator[pl.DataFrame]:
    """Yield the file's records in chunks; at least one chunk (maybe empty, with the columns).

    Raises :class:`FileReadError` for anything that makes the file unreadable, possibly after
    some chunks were yielded (a truncated file is only found out at its end).
    """
    with ExitStack() as stack:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            msg = "the file was deleted or moved after it was listed"
            raise FileReadError(msg) from None
        if size == 0:
            msg = "the file is empty (0 bytes)"
            raise FileReadError(msg)
        if path.name.lower().endswith(".gz"):
            path = _gunzip(path, stack)
        if spec.format == "parquet":
            yield from _parquet(path, spec)
        elif spec.format == "csv":
            yield from _csv(path, spec, stack)
        elif spec.format == "ndjson":
            yield from _ndjson(path, spec)
        else:
            yield from _json(path, spec)


def _tempdir(stack: ExitStack) -> Path:
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lakesync-")))


def _gunzip(path: Path, stack: ExitStack) -> Path:
    """Decompress to a temporary file, so even huge files stream with bounded memory."""
    target = _tempdir(stack) / path.name[: -len(".gz")]
    try:
        with gzip.open(path, "rb") as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, length=1 << 20)
    except (OSError, EOFError, zlib.error) as exc:
        msg = f"corrupt gzip data: {exc}"
        raise FileReadError(msg) from None
    if target.stat().st_size == 0:
        msg = "the file is empty once decompressed"
        raise FileReadError(msg)
    return target


def _with_rows(frame: pl.DataFrame, start: int) -> pl.DataFrame:
    return frame.with_columns(pl.int_range(start, start + frame.height, dtype=pl.Int64).alias(ROW))


def _parquet(path: Path, spec: ReadSpec) -> Iterator[pl.DataFrame]:
    # The footer first (cheap): a file that is not parquet at all fails here with a clear reason.
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        msg = f"not a readable parquet file: {exc}"
        raise FileReadError(msg) from None
    _check_unique_names(schema.names)
    scan = pl.scan_parquet(path, row_index_name=ROW, row_index_offset=1)
    read = 0
    try:
        for chunk in scan.collect_batches(chunk_size=spec.chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64))
            read += chunk.height
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"corrupt parquet data after record {read}: {_polars_reason(exc)}"
        raise FileReadError(msg) from None
    if not read:
        empty = pl.from_arrow(schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        yield _with_rows(empty, 1)


def _check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            msg = f"the column name {name!r} appears more than once"
            raise FileReadError(msg)
        seen.add(name)


def _transcode(path: Path, encoding: str, stack: ExitStack) -> Path:
    """Re-encode a non-UTF-8 text file as UTF-8 in a temporary file, streaming."""
    target = _tempdir(stack) / path.name
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with path.open("rb") as source, target.open("w", encoding="utf-8", newline="") as sink:
        while block := source.read(1 << 20):
            try:
                sink.write(decoder.decode(block))
            except UnicodeDecodeError as exc:
                position = offset + exc.start
                msg = f"byte {position} is not valid {encoding}: {exc.reason}"
                raise FileReadError(msg, line=_line_at(path, position)) from None
            offset += len(block)
        sink.write(decoder.decode(b"", final=True))
    return target


def _first_undecodable(path: Path, encoding: str) -> FileReadError | None:
    """The first byte that is not valid ``encoding``, as an error naming its line (slow; errors only)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                position = offset + exc.start
                msg = f"byte {position} is not valid {encoding}: {exc.reason}"
                return FileReadError(msg, line=_line_at(path, position))
            offset += len(block)
    return None


def _line_at(path: Path, offset: int) -> int:
    """The 1-based line holding byte ``offset`` of a file."""
    line = 1
    remaining = offset
    with path.open("rb") as handle:
        while remaining > 0 and (block := handle.read(min(remaining, 1 << 20))):
            line += block.count(b"\n")
            remaining -= len(block)
    return line


def _polars_reason(exc: Exception) -> str:
    """A polars error's first paragraph, without its tuning hints (they do not apply here)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.split("\n\n")[0].replace("\n", "\\n")


def _locate_csv_problem(path: Path, options: FormatOptions) -> tuple[int, str] | None:
    """Where a CSV stops being well-formed, found with Python's strict csv reader.

    Returns the line the offending record starts on and why; only used after polars has
    refused the file, so its cost does not matter.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(
            handle,
            delimiter=options.delimiter,
            quotechar=options.quote or '"',
            quoting=csv.QUOTE_MINIMAL if options.quote else csv.QUOTE_NONE,
            strict=True,
        )
        expected: int | None = None
        start = 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                return start, f"malformed record: {exc} (an unclosed quote?)"
            if expected is None:
                expected = len(record)
            elif record and len(record) != expected:
                return start, f"a record has {len(record)} fields, the header has {expected}"
            start = reader.line_num + 1


def _csv_error(path: Path, options: FormatOptions, exc: Exception) -> FileReadError:
    """Turn a polars CSV error into one that says where the file goes wrong."""
    if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
        undecodable = _first_undecodable(path, "utf-8")
        if undecodable is not None:
            return undecodable
    located = _locate_csv_problem(path, options)
    if located is not None:
        return FileReadError(located[1], line=located[0])
    return FileReadError(_polars_reason(exc))


def _balanced_quotes(path: Path, quote: str) -> bool:
    """Whether a file holds an even number of quote characters (escaped quotes come in pairs).

    An odd count means a quote is never closed; polars would then silently read the rest of
    the file into one value.
    """
    mark = quote.encode()
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            count += block.count(mark)
    return count % 2 == 0


def _csv(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    options = spec.options
    if options.encoding != "utf-8":
        path = _transcode(path, options.encoding, stack)
    if options.quote and not _balanced_quotes(path, options.quote):
        located = _locate_csv_problem(path, options)
        line, reason = located if located else (None, "a quote is opened and never closed")
        raise FileReadError(reason, line=line)
    scan = pl.scan_csv(
        path,
        separator=options.delimiter,
        quote_char=options.quote,
        has_header=options.header,
        infer_schema=False,
        null_values=[v for v in options.null_values if v != ""] or None,
        empty_string_is_null="" in options.null_values,
        encoding="utf8",
        row_index_name=ROW,
        row_index_offset=1,
        raise_if_empty=False,
    )
    try:
        names = [n for n in scan.collect_schema().names() if n != ROW]
    except pl.exceptions.ComputeError as exc:
        raise _csv_error(path, options, exc) from None
    if len(names) == 1 and options.header:
        others = [d for d in (";", ",", "\t", "|") if d != options.delimiter and d in names[0]]
        if others:
            msg = (
                f"the header is one column {names[0][:80]!r}: the delimiter is probably {others[0]!r}, "
                f"not {options.delimiter!r} (set options.delimiter for this dataset)"
            )
            raise FileReadError(msg, line=1)
    for name in names:
        match = _DUPLICATED.match(name)
        if match and match.group(1) in names:
            msg = f"the column name {match.group(1)!r} appears more than once in the header"
            raise FileReadError(msg)
    if not options.header:  # polars numbers from 0; people (and spreadsheets) from 1
        renamed = {name: f"column_{i}" for i, name in enumerate(names, start=1)}
        scan = scan.rename(renamed)
        names = list(renamed.values())
    yielded = False
    try:
        for chunk in scan.collect_batches(chunk_size=spec.chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64))
            yielded = True
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise _csv_error(path, options, exc) from None
    if not yielded:
        yield pl.DataFrame(schema={ROW: pl.Int64, **dict.fromkeys(names, pl.String)})


def _ndjson(path: Path, spec: ReadSpec) -> Iterator[pl.DataFrame]:
    scan = pl.scan_ndjson(path, infer_schema_length=None, row_index_name=ROW, row_index_offset=1)
    yielded = False
    try:
        for chunk in scan.collect_batches(chunk_size=spec.chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64))
            yielded = True
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        reason = _polars_reason(exc)
        hint = (
            " (a JSON array of records? use format: json)"
            if "expected to contain JSON object" in reason
            else ""
        )
        msg = f"not valid JSON lines: {reason}{hint}"
        raise FileReadError(msg) from None
    if not yielded:
        yield pl.DataFrame(schema={ROW: pl.Int64})


def _json(path: Path, spec: ReadSpec) -> Iterator[pl.DataFrame]:
    try:
        frame = pl.read_json(path, infer_schema_length=None)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError) as exc:
        msg = f"not a JSON array of records: {_polars_reason(exc)}"
        raise FileReadError(msg) from None
    frame = _with_rows(frame, 1)
    if frame.height == 0:
        yield frame
        return
    for start in range(0, frame.height, spec.chunk_rows):
        yield frame.slice(start, spec.chunk_rows)

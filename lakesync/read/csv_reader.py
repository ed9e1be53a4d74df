"""CSV: text stays text (the contract decides types); any encoding; a malformed file is found out
with the line its bad record starts on.

A record with more fields than the header makes polars refuse the file; it is then read record by
record (``ReadSpec.tolerant``) with Python's strict csv reader: such a record becomes a broken
record (its line, why, its text), the others are read as usual. A record with fewer fields is read
with nulls for the missing trailing fields. An unclosed quote or undecodable bytes still make the
whole file unreadable: nothing after them can be trusted.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

import polars as pl

from lakesync.config.datasets import FormatOptions
from lakesync.read.base import DUPLICATED, ROW, FileReadError, ReadSpec, broken_chunk, polars_reason, tempdir

_TOO_MANY = "a record has more fields than the header"


def _transcode(path: Path, encoding: str, stack: ExitStack) -> Path:
    """Re-encode a non-UTF-8 text file as UTF-8 in a temporary file, streaming."""
    target = tempdir(stack) / path.name
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


def _reader(handle: TextIO, options: FormatOptions) -> Any:
    return csv.reader(
        handle,
        delimiter=options.delimiter,
        quotechar=options.quote or '"',
        quoting=csv.QUOTE_MINIMAL if options.quote else csv.QUOTE_NONE,
        strict=True,
    )


def _locate_csv_problem(path: Path, options: FormatOptions) -> tuple[int, str] | None:
    """Where a CSV stops being well-formed, found with Python's strict csv reader.

    Returns the line the offending record starts on and why; only used after polars has
    refused the file, so its cost does not matter.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = _reader(handle, options)
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
            elif record and len(record) > expected:  # fewer fields read as nulls
                return start, f"{_TOO_MANY} ({len(record)} fields, the header has {expected})"
            start = reader.line_num + 1


def _csv_error(path: Path, options: FormatOptions, exc: Exception) -> FileReadError:
    """Turn a polars CSV error into one that says where the file goes wrong."""
    if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
        undecodable = _first_undecodable(path, "utf-8")
        if undecodable is not None:
            return undecodable
    located = _locate_csv_problem(path, options)
    if located is not None:
        return FileReadError(located[1], line=located[0], recoverable=located[1].startswith(_TOO_MANY))
    return FileReadError(polars_reason(exc))


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


def read_csv(path: Path, spec: ReadSpec, stack: ExitStack) -> Iterator[pl.DataFrame]:
    options = spec.options
    if options.encoding != "utf-8":
        path = _transcode(path, options.encoding, stack)
    if options.quote and not _balanced_quotes(path, options.quote):
        located = _locate_csv_problem(path, options)
        line, reason = located if located else (None, "a quote is opened and never closed")
        raise FileReadError(reason, line=line)
    if not spec.tolerant:
        yield from _chunks(_scan(path, options), path, options, spec.chunk_rows)
        return
    rewritten, broken = _record_by_record(path, options, stack)
    yield from _chunks(_scan(rewritten, _REWRITTEN, numbered=True), path, options, spec.chunk_rows)
    if broken:
        yield broken_chunk(broken)


_REWRITTEN = FormatOptions()
"""How a file rewritten record by record is written: ``,``, ``"``, a header."""


def _scan(path: Path, options: FormatOptions, *, numbered: bool = False) -> pl.LazyFrame:
    """The CSV as polars reads it: all text. A ``numbered`` file carries its records' numbers in
    its first column; otherwise polars numbers them."""
    return pl.scan_csv(
        path,
        separator=options.delimiter,
        quote_char=options.quote,
        has_header=options.header,
        infer_schema=False,
        null_values=[v for v in options.null_values if v != ""] or None,
        empty_string_is_null="" in options.null_values,
        encoding="utf8",
        row_index_name=None if numbered else ROW,
        row_index_offset=1,
        raise_if_empty=False,
    )


def _chunks(
    scan: pl.LazyFrame, source: Path, options: FormatOptions, chunk_rows: int
) -> Iterator[pl.DataFrame]:
    """The chunks of a scan, errors located in the ``source`` file."""
    try:
        names = [n for n in scan.collect_schema().names() if n != ROW]
    except pl.exceptions.ComputeError as exc:
        raise _csv_error(source, options, exc) from None
    _check_header(names, options)
    if not options.header:  # polars numbers from 0; people (and spreadsheets) from 1
        renamed = {name: f"column_{i}" for i, name in enumerate(names, start=1)}
        scan = scan.rename(renamed)
        names = list(renamed.values())
    yielded = False
    try:
        for chunk in scan.collect_batches(chunk_size=chunk_rows):
            yield chunk.with_columns(pl.col(ROW).cast(pl.Int64)).select(ROW, *names)
            yielded = True
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise _csv_error(source, options, exc) from None
    if not yielded:
        yield pl.DataFrame(schema={ROW: pl.Int64, **dict.fromkeys(names, pl.String)})


def _check_header(names: list[str], options: FormatOptions) -> None:
    """A header of one column that holds another delimiter, or a name twice, is a wrong file."""
    if len(names) == 1 and options.header:
        others = [d for d in (";", ",", "\t", "|") if d != options.delimiter and d in names[0]]
        if others:
            msg = (
                f"the header is one column {names[0][:80]!r}: the delimiter is probably {others[0]!r}, "
                f"not {options.delimiter!r} (set options.delimiter for this dataset)"
            )
            raise FileReadError(msg, line=1)
    for name in names:
        match = DUPLICATED.match(name)
        if match and match.group(1) in names:
            msg = f"the column name {match.group(1)!r} appears more than once in the header"
            raise FileReadError(msg)


def _record_by_record(
    path: Path, options: FormatOptions, stack: ExitStack
) -> tuple[Path, list[tuple[int, str, str]]]:
    """The file's records rewritten (``,``-separated, numbered, with a header), except those with
    more fields than the header: those are returned as broken records (number, why, text)."""
    rewritten = tempdir(stack) / "records.csv"
    broken: list[tuple[int, str, str]] = []
    written = 0
    with (
        path.open(encoding="utf-8", newline="") as handle,
        rewritten.open("w", encoding="utf-8", newline="") as sink,
    ):
        reader, writer = _reader(handle, options), csv.writer(sink)
        start, record, expected = 1, 0, None
        try:
            for fields in reader:
                if expected is None:  # the header (or, without one, the first record's width)
                    expected = len(fields)
                    names = fields if options.header else [f"column_{i}" for i in range(1, expected + 1)]
                    writer.writerow([ROW, *names])
                    if options.header:
                        start = reader.line_num + 1
                        continue
                if fields:
                    record += 1
                    if len(fields) > expected:
                        why = f"line {start}: {_TOO_MANY} ({len(fields)} fields, the header has {expected})"
                        broken.append((record, why, options.delimiter.join(fields)))
                    else:
                        writer.writerow([record, *fields])
                        written += 1
                start = reader.line_num + 1
        except csv.Error as exc:
            msg = f"malformed record: {exc} (an unclosed quote?)"
            raise FileReadError(msg, line=start) from None
    if broken and not written:  # not one record fits the header: the file is not what it should be
        raise FileReadError(broken[0][1])
    return rewritten, broken

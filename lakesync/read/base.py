"""What every reader shares: the record number column, the read settings, the error a file that
cannot be read raises, and small helpers."""

from __future__ import annotations

import re
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lakesync.config.datasets import Format, FormatOptions

ROW = "_lakesync_row"
"""Column holding each record's 1-based number within its file."""
DEFAULT_CHUNK_ROWS = 131_072
DUPLICATED = re.compile(r"^(.*)_duplicated_\d+$")
BROKEN = "_lakesync_broken"
"""In a chunk of records that could not be parsed: why (``line 5: not valid JSON: ...``)."""
RECORD = "_lakesync_record"
"""In a chunk of records that could not be parsed: the record's text as it is in the file."""
MAX_RECORD_CHARS = 10_000
"""A broken record's text is kept up to this length."""


class FileReadError(Exception):
    """A file that cannot be read; ``reason`` says why, ``line`` where when known.

    ``recoverable``: the file can be read record by record (``ReadSpec.tolerant``), putting the
    records that cannot be parsed aside.
    """

    def __init__(
        self, reason: str, *, line: int | None = None, column: str | None = None, recoverable: bool = False
    ) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.recoverable = recoverable
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
    tolerant: bool = False
    """Read record by record: records that cannot be parsed come as *broken* rows (``ROW``,
    :data:`BROKEN`, :data:`RECORD`) in a chunk of their own, the others as usual."""


def broken_chunk(broken: list[tuple[int, str, str]]) -> pl.DataFrame:
    """The chunk of records that could not be parsed: (record number, why, text)."""
    return pl.DataFrame(
        {
            ROW: [b[0] for b in broken],
            BROKEN: [b[1] for b in broken],
            RECORD: [b[2][:MAX_RECORD_CHARS] for b in broken],
        },
        schema={ROW: pl.Int64, BROKEN: pl.String, RECORD: pl.String},
    )


def tempdir(stack: ExitStack) -> Path:
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lakesync-")))


def with_rows(frame: pl.DataFrame, start: int) -> pl.DataFrame:
    return frame.with_columns(pl.int_range(start, start + frame.height, dtype=pl.Int64).alias(ROW))


def check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            msg = f"the column name {name!r} appears more than once"
            raise FileReadError(msg)
        seen.add(name)


def polars_reason(exc: Exception) -> str:
    """A polars error's first paragraph, without its tuning hints (they do not apply here)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.split("\n\n")[0].replace("\n", "\\n")

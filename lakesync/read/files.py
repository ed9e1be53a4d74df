"""Read one lake file as a stream of polars chunks, whatever its format.

Every chunk carries ``_lakesync_row``: the 1-based number of the record in its file, so a
rejected row can always be found again. Memory stays bounded by ``chunk_rows`` for parquet,
CSV and NDJSON; a JSON array file is read whole (the format has no record boundaries).
Text is read as text: types are decided by the conform stage, never guessed here.

A new format is one reader (``path, spec, stack -> chunks``) registered in :data:`READERS`, and
its name in ``Format`` (:mod:`lakesync.config.datasets`).
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from lakesync.read.base import FileReadError, ReadSpec, tempdir
from lakesync.read.csv_reader import read_csv
from lakesync.read.json_reader import read_json, read_ndjson
from lakesync.read.parquet_reader import read_parquet

Reader = Callable[[Path, ReadSpec, ExitStack], Iterator[pl.DataFrame]]
READERS: dict[str, Reader] = {
    "parquet": read_parquet,
    "csv": read_csv,
    "ndjson": read_ndjson,
    "json": read_json,
}
"""Format name (``format:`` of a dataset) -> its reader."""


def read_file(path: Path, spec: ReadSpec) -> Generator[pl.DataFrame, None, None]:
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
        yield from READERS[spec.format](path, spec, stack)


def _gunzip(path: Path, stack: ExitStack) -> Path:
    """Decompress to a temporary file, so even huge files stream with bounded memory."""
    target = tempdir(stack) / path.name[: -len(".gz")]
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

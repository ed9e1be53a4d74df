"""A merge round's rows on local disk while its winners are picked from their keys alone.

A merge must know every version of a key in the round before it writes any row, but holding the
round's rows (and delta-rs holding them again) costs several times their size. The rows are
streamed once into an Arrow IPC file in a temporary folder (``$TMPDIR``), only the columns the
winner rule needs are kept in memory, and the rows are streamed back filtered to the winners
(or the losers). Memory is bounded by the keys, not the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

POSITION = "__lakesync_position"
"""A row's position in the round (landing order): what the winners are picked by."""


@dataclass(frozen=True)
class Spilled:
    path: Path
    schema: pa.Schema
    keys: pl.DataFrame
    """The columns the winner rule needs, one row per spilled row, with its ``POSITION``."""

    @property
    def rows(self) -> int:
        return self.keys.height

    def read(self, positions: pl.Series) -> Iterator[pa.RecordBatch]:
        """The rows at ``positions`` (ascending), streamed from disk in landing order."""
        keep = pl.zeros(self.rows, dtype=pl.Boolean, eager=True).scatter(positions, True)
        with pa.OSFile(str(self.path)) as file:  # read, not memory-mapped: pages do not stay resident
            reader = pa.ipc.open_file(file)
            offset = 0
            for index in range(reader.num_record_batches):
                batch = reader.get_batch(index)
                mask = keep.slice(offset, batch.num_rows)
                offset += batch.num_rows
                if mask.all():
                    yield batch
                    continue
                if not mask.any():
                    continue
                # Filtered by polars: Arrow's own kernels cannot take from string views.
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                kept = frame.filter(mask).to_arrow(compat_level=pl.CompatLevel.newest())
                yield from kept.cast(self.schema).to_batches()

    def reader(self, positions: pl.Series) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.read(positions))

    def frame(self, positions: pl.Series) -> pl.DataFrame:
        """The rows at ``positions`` (ascending) as one frame, with their ``POSITION``."""
        table = pa.Table.from_batches(list(self.read(positions)), schema=self.schema)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame.with_columns(positions.alias(POSITION))


class Spill:
    """Rows being written to ``folder``, with ``columns`` of them kept in memory."""

    def __init__(self, schema: pa.Schema, folder: Path, columns: Sequence[str]) -> None:
        self.schema = schema
        self.path = folder / "rows.arrow"
        self.columns = list(dict.fromkeys(columns))
        self._kept: list[pl.DataFrame] = []
        self._sink = pa.OSFile(str(self.path), "wb")
        # Uncompressed: measured faster than lz4 on a local disk (the file lives for one commit).
        self._writer = pa.ipc.new_file(self._sink, schema, options=pa.ipc.IpcWriteOptions(compression=None))

    def tee(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches``, each written to disk as it passes."""
        for batch in batches:
            self._writer.write_batch(batch)
            part = pl.from_arrow(batch.select(self.columns))
            assert isinstance(part, pl.DataFrame)
            self._kept.append(part)
            yield batch

    def keys(self) -> pl.DataFrame:
        """The kept columns of every row written so far, with its ``POSITION``."""
        if len(self._kept) != 1:
            empty = pl.DataFrame(schema=_polars(self.schema, self.columns))
            self._kept = [pl.concat(self._kept, rechunk=True) if self._kept else empty]
        return self._kept[0].with_row_index(POSITION)

    def finish(self, rest: Iterable[pa.RecordBatch] = ()) -> Spilled:
        """Write ``rest`` too and close the file."""
        for _ in self.tee(rest):
            pass
        self._writer.close()
        self._sink.close()
        return Spilled(self.path, self.schema, self.keys())


def spill(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, folder: Path, columns: Sequence[str]
) -> Spilled:
    """Write ``batches`` to ``folder`` and keep ``columns`` of them in memory."""
    return Spill(schema, folder, columns).finish(batches)


def _polars(schema: pa.Schema, columns: Sequence[str]) -> dict[str, pl.DataType]:
    empty = pl.from_arrow(schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return {c: empty.schema[c] for c in columns}

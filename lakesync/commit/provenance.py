"""The provenance columns of unified rows: where each row came from, by the configured names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
from deltalake import ColumnProperties, WriterProperties

from lakesync.config.models import LakesyncConfig
from lakesync.read import ROW


@dataclass(frozen=True)
class Provenance:
    """The provenance columns of unified rows, by the names the configuration gives them.

    ``file`` (``<lake>/<path in the lake>``) and ``row`` (record number in the file) identify
    a row's source; ``lake``, ``batch`` (the dataset's batch number) and ``ingested_at`` (when
    the batch was committed) are optional. The constant ones are written plain without
    statistics (measured cheapest, ``make bench``); row numbers delta-encoded.
    """

    file: str = "_lakesync_file"
    row: str = "_lakesync_row"
    lake: str | None = "_lakesync_lake"
    batch: str | None = "_lakesync_batch"
    ingested_at: str | None = "_lakesync_ingested_at"

    @classmethod
    def of(cls, config: LakesyncConfig) -> Provenance:
        settings = config.lakehouse.provenance
        return cls(
            file=settings.file,
            row=settings.row,
            lake=settings.lake if isinstance(settings.lake, str) else None,
            batch=settings.batch if isinstance(settings.batch, str) else None,
            ingested_at=settings.ingested_at if isinstance(settings.ingested_at, str) else None,
        )

    def schema(self) -> dict[str, pl.DataType]:
        types: dict[str | None, pl.DataType] = {
            self.file: pl.String(),
            self.row: pl.Int64(),
            self.lake: pl.String(),
            self.batch: pl.Int64(),
            self.ingested_at: pl.Datetime("us", "UTC"),
        }
        return {name: dtype for name, dtype in types.items() if name is not None}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.schema())

    def writer_properties(self) -> WriterProperties:
        """Provenance is written for lookups, not data skipping: no statistics. Compression must
        be named: properties without it make delta-rs write uncompressed files."""
        plain = ColumnProperties(statistics_enabled="NONE", dictionary_enabled=False)
        columns = dict.fromkeys(self.names, plain)
        columns[self.row] = ColumnProperties(
            dictionary_enabled=False, encoding="DELTA_BINARY_PACKED", statistics_enabled="NONE"
        )
        return WriterProperties(compression="SNAPPY", column_properties=columns)

    def add(
        self, frame: pl.DataFrame, *, lake: str, path: str | pl.Series, batch: int, at: datetime
    ) -> pl.DataFrame:
        """``frame`` (with the reader's ``_lakesync_row``) with the provenance columns of its rows:
        their source ``lake`` and ``path`` (one file's, or a path per row), the ``batch`` that
        commits them, when (``at``)."""
        source = (
            pl.lit(source_file(lake, path), dtype=pl.String)
            if isinstance(path, str)
            else (pl.lit(f"{lake}/") + pl.lit(path, dtype=pl.String))
        )
        micros = int(at.timestamp()) * 1_000_000 + at.microsecond  # a datetime literal costs 0.4 ms
        values: dict[str | None, pl.Expr] = {
            self.file: source,
            self.lake: pl.lit(lake, dtype=pl.String),
            self.batch: pl.lit(batch, dtype=pl.Int64),
            self.ingested_at: pl.lit(micros, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        }
        if self.row != ROW:
            frame = frame.rename({ROW: self.row})
        return frame.with_columns(**{k: v for k, v in values.items() if k is not None})


def source_file(lake: str, path: str) -> str:
    """The ``file`` provenance of a row: lake name, then the file's path in the lake."""
    return f"{lake}/{path}"

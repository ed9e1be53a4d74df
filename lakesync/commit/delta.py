"""Stage 5: commit conformed rows to a unified Delta table, once per batch.

Each commit carries one Delta application transaction per dataset batch it contains
(``app_id`` = ``<lake>.<dataset>``, version = the batch number). The caller checks those
versions on the same snapshot it commits against, so a batch already committed is never
committed again, and a concurrent commit of the same batch fails this one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import ColumnProperties, DeltaTable, WriterProperties
from deltalake.exceptions import CommitFailedError

from lakesync.config.models import LakesyncConfig
from lakesync.conform.pii import PiiPolicy
from lakesync.conform.target import TargetSchema
from lakesync.lakehouse import Lakehouse, commit_properties, transaction_version
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
        self,
        frame: pl.DataFrame,
        *,
        lake: str,
        path: str,
        batch: int,
        ingested_at: datetime,
        columns: Sequence[str],
    ) -> pl.DataFrame:
        """``frame`` (with the reader's ``_lakesync_row``) in output column order, provenance added."""
        values: dict[str | None, pl.Expr] = {
            self.file: pl.lit(source_file(lake, path), dtype=pl.String),
            self.lake: pl.lit(lake, dtype=pl.String),
            self.batch: pl.lit(batch, dtype=pl.Int64),
            self.ingested_at: pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")),
        }
        if self.row != ROW:
            frame = frame.rename({ROW: self.row})
        return frame.with_columns(**{k: v for k, v in values.items() if k is not None}).select(columns)


def source_file(lake: str, path: str) -> str:
    """The ``file`` provenance of a row: lake name, then the file's path in the lake."""
    return f"{lake}/{path}"


def output_schema(
    target: TargetSchema, pii: PiiPolicy | None = None, provenance: Provenance | None = None
) -> dict[str, pl.DataType]:
    """The polars schema of rows as committed: target columns (personal data as stored) then
    provenance."""
    columns = target.polars_schema()
    return {**(pii.stored_schema(columns) if pii else columns), **(provenance or Provenance()).schema()}


def arrow_schema(schema: Mapping[str, pl.DataType]) -> pa.Schema:
    """The Arrow schema polars produces for ``schema`` (what every streamed batch must match)."""
    empty = pl.DataFrame(schema=dict(schema))
    return empty.to_arrow(compat_level=pl.CompatLevel.newest()).schema


def to_batches(frame: pl.DataFrame, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Record batches of ``frame`` exactly matching ``schema`` (no copy of strings)."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    if not table.schema.equals(schema):
        table = table.cast(schema)
    yield from table.to_batches()


def table_polars_schema(table: DeltaTable | None) -> dict[str, pl.DataType] | None:
    """The polars schema of a Delta table's current version (``None`` when there is none)."""
    if table is None:
        return None
    arrow = pa.schema(table.schema().to_arrow())
    empty = pl.from_arrow(arrow.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return dict(empty.schema)


def append(
    lakehouse: Lakehouse,
    uri: str,
    snapshot: DeltaTable,
    reader: pa.RecordBatchReader,
    *,
    app_transactions: Mapping[str, int],
    metadata: Mapping[str, Any],
    partition_by: list[str],
    evolve: bool,
    provenance: Provenance,
) -> int:
    """Append a stream of rows in one commit; returns the new table version."""
    lakehouse.append(
        snapshot,
        reader,
        app_transactions=app_transactions,
        metadata=metadata,
        partition_by=partition_by,
        schema_mode="merge" if evolve else None,
        writer_properties=provenance.writer_properties(),
    )
    table = lakehouse.open(uri)
    assert table is not None
    return table.version()


def ensure_table(
    lakehouse: Lakehouse,
    uri: str,
    schema: pa.Schema,
    *,
    partition_by: list[str],
    change_data_feed: bool,
) -> DeltaTable:
    """The table at ``uri``, created empty with ``schema`` if there is none yet.

    Batches are checked against, and committed to, one snapshot of an existing table: a
    table created on the fly by the first write could hide a concurrent writer's commit.
    """
    existing = lakehouse.open(uri)
    if existing is not None:
        return existing
    with contextlib.suppress(CommitFailedError):  # another writer created it at the same moment
        DeltaTable.create(
            uri,
            schema,
            mode="ignore",
            partition_by=partition_by or None,
            configuration={"delta.enableChangeDataFeed": "true"} if change_data_feed else None,
            storage_options=dict(lakehouse.storage_options) or None,
        )
    created = lakehouse.open(uri)
    assert created is not None
    return created


def merge(
    lakehouse: Lakehouse,
    uri: str,
    snapshot: DeltaTable,
    rows: pa.Table,
    *,
    keys: Sequence[str],
    latest_by: str | None,
    app_transactions: Mapping[str, int],
    metadata: Mapping[str, Any],
    partition_by: list[str],
    evolve: bool,
    provenance: Provenance,
) -> int:
    """Upsert ``rows`` on ``keys`` in one commit; returns the new table version.

    ``rows`` must hold each key once (see :mod:`lakesync.commit.winners`). With
    ``latest_by``, a row only replaces one that is not later. Merge tables keep Delta's
    change data feed, so every version a later batch replaced stays readable.
    """
    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    later = f"t.`{latest_by}` IS NULL OR s.`{latest_by}` >= t.`{latest_by}`" if latest_by else None
    (
        snapshot.merge(
            rows,
            predicate,
            source_alias="s",
            target_alias="t",
            merge_schema=evolve,
            writer_properties=provenance.writer_properties(),
            commit_properties=commit_properties(app_transactions, metadata),
        )
        .when_matched_update_all(predicate=later)
        .when_not_matched_insert_all()
        .execute()
    )
    return snapshot.version()


def append_once(
    lakehouse: Lakehouse,
    uri: str,
    data: pa.Table,
    *,
    app_transactions: Mapping[str, int],
    metadata: Mapping[str, Any],
) -> None:
    """Append ``data`` unless a commit with these application transactions already did."""
    for _ in range(16):
        snapshot = lakehouse.open(uri)
        if snapshot is not None and all(
            transaction_version(snapshot, app) >= version for app, version in app_transactions.items()
        ):
            return
        try:
            lakehouse.append(
                snapshot if snapshot is not None else uri,
                data,
                app_transactions=app_transactions,
                metadata=metadata,
                schema_mode="merge",
            )
        except CommitFailedError:
            continue
        return
    msg = f"could not append to {uri} (concurrent commits)"
    raise RuntimeError(msg)

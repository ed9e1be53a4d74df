"""Stage 5: commit conformed rows to a unified Delta table, once per batch.

Each commit carries one Delta application transaction per dataset batch it contains
(``app_id`` = ``<lake>.<dataset>``, version = the batch number). The caller checks those
versions on the same snapshot it commits against, so a batch already committed is never
committed again, and a concurrent commit of the same batch fails this one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties
from deltalake.exceptions import CommitFailedError

from lakesync.commit.provenance import Provenance
from lakesync.conform.pii import PiiPolicy
from lakesync.conform.target import TargetSchema
from lakesync.state.lakehouse import Lakehouse, Stamp, WriteOptions


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


def table_polars_schema(table: DeltaTable | None) -> dict[str, pl.DataType] | None:
    """The polars schema of a Delta table's current version (``None`` when there is none)."""
    if table is None:
        return None
    arrow = pa.schema(table.schema().to_arrow())
    empty = pl.from_arrow(arrow.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return dict(empty.schema)


@dataclass(frozen=True)
class DeltaTarget:
    """A unified table, as one commit sees it."""

    lakehouse: Lakehouse
    uri: str
    snapshot: DeltaTable
    """The snapshot whose transaction versions were checked: the commit is made against it, so a
    concurrent commit of the same batch makes this one fail instead of duplicating it."""
    partition_by: list[str]
    evolve: bool
    """The commit adds columns (schema evolution)."""
    writer: WriterProperties


def append(target: DeltaTarget, reader: pa.RecordBatchReader, stamp: Stamp) -> int:
    """Append a stream of rows in one commit; returns the new table version."""
    options = WriteOptions(target.partition_by, "merge" if target.evolve else None, target.writer)
    target.lakehouse.append(target.snapshot, reader, stamp=stamp, options=options)
    table = target.lakehouse.open(target.uri)
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


@dataclass(frozen=True)
class MergeOn:
    """How a merge matches rows: on ``keys``; with ``latest_by`` a row only replaces one that is not
    later; ``bounds`` are conditions on ``t`` true for every target row that can match, so Delta
    skips the target's files outside them."""

    keys: Sequence[str]
    latest_by: str | None = None
    bounds: Sequence[str] = ()


def merge(target: DeltaTarget, rows: pa.Table | pa.RecordBatchReader, stamp: Stamp, on: MergeOn) -> int:
    """Upsert ``rows`` on ``on.keys`` in one commit; returns the new table version.

    ``rows`` must hold each key once (see :mod:`lakesync.commit.winners`); a stream is not held
    in memory. Merge tables keep Delta's change data feed, so every version a later batch
    replaced stays readable.
    """
    predicate = " AND ".join([*(f"t.`{k}` = s.`{k}`" for k in on.keys), *on.bounds])
    latest_by = on.latest_by
    later = f"t.`{latest_by}` IS NULL OR s.`{latest_by}` >= t.`{latest_by}`" if latest_by else None
    (
        target.snapshot.merge(
            rows,
            predicate,
            source_alias="s",
            target_alias="t",
            merge_schema=target.evolve,
            writer_properties=target.writer,
            commit_properties=stamp.properties(),
        )
        .when_matched_update_all(predicate=later)
        .when_not_matched_insert_all()
        .execute()
    )
    return target.snapshot.version()

"""Commit a round's rows: a streamed append, or a merge of the latest row per key.

Merge tables keep every version a merge does not keep in ``_superseded/<table>`` (with the row
that beat it and why), written before the merge with the same application transactions: a
crash in between loses no loser, and a retry adds none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.commit import delta
from lakesync.commit.delta import DeltaTarget
from lakesync.commit.provenance import Provenance
from lakesync.commit.winners import pick_winners
from lakesync.config.models import Table
from lakesync.conform.pii import PiiPolicy
from lakesync.state.append import Append, append_once
from lakesync.state.lakehouse import Stamp, transaction_version


@dataclass(frozen=True)
class RowsTarget:
    """A unified table and what its rows need to be committed."""

    delta: DeltaTarget
    settings: Table
    superseded_uri: str
    provenance: Provenance
    pii: PiiPolicy


@dataclass(frozen=True)
class Committed:
    version: int
    superseded: int = 0
    """Rows of this round a later row with the same key replaced (merge tables)."""


def commit_rows(
    target: RowsTarget, batches: Iterator[pa.RecordBatch], schema: pa.Schema, stamp: Stamp
) -> Committed:
    """Commit the rows in one Delta commit carrying ``stamp``'s application transactions."""
    if target.settings.mode == "append":
        return Committed(
            delta.append(target.delta, pa.RecordBatchReader.from_batches(schema, batches), stamp)
        )
    rows = pa.Table.from_batches(list(batches), schema=schema)
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    settings, provenance = target.settings, target.provenance
    picked = pick_winners(
        frame,
        keys=settings.keys,
        latest_by=settings.latest_by,
        existing=_current_versions(target.delta.snapshot, frame, settings, provenance),
        source=(provenance.file, provenance.row),
    )
    if picked.losers.height:
        _keep_losers(target, picked.losers, stamp)
    if picked.rows.height == 0:
        empty = pa.RecordBatchReader.from_batches(schema, iter([]))
        return Committed(delta.append(target.delta, empty, stamp))
    latest = picked.rows.to_arrow(compat_level=pl.CompatLevel.newest()).cast(schema)
    version = delta.merge(target.delta, latest, stamp, keys=settings.keys, latest_by=settings.latest_by)
    return Committed(version, picked.losers.height)


def _keep_losers(target: RowsTarget, losers: pl.DataFrame, stamp: Stamp) -> None:
    """The versions the merge does not keep, in ``_superseded/<table>``, once per batch."""
    frame = losers.with_columns(
        pl.lit(stamp.metadata.get("lakesync.run_id"), dtype=pl.String).alias("_lakesync_run_id"),
        pl.lit(datetime.now(tz=UTC), dtype=pl.Datetime("us", "UTC")).alias("_lakesync_superseded_at"),
    )
    rows = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    data = rows.cast(target.pii.marked(rows.schema))

    def build(snapshot: DeltaTable | None) -> Append[None] | None:
        if snapshot is not None and all(
            transaction_version(snapshot, app) >= version for app, version in stamp.transactions.items()
        ):
            return None
        return Append(data, transactions=stamp.transactions, metadata=stamp.metadata)

    append_once(target.delta.lakehouse, target.superseded_uri, build, what="the rows a merge superseded")


def _current_versions(
    snapshot: DeltaTable, frame: pl.DataFrame, settings: Table, provenance: Provenance
) -> pl.DataFrame | None:
    """The table's current rows for the batch's keys (only needed to compare ``latest_by``)."""
    if settings.latest_by is None or frame.is_empty():
        return None
    columns = [*settings.keys, settings.latest_by, provenance.file, provenance.row]
    current = pl.scan_delta(snapshot).select(columns)
    return current.join(frame.lazy().select(settings.keys).unique(), on=settings.keys, how="semi").collect()

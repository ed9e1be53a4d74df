"""Commit a round's rows: a streamed append, or a merge of the latest row per key.

Merge tables keep every version a merge does not keep in ``_superseded/<table>`` (with the row
that beat it and why), written before the merge with the same application transactions: a
crash in between loses no loser, and a retry adds none.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.commit import delta
from lakesync.commit.delta import DeltaTarget, MergeOn
from lakesync.commit.provenance import Provenance
from lakesync.commit.spill import POSITION, Spill, Spilled
from lakesync.commit.winners import REASON, SUPERSEDED_BY, WINNER, key_bounds, name_winners, pick_winners
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
    settings, provenance = target.settings, target.provenance
    snapshot = target.delta.snapshot
    with tempfile.TemporaryDirectory(prefix="lakesync-merge-") as folder:
        # Only the keys stay in memory; the rows wait on local disk for the winners.
        spilling = Spill(schema, Path(folder), [*settings.keys, *filter(None, [settings.latest_by])])
        empty = not snapshot.file_uris()  # asked once: it lists every data file of the table
        if empty:
            first_load = _append_unless_repeated(target, spilling, batches, stamp)
            if first_load is not None:
                return first_load
        rows = spilling.finish(batches)
        picked = pick_winners(
            rows.keys,
            keys=settings.keys,
            latest_by=settings.latest_by,
            existing=None if empty else _current_versions(snapshot, rows.keys, settings, provenance),
            existing_source=(provenance.file, provenance.row),
        )
        if picked.losers.height:
            _keep_losers(target, _full_losers(rows, picked.losers, provenance), stamp)
        winners = picked.rows[POSITION].sort()
        if winners.is_empty():
            empty = pa.RecordBatchReader.from_batches(schema, iter([]))
            return Committed(delta.append(target.delta, empty, stamp))
        held = (
            picked.rows.select(settings.keys).clear()
            if empty
            else _held(snapshot, picked.rows.select(settings.keys))
        )
        if held.is_empty():
            # Keys the table has never held: an append is the same merge.
            return Committed(delta.append(target.delta, rows.reader(winners), stamp), picked.losers.height)
        # Only the target's files in the range of the keys it holds are read (new keys are
        # inserted whatever their value): a batch of new keys beside a few updates stays cheap.
        on = MergeOn(settings.keys, settings.latest_by, key_bounds(held, settings.keys))
        version = delta.merge(target.delta, rows.reader(winners), stamp, on)
    return Committed(version, picked.losers.height)


class _KeysRepeat(Exception):  # noqa: N818 - stops the first load's append uncommitted
    """Raised from inside the stream of a first load whose keys occur more than once."""


def _append_unless_repeated(
    target: RowsTarget, spilling: Spill, batches: Iterator[pa.RecordBatch], stamp: Stamp
) -> Committed | None:
    """A first load: the rows are appended as they stream by (and spilled), and the append is
    committed only if no key occurs twice; otherwise ``None``, the append stopped uncommitted
    (its files are left for vacuum), and the spilled rows are merged instead."""
    repeated = False

    def checked() -> Iterator[pa.RecordBatch]:
        nonlocal repeated
        yield from spilling.tee(batches)
        keys = spilling.keys().select(target.settings.keys)
        if keys.n_unique() != keys.height:
            repeated = True
            raise _KeysRepeat(target.delta.uri)

    reader = pa.RecordBatchReader.from_batches(spilling.schema, checked())
    try:
        return Committed(delta.append(target.delta, reader, stamp))
    except Exception:
        if repeated:
            return None
        raise


def _full_losers(rows: Spilled, losers: pl.DataFrame, provenance: Provenance) -> pl.DataFrame:
    """The losers' whole rows, in landing order, with the row each lost to and why."""
    winners = losers[WINNER].drop_nulls().cast(losers.schema[POSITION])
    frame = rows.frame(pl.concat([losers[POSITION], winners]).unique().sort())
    named = name_winners(
        losers.select(POSITION, WINNER, SUPERSEDED_BY, REASON),
        frame.select(pl.col(POSITION).alias(WINNER), provenance.file, provenance.row),
        (provenance.file, provenance.row),
    )
    return frame.join(named, on=POSITION, how="inner").sort(POSITION).drop(POSITION)


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
    snapshot: DeltaTable, keys: pl.DataFrame, settings: Table, provenance: Provenance
) -> pl.DataFrame | None:
    """The table's current rows for the round's keys (only needed to compare ``latest_by``)."""
    if settings.latest_by is None or keys.is_empty():
        return None
    columns = [*settings.keys, settings.latest_by, provenance.file, provenance.row]
    current = _in_key_range(pl.scan_delta(snapshot).select(columns), keys, settings.keys)
    return current.join(keys.lazy().select(settings.keys).unique(), on=settings.keys, how="semi").collect()


def _in_key_range(scan: pl.LazyFrame, keys: pl.DataFrame, names: Sequence[str]) -> pl.LazyFrame:
    """``scan`` limited to the round's range of its first key: Delta files outside it are skipped
    by their statistics."""
    first = keys[names[0]]
    if first.null_count() == first.len():
        return scan
    low, high = pl.lit(first.min(), dtype=first.dtype), pl.lit(first.max(), dtype=first.dtype)
    return scan.filter(pl.col(names[0]).is_between(low, high))


def _held(snapshot: DeltaTable, keys: pl.DataFrame) -> pl.DataFrame:
    """Which of these keys the table holds (read from its key columns only, pruned by range)."""
    names = keys.columns
    held = _in_key_range(pl.scan_delta(snapshot).select(names), keys, names)
    return held.join(keys.lazy(), on=names, how="semi").collect()

"""`lakesync drift revert ID`: undo an approved rename (lakesync's own, or a reviewer's).

1. The decision is reversed: the drift is recorded as rejected (``reverted: ...``), so the
   dataset's files with the old name follow the drift policy again (quarantined for review).
2. The files ingested since the drift was first seen whose columns include a renamed source
   column are the ones the rename brought in; their rows leave the table for its quarantine,
   one record per row (rule ``reverted_rename``, the stored values), in one append carrying
   the application transaction ``revert:<id>``, then are deleted from the table.

Run again after a crash between the two, it finishes (the quarantine append is not repeated,
the delete finds what is left); run again after it finished, it says so. Rows are conserved:
every row deleted is a quarantine record, replayable with `lakesync quarantine replay`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from lakesync.commit.provenance import Provenance, source_file
from lakesync.commit.winners import REASON, SUPERSEDED_BY
from lakesync.config import LakesyncConfig
from lakesync.discover.stores import LakeStore
from lakesync.read import ROW, ReadSpec, read_file
from lakesync.state.append import Append, append_once
from lakesync.state.audit import AuditLog
from lakesync.state.drift_log import DriftEvent, DriftLog
from lakesync.state.lakehouse import Lakehouse, transaction_version
from lakesync.state.ledger import Ledger
from lakesync.state.quarantine import QUARANTINE_SCHEMA, raw_json

REVERTED = "reverted: "
RULE = "reverted_rename"
SUPERSEDED_EXTRA = [SUPERSEDED_BY, REASON, "_lakesync_run_id", "_lakesync_superseded_at"]
"""The columns ``_superseded/<table>`` adds to a table's row."""


class RevertError(ValueError):
    """A revert that cannot be done, said in one sentence."""


@dataclass(frozen=True)
class Reverted:
    event: str
    dataset: str
    renames: dict[str, str]
    files: tuple[str, ...]
    rows: int
    """Rows moved from the table to its quarantine by this run."""
    table_version: int | None
    finished_before: bool = False
    """It had been reverted already: nothing was left to do."""
    restored: int = 0
    """Merge tables: keys given back the version the reverted rows had replaced."""
    note: str | None = None
    """Why those versions could not be given back (the table was vacuumed past them)."""


def _event(drift: DriftLog, event_id: str) -> DriftEvent:
    event = drift.event(event_id)
    if event is None:
        msg = f"no drift event {event_id!r} (see `lakesync drift list --all`)"
        raise RevertError(msg)
    if not event.renames:
        msg = f"drift {event_id} of {event.dataset} is not a rename: nothing to revert (reject it instead)"
        raise RevertError(msg)
    reverted = event.status == "rejected" and (event.note or "").startswith(REVERTED)
    if event.status != "approved" and not reverted:
        msg = (
            f"drift {event_id} of {event.dataset} is {event.status}: only an approved rename can be reverted"
        )
        raise RevertError(msg)
    return event


def _brought_in(
    config: LakesyncConfig, lakehouse: Lakehouse, event: DriftEvent, store: LakeStore
) -> list[str]:
    """Paths of the dataset's files ingested since the drift was first seen that carry a
    renamed source column (the rename mapped them)."""
    lake, name = event.dataset.split(".", 1)
    spec = config.lakes[lake].datasets[name]
    state = Ledger(lakehouse).read(event.dataset)
    ingested = state.files.filter(
        (pl.col("status") == "ingested") & (pl.col("recorded_at") >= event.first_seen)
    )
    files = []
    read = ReadSpec(format=spec.format, options=spec.options, chunk_rows=1)
    for path in sorted(ingested["path"].to_list()):
        found = store.stat(path)
        if found is None:  # gone from the lake: the table's rows say which file they came from
            files.append(path)
            continue
        with store.local_path(found) as local:
            try:
                with contextlib.closing(read_file(local, read)) as chunks:
                    columns = set(next(chunks).columns) - {ROW}
            except (OSError, ValueError, StopIteration):
                continue
        if columns & set(event.renames):
            files.append(path)
    return files


def revert_rename(
    config: LakesyncConfig,
    lakehouse: Lakehouse,
    event_id: str,
    stores: Mapping[str, LakeStore],
    *,
    actor: str | None = None,
) -> Reverted:
    """Undo the approved rename ``event_id`` (see the module doc)."""
    drift = DriftLog(lakehouse)
    event = _event(drift, event_id)
    actor = actor or getpass.getuser()
    lake, _ = event.dataset.split(".", 1)
    if event.status == "approved":
        pairs = ", ".join(f"{s} -> {c}" for s, c in event.renames.items())
        drift.decide(
            event.id, "rejected", actor=actor, note=f"{REVERTED}{pairs} (was approved by {event.decided_by})"
        )
    paths = _brought_in(config, lakehouse, event, stores[lake])
    provenance = Provenance.of(config)
    uri = lakehouse.table_uri(event.table)
    snapshot = lakehouse.open(uri)
    sources = [source_file(lake, p) for p in paths]
    if snapshot is None or not sources:
        return Reverted(event.id, event.dataset, event.renames, tuple(paths), 0, None, finished_before=True)
    rows = pl.scan_delta(snapshot).filter(pl.col(provenance.file).is_in(sources)).collect()
    app = f"revert:{event.id}"
    at = datetime.now(tz=UTC)
    quarantined = _records(rows, event, provenance, at, actor)

    def build(current: DeltaTable | None) -> Append[None] | None:
        if transaction_version(current, app) >= 1 or quarantined.is_empty():
            return None
        data = quarantined.to_arrow(compat_level=pl.CompatLevel.newest())
        return Append(data, transactions={app: 1}, metadata={"lakesync.revert": event.id})

    append_once(
        lakehouse, lakehouse.quarantine_uri(event.table), build, what=f"the rows drift {event.id} brought in"
    )
    if rows.height:
        quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in sources)
        DeltaTable(uri, storage_options=dict(lakehouse.storage_options) or None).delete(
            predicate=f"{provenance.file} IN ({quoted})"
        )
        AuditLog(lakehouse).append(
            [
                {
                    "kind": "drift_revert",
                    "lake": lake,
                    "dataset": event.dataset.split(".", 1)[1],
                    "table": event.table,
                    "status": "reverted",
                    "rows_committed": -rows.height,
                    "rows_quarantined": rows.height,
                    "actor": actor,
                    "detail": json.dumps({"event": event.id, "renames": event.renames, "files": paths}),
                }
            ],
            what=f"the revert of drift {event.id} in the audit trail",
        )
    restored, note = _restore_replaced(config, lakehouse, event, paths, provenance) if paths else (0, None)
    _mark_in_ledger(lakehouse, event, paths, app)
    after = lakehouse.open(uri)
    return Reverted(
        event.id,
        event.dataset,
        event.renames,
        tuple(paths),
        rows.height,
        after.version() if after is not None else None,
        finished_before=rows.height == 0 and restored == 0,
        restored=restored,
        note=note,
    )


def _moved_records(lakehouse: Lakehouse, event: DriftEvent, paths: list[str]) -> pl.LazyFrame | None:
    """The quarantine records this revert wrote (rule ``reverted_rename``, the files' rows)."""
    lake, dataset = event.dataset.split(".", 1)
    records = lakehouse.open(lakehouse.quarantine_uri(event.table))
    if records is None:
        return None
    return pl.scan_delta(records).filter(
        (pl.col("lake") == lake)
        & (pl.col("dataset") == dataset)
        & pl.col("file").is_in(paths)
        & pl.col("rules").list.contains(RULE)
    )


def _moved_names(lakehouse: Lakehouse, event: DriftEvent, paths: list[str]) -> pl.DataFrame:
    """``lake/path#row`` of every row this revert moved to the quarantine."""
    lake = event.dataset.split(".", 1)[0]
    records = _moved_records(lakehouse, event, paths)
    if records is None:
        return pl.DataFrame(schema={"name": pl.String})
    name = pl.lit(f"{lake}/") + pl.col("file") + pl.lit("#") + pl.col("row").cast(pl.String)
    return records.select(name.alias("name")).collect()


def _replaced(
    config: LakesyncConfig, lakehouse: Lakehouse, event: DriftEvent, paths: list[str], provenance: Provenance
) -> tuple[pl.DataFrame, list[str]]:
    """The version each key had before the reverted rows replaced it, and which of them come
    from ``_superseded`` (``lake/path#row``): a version of the same batch the reverted row beat
    (kept there) or else the key's row in the table just before the batch's commit."""
    settings = config.tables[event.table]
    lake = event.dataset.split(".", 1)[0]
    reverted = [source_file(lake, p) for p in paths]
    names = _moved_names(lakehouse, event, paths)["name"]
    keys = list(settings.keys)
    options = dict(lakehouse.storage_options) or None
    uri = lakehouse.table_uri(event.table)
    name = (pl.col(provenance.file) + pl.lit("#") + pl.col(provenance.row).cast(pl.String)).alias("__name")
    events = Ledger(lakehouse).events_of([event.dataset])[event.dataset]
    versions = events.filter(pl.col("path").is_in(paths) & (pl.col("event") == "ingested"))["table_version"]
    moved, before = [], []
    for version in sorted({int(v) for v in versions.drop_nulls().to_list()}):
        at = pl.scan_delta(uri, version=version, storage_options=options)
        mine = at.filter(pl.col(provenance.file).is_in(reverted)).with_columns(name)
        rows = mine.filter(pl.col("__name").is_in(names.implode())).select(keys).collect()
        moved.append(rows)
        if version > 0 and rows.height:
            previous = pl.scan_delta(uri, version=version - 1, storage_options=options)
            before.append(previous.join(rows.lazy(), on=keys, how="semi", nulls_equal=True).collect())
    superseded = lakehouse.open(lakehouse.superseded_uri(event.table))
    beaten = pl.DataFrame()
    if superseded is not None:
        found = pl.scan_delta(superseded).filter(
            pl.col(SUPERSEDED_BY).is_in(names.implode()) & ~pl.col(provenance.file).is_in(reverted)
        )
        order = [settings.latest_by] if settings.latest_by else []
        order += [c for c in (provenance.batch, provenance.row) if c]
        beaten = found.collect().sort(order, nulls_last=False).unique(keys, keep="last", maintain_order=True)
    from_superseded = beaten.select(name)["__name"].to_list() if beaten.height else []
    parts = [beaten.drop(SUPERSEDED_EXTRA, strict=False)] if beaten.height else []
    if before:
        older = pl.concat(before, how="vertical_relaxed").unique(keys, keep="last", maintain_order=True)
        parts.append(older.join(beaten.select(keys), on=keys, how="anti") if beaten.height else older)
    if not parts:
        return pl.DataFrame(), []
    return pl.concat(parts, how="diagonal_relaxed"), from_superseded


def _restore_replaced(
    config: LakesyncConfig, lakehouse: Lakehouse, event: DriftEvent, paths: list[str], provenance: Provenance
) -> tuple[int, str | None]:
    """On a merge table, give each key whose row the revert moved out the version that row had
    replaced (:func:`_replaced`): appended once (transaction ``revert-restore:<id>``), then taken
    out of ``_superseded`` where it was kept there (each version in one place)."""
    if config.tables[event.table].mode != "merge":
        return 0, None
    try:
        restored, from_superseded = _replaced(config, lakehouse, event, paths, provenance)
    except (OSError, DeltaError) as exc:  # an older version was vacuumed
        note = f"the versions its rows replaced cannot be read back ({str(exc).splitlines()[0]})"
        return 0, note
    if restored.is_empty():
        return 0, None
    uri = lakehouse.table_uri(event.table)
    app = f"revert-restore:{event.id}"
    current = lakehouse.open(uri)
    assert current is not None
    schema = pa.schema(current.schema().to_arrow())
    data = restored.select(schema.names).to_arrow(compat_level=pl.CompatLevel.newest()).cast(schema)

    def build(snapshot: DeltaTable | None) -> Append[None] | None:
        if transaction_version(snapshot, app) >= 1:
            return None
        return Append(data, transactions={app: 1}, metadata={"lakesync.revert": event.id})

    append_once(lakehouse, uri, build, what=f"the versions drift {event.id}'s rows had replaced")
    if from_superseded:
        quoted = ", ".join("'" + n.replace("'", "''") + "'" for n in from_superseded)
        file, row = provenance.file, provenance.row
        DeltaTable(
            lakehouse.superseded_uri(event.table), storage_options=dict(lakehouse.storage_options) or None
        ).delete(predicate=f"concat({file}, '#', cast({row} as string)) IN ({quoted})")
    return restored.height, None


def _mark_in_ledger(lakehouse: Lakehouse, event: DriftEvent, paths: list[str], app: str) -> None:
    """The files the rename brought in are quarantined in the ledger too (``lakesync status``),
    with the rows each moved (counted in the quarantine, so a resumed revert counts them too)."""
    records = _moved_records(lakehouse, event, paths)
    moved: dict[str, int] = dict.fromkeys(paths, 0)
    if records is not None:
        counts = records.group_by("file").len().collect()
        moved |= dict(zip(counts["file"].to_list(), counts["len"].to_list(), strict=True))
    pairs = ", ".join(f"{s} -> {c}" for s, c in event.renames.items())
    reason = (
        f"reverted: its rows were ingested with the rename {pairs} (drift {event.id}) and moved to quarantine"
    )
    Ledger(lakehouse).record_reverted(event.dataset, moved, reason=reason, app=app)


def _records(
    rows: pl.DataFrame, event: DriftEvent, provenance: Provenance, at: datetime, actor: str
) -> pl.DataFrame:
    """One quarantine record per row, with its stored values."""
    if rows.is_empty():
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    lake, dataset = event.dataset.split(".", 1)
    pairs = ", ".join(f"{s} -> {c}" for s, c in event.renames.items())
    reason = (
        f"ingested with the rename {pairs} (drift {event.id}, approved by {event.decided_by}), "
        f"reverted by {actor}: values as stored"
    )
    data = [c for c in rows.columns if c not in provenance.names]
    values = raw_json(rows.select(data))
    batch = pl.col(provenance.batch) if provenance.batch else pl.lit(None)
    records = rows.with_columns(values.alias("__raw")).select(
        pl.lit(lake).alias("lake"),
        pl.lit(dataset).alias("dataset"),
        pl.col(provenance.file).str.strip_prefix(f"{lake}/").alias("file"),
        pl.col(provenance.row).alias("row"),
        pl.lit("row").alias("level"),
        pl.lit([RULE]).alias("rules"),
        pl.lit(list(event.renames.values())).alias("columns"),
        pl.lit(reason).alias("reason"),
        pl.col("__raw").alias("raw"),
        batch.alias("batch"),
        pl.lit(None).alias("run_id"),
        pl.lit(None).alias("contract"),
        pl.lit(at).alias("quarantined_at"),
    )
    return records.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])

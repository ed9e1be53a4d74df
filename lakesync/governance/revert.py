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
from deltalake import DeltaTable

from lakesync.commit.provenance import Provenance, source_file
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
    after = lakehouse.open(uri)
    return Reverted(
        event.id,
        event.dataset,
        event.renames,
        tuple(paths),
        rows.height,
        after.version() if after is not None else None,
        finished_before=rows.height == 0,
    )


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

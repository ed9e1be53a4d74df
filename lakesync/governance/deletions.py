"""A file deleted from its lake, deleted from the lakehouse (a lake in events mode with
``on_delete: propagate``).

The intake confirms with the store that the file is really gone (a file deleted and written
again is left alone), then, before it acknowledges the delete event, :func:`propagate` removes
the file's rows from its table and from the table's superseded versions (one Delta commit each,
retried on a conflicting commit), appends an audit record per file (``kind: file_deleted``, the
rows removed as a negative ``rows_committed``) and a ``deleted`` event to the ledger. A
reconciliation listing that no longer finds an ingested file does the same.

On a merge table a deleted file's rows leave the table even where they had superseded an older
version of the same key from another file: that version stays in ``_superseded`` and is not
brought back; the key is gone until a file brings it again. The file's quarantine records stay:
they are the record of what was rejected. A path deleted and later written again is not
ingested again (like a changed file; ``lakesync quarantine replay`` takes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from lakesync.config import LakesyncConfig
from lakesync.discover.events.intake import DeletedFile
from lakesync.state.append import Append, AppendContentionError, append_once, backoff
from lakesync.state.audit import AuditLog
from lakesync.state.lakehouse import Lakehouse, Stamp
from lakesync.state.ledger import Ledger
from lakesync.state.ledger_state import LEDGER_SCHEMA, event_row, ledger_states
from lakesync.state.values import FileEntry

ATTEMPTS = 16


def _quoted(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _delete_rows(
    lakehouse: Lakehouse, uri: str, column: str, sources: Sequence[str]
) -> tuple[dict[str, int], int | None]:
    """Rows per source file deleted from the table at ``uri``, and its version after."""
    for attempt in range(ATTEMPTS):
        snapshot = lakehouse.open(uri)
        if snapshot is None or column not in {f.name for f in snapshot.schema().fields}:
            return {}, None
        counts = (
            pl.scan_delta(snapshot)
            .filter(pl.col(column).is_in(list(sources)))
            .group_by(column)
            .len()
            .collect()
        )
        if not counts.height:
            return {}, snapshot.version()
        stamp = Stamp(metadata={"lakesync.operation": "file deletion", "lakesync.files": str(counts.height)})
        try:
            snapshot.delete(f'"{column}" IN ({_quoted(sources)})', commit_properties=stamp.properties())
        except CommitFailedError:
            backoff(attempt)
            continue
        return dict(zip(counts[column].to_list(), counts["len"].to_list(), strict=True)), snapshot.version()
    msg = (
        f"could not delete the rows of {len(sources)} deleted file(s) from {uri}: other writers "
        "kept committing first; the delete events stay in the queue and are tried again"
    )
    raise AppendContentionError(msg)


def propagate(
    config: LakesyncConfig, lakehouse: Lakehouse, deleted: Sequence[DeletedFile], *, run_id: str
) -> tuple[int, int]:
    """Remove the deleted files' rows from the lakehouse; returns (files deleted, rows removed)
    (a file never ingested, or deleted already, counts for nothing); raises
    ``AppendContentionError`` when other writers keep winning (nothing was acknowledged)."""
    if not deleted:
        return 0, 0
    ledger = Ledger(lakehouse)
    states = ledger_states(lakehouse, lakehouse.open(ledger.uri), sorted({d.dataset for d in deleted}))
    column = config.lakehouse.provenance.file
    now = datetime.now(tz=UTC)
    removed = 0
    audit: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for table in sorted({d.table for d in deleted}):
        files = [d for d in deleted if d.table == table]
        sources = [f"{d.lake}/{d.path}" for d in files]
        rows, version = _delete_rows(lakehouse, lakehouse.table_uri(table), column, sources)
        older, _ = _delete_rows(lakehouse, lakehouse.superseded_uri(table), column, sources)
        for d, source in zip(files, sources, strict=True):
            known = states[d.dataset].files.filter(pl.col("path") == d.path)
            if not known.height or known["status"][0] in ("deleted", "announced", "planned"):
                continue  # never ingested, or already deleted: nothing to record
            n = rows.get(source, 0)
            removed += n
            audit.append(
                {
                    "kind": "file_deleted",
                    "run_id": run_id,
                    "lake": d.lake,
                    "dataset": d.dataset,
                    "table": table,
                    "path": d.path,
                    "status": "deleted",
                    "rows_committed": -n,
                    "table_version": version,
                    "reason": (
                        f"{source} was deleted from its lake (on_delete: propagate); "
                        f"{older.get(source, 0)} superseded row version(s) removed too"
                    ),
                }
            )
            last = states[d.dataset].files.filter(pl.col("path") == d.path).row(0, named=True)
            entry = FileEntry(path=d.path, size=last["size"], modified=last["modified"], etag=last["etag"])
            events.append(
                event_row(
                    d.dataset,
                    table,
                    last["batch"],
                    "deleted",
                    entry,
                    run_id=run_id,
                    recorded_at=now,
                    table_version=version,
                    rows_committed=-n,
                )
            )
    if events:
        data = pa.Table.from_pylist(events, schema=LEDGER_SCHEMA)
        append_once(
            lakehouse,
            ledger.uri,
            lambda _: Append(data),
            what="deleted files in the ledger",
            create=ledger.create,
        )
        AuditLog(lakehouse).append(audit, what=f"the deletion of {len(audit)} file(s)")
    return len(events), removed

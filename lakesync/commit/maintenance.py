"""Table maintenance: OPTIMIZE (compact small files) and VACUUM (delete unreferenced files).

Run by each table's maintenance schedule. Neither changes a row: OPTIMIZE rewrites small files
into larger ones as a new version (application transactions are kept, so exactly-once
bookkeeping is untouched); VACUUM deletes files no version within the retention needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lakesync.config.models import Maintenance
from lakesync.state.lakehouse import Lakehouse

_ATTEMPTS = 5


@dataclass(frozen=True)
class FileStats:
    files: int
    bytes: int


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    version_before: int
    version_after: int
    before: FileStats
    after: FileStats
    files_compacted: int
    """Small files rewritten by OPTIMIZE."""
    files_written: int
    """Files OPTIMIZE wrote in their place."""
    files_vacuumed: int
    """Files VACUUM deleted from storage (no longer referenced within the retention)."""
    retention_hours: float


def file_stats(table: DeltaTable) -> FileStats:
    """Files of the current version and their total size, from the Delta log."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return FileStats(0, 0)
    return FileStats(actions.num_rows, int(pc.sum(actions.column("size_bytes")).as_py() or 0))


def maintain_table(lakehouse: Lakehouse, table: str, settings: Maintenance) -> MaintenanceReport | None:
    """OPTIMIZE then VACUUM ``table`` as ``settings`` say; ``None`` if the table does not exist yet."""
    uri = lakehouse.table_uri(table)
    snapshot = lakehouse.open(uri)
    if snapshot is None:
        return None
    version_before = snapshot.version()
    before = file_stats(snapshot)
    compacted = written = 0
    if settings.optimize:
        for attempt in range(_ATTEMPTS):
            try:
                metrics = snapshot.optimize.compact()
                compacted, written = int(metrics["numFilesRemoved"]), int(metrics["numFilesAdded"])
                break
            except CommitFailedError:  # a sync committed meanwhile: compact the new version
                if attempt == _ATTEMPTS - 1:
                    raise
                snapshot = lakehouse.open(uri) or snapshot
    vacuumed: list[str] = []
    hours = settings.retention / 3600
    if settings.vacuum:
        snapshot = lakehouse.open(uri) or snapshot
        # The retention is the configured one; Delta's 7-day floor is the default of that setting.
        vacuumed = snapshot.vacuum(
            retention_hours=max(0, int(hours)), dry_run=False, enforce_retention_duration=False
        )
    latest = lakehouse.open(uri) or snapshot
    return MaintenanceReport(
        table=table,
        version_before=version_before,
        version_after=latest.version(),
        before=before,
        after=file_stats(latest),
        files_compacted=compacted,
        files_written=written,
        files_vacuumed=len(vacuumed),
        retention_hours=hours,
    )


_LOG_RETENTION = "delta.logRetentionDuration"


def purge_history(table: DeltaTable) -> int:
    """Make ``table``'s current version the only one left anywhere in storage.

    VACUUM with zero retention deletes the data files no longer in the table; but earlier
    commits still hold per-file statistics (each column's min and max values) in the Delta log,
    and merge tables keep change data files (whole rows, including the deleted ones). So the log
    is checkpointed at the current version and every earlier commit is removed (the log
    retention is set to zero for that moment, then put back), and a full VACUUM then deletes
    the change data files no remaining commit refers to. Time travel and the change data feed
    before now are gone. Run it when nothing else writes the table: a zero-retention VACUUM can
    delete the files of a write in flight. Returns the number of files deleted.
    """
    previous = table.metadata().configuration.get(_LOG_RETENTION)
    deleted = table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False)
    table.alter.set_table_properties({_LOG_RETENTION: "interval 0 seconds"})
    try:
        table.create_checkpoint()
        table.cleanup_metadata()
        deleted += table.vacuum(retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True)
    finally:
        table.alter.set_table_properties({_LOG_RETENTION: previous or "interval 30 days"})
    return len(set(deleted))

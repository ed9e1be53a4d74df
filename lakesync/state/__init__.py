"""The lakehouse's own tables (ledger, audit trail, drift log, quarantine, erased subjects), all
written through one append-once primitive, and the small values they store."""

from lakesync.state.append import AppendContentionError, append_once
from lakesync.state.lakehouse import Lakehouse, lakehouse_for
from lakesync.state.values import BatchPlan, FileEntry, FileOutcome, dataset_id

__all__ = [
    "AppendContentionError",
    "BatchPlan",
    "FileEntry",
    "FileOutcome",
    "Lakehouse",
    "append_once",
    "dataset_id",
    "lakehouse_for",
]

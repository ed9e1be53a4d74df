"""Stage 1: list each lake and compare it with the durable ledger to find new files."""

from lakesync.discover.ledger import BatchPlan, DatasetLedger, FileOutcome, Ledger
from lakesync.discover.planning import Discovery, discover, split_batches, take_batch
from lakesync.discover.stores import FileEntry, LakeStore, LakeUnavailableError

__all__ = [
    "BatchPlan",
    "DatasetLedger",
    "Discovery",
    "FileEntry",
    "FileOutcome",
    "LakeStore",
    "LakeUnavailableError",
    "Ledger",
    "discover",
    "split_batches",
    "take_batch",
]

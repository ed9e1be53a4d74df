"""Stage 1: find each dataset's new files (a discovery source: a listing of the lake's store),
compared with the ledger."""

from lakesync.discover.planning import Discovery, discover, split_batches, take_batch
from lakesync.discover.stores import LakeStore, LakeUnavailableError

__all__ = ["Discovery", "LakeStore", "LakeUnavailableError", "discover", "split_batches", "take_batch"]

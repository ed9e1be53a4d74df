"""Lake stores: list a lake and make one of its files readable. Source lakes are read-only to
lakesync: stores only list and read, never write or delete."""

from lakesync.discover.stores.base import FileChangedError, LakeStore, LakeUnavailableError, file_checksum
from lakesync.discover.stores.default import default_store
from lakesync.discover.stores.local import LocalStore

__all__ = [
    "FileChangedError",
    "LakeStore",
    "LakeUnavailableError",
    "LocalStore",
    "default_store",
    "file_checksum",
]

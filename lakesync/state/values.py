"""The small values the lakehouse's own tables store: a file as listed, a batch, a file's outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, order=True)
class FileEntry:
    """One file of a lake as the listing (or an event) saw it."""

    path: str
    """Path relative to the lake root (or the lake's prefix), with ``/`` separators."""
    size: int
    modified: datetime
    """Last modification time, UTC."""
    etag: str | None = None
    """Content tag of object stores; ``None`` on local disks."""

    @property
    def version_tag(self) -> str:
        """What identifies this content of the file: the etag, else size and mtime (in whole
        microseconds since the epoch, computed exactly, as the ledger's polars expression does)."""
        if self.etag:
            return self.etag
        modified = self.modified if self.modified.tzinfo else self.modified.replace(tzinfo=UTC)
        micros = (modified - _EPOCH) // _MICROSECOND
        return f"{self.size}:{micros}"


def dataset_id(lake: str, dataset: str) -> str:
    """``<lake>.<dataset>``: a dataset's id in the ledger, the audit trail and Delta transactions."""
    return f"{lake}.{dataset}"


@dataclass(frozen=True)
class BatchPlan:
    """Version ``version`` of a dataset: the files one ingestion commit will carry."""

    dataset: str
    """The dataset's id (:func:`dataset_id`)."""
    table: str
    version: int
    files: tuple[FileEntry, ...]
    rows: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Replays only: path -> the record numbers to ingest again (absent: the whole file)."""
    replay_of: int | None = None
    """Replays only: the batch whose quarantined rows or files this batch ingests again."""

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def lake(self) -> str:
        return self.dataset.split(".", 1)[0]


FileStatus = Literal["ingested", "quarantined"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file of a batch."""

    entry: FileEntry
    status: FileStatus
    rows_read: int
    rows_committed: int
    rows_quarantined: int
    reason: str | None = None
    drift: dict[str, Any] | None = None
    rows_erased: int = 0
    """Rows of subjects erased earlier (``lakesync erase``), dropped on arrival."""
    checksum: str | None = None
    """SHA-256 of the file's content as read (``None`` when it could not be read at all)."""
    rows_rescued: int = 0
    """Committed rows with values that did not fit, kept in ``_rescued_data``."""
    rescued: dict[str, dict[str, Any]] | None = None
    """Per column (its name in the file): ``rows``, ``examples`` and, for a column of the table,
    ``source_type`` and ``table_type``."""

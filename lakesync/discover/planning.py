"""Which files are new, and which of them go into the next batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lakesync.state.values import FileEntry


@dataclass(frozen=True)
class Discovery:
    """A listing of one dataset compared with its ledger."""

    new: tuple[FileEntry, ...]
    """Files the ledger has never seen, oldest first."""
    changed: tuple[FileEntry, ...]
    """Files the ledger has seen with other content (same path, new size/mtime/etag)."""
    files: int
    bytes: int
    newest: datetime | None

    @property
    def new_bytes(self) -> int:
        return sum(f.size for f in self.new)


def _order(entry: FileEntry) -> tuple[datetime, str]:
    return (entry.modified, entry.path)


def discover(listing: Iterable[FileEntry], known: Mapping[str, str]) -> Discovery:
    """Split a listing into new and changed files against ``known`` (path -> version tag).

    Changed files are reported, not re-ingested: a file's path is ingested once.
    """
    new: list[FileEntry] = []
    changed: list[FileEntry] = []
    count = 0
    total = 0
    newest: datetime | None = None
    for entry in listing:
        count += 1
        total += entry.size
        if newest is None or entry.modified > newest:
            newest = entry.modified
        tag = known.get(entry.path)
        if tag is None:
            new.append(entry)
        elif tag != entry.version_tag:
            changed.append(entry)
    new.sort(key=_order)
    changed.sort(key=_order)
    return Discovery(tuple(new), tuple(changed), count, total, newest)


def take_batch(files: Sequence[FileEntry], *, max_files: int, max_bytes: int) -> list[FileEntry]:
    """The oldest files up to ``max_files`` and ``max_bytes`` (always at least one file)."""
    batch: list[FileEntry] = []
    size = 0
    for entry in sorted(files, key=_order):
        if batch and (len(batch) >= max_files or size + entry.size > max_bytes):
            break
        batch.append(entry)
        size += entry.size
    return batch


def split_batches(files: Sequence[FileEntry], *, max_files: int, max_bytes: int) -> list[list[FileEntry]]:
    """All of ``files`` cut into consecutive batches as :func:`take_batch` would take them."""
    remaining = sorted(files, key=_order)
    batches: list[list[FileEntry]] = []
    while remaining:
        batch = take_batch(remaining, max_files=max_files, max_bytes=max_bytes)
        batches.append(batch)
        remaining = remaining[len(batch) :]
    return batches

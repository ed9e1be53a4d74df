"""Which files are new, and which of them go into the next batch."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

import polars as pl

from lakesync.state.known import KnownFiles
from lakesync.state.ledger_files import hashes
from lakesync.state.ledger_state import entry_frame
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
    started_after: str | None = None
    """A listing resumed from an earlier tick's: the path it started after."""
    resume_after: str | None = None
    """A listing cut at its limit: the last path it listed, where the next one resumes
    (``None``: the listing went to the end)."""

    @property
    def new_bytes(self) -> int:
        return sum(f.size for f in self.new)

    @property
    def whole(self) -> bool:
        """The listing saw every file (not one page of a listing that resumes across ticks)."""
        return self.started_after is None and self.resume_after is None

    def resumes(self) -> str:
        """Where the next tick's listing starts, for messages."""
        if self.resume_after is not None:
            return f"the listing resumes after {self.resume_after} at the next tick"
        return "the next tick lists from the start" if self.started_after is not None else ""


def _order(entry: FileEntry) -> tuple[datetime, str]:
    return (entry.modified, entry.path)


LISTING_CHUNK = 100_000
"""Listed files compared with the ledger at a time: a listing of millions is never held whole
(a chunk's entries and frame, ~50 MB at this size, and the ledger's hashes are)."""


def discover(listing: Iterable[FileEntry], known: KnownFiles | pl.DataFrame | Mapping[str, str]) -> Discovery:
    """Split a listing into new and changed files against ``known``: the ledger's hashes of each
    path and version tag (:attr:`DatasetLedger.known`, or a frame of ``h1``, ``h2``, ``tag``), or
    ``path``, ``version_tag`` columns, or a mapping path -> version tag.

    The ledger's hashes are used sorted as the compacted state holds them; the listing is read
    as the store yields it, :data:`LISTING_CHUNK` files at a time, and each chunk's paths are
    looked up in them by binary search (no hash table of millions is built per chunk). Changed
    files are reported, not re-ingested: a file's path is ingested once.
    """
    stored = _known_hashes(known)
    entries = iter(listing)
    new: list[FileEntry] = []
    changed: list[FileEntry] = []
    files = size = 0
    newest: datetime | None = None
    while chunk := _next_chunk(entries):
        frame = entry_frame(chunk).select("size", "modified", *hashes())
        seen, tags = stored.lookup(frame)
        new += [chunk[i] for i in (~seen).arg_true()]
        changed += [chunk[i] for i in (seen & (tags != frame["tag"])).arg_true()]
        files += len(chunk)
        size += int(frame["size"].sum())
        latest = frame["modified"].max()
        if isinstance(latest, datetime) and (newest is None or latest > newest):
            newest = latest
    return Discovery(
        tuple(sorted(new, key=_utc_order)), tuple(sorted(changed, key=_utc_order)), files, size, newest
    )


def _next_chunk(entries: Iterator[FileEntry]) -> list[FileEntry]:
    """The listing's next :data:`LISTING_CHUNK` entries, gathered without the cyclic garbage
    collector: entries hold no cycles, and its passes over the chunk's live objects cost ~40% of
    the diff at a million files (what the store leaves behind is collected once it is back on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return list(islice(entries, LISTING_CHUNK))
    finally:
        if enabled:
            gc.enable()


def _known_hashes(known: KnownFiles | pl.DataFrame | Mapping[str, str]) -> KnownFiles:
    """``known`` as :class:`KnownFiles`."""
    if isinstance(known, KnownFiles):
        return known
    if isinstance(known, pl.DataFrame) and "h1" in known.columns:
        return KnownFiles.of(known)
    if not isinstance(known, pl.DataFrame):
        known = pl.DataFrame(
            {"path": list(known), "version_tag": list(known.values())},
            schema={"path": pl.String, "version_tag": pl.String},
        )
    return KnownFiles.of(known.select(hashes()))


def _utc_order(entry: FileEntry) -> tuple[datetime, str]:
    """Oldest first; a naive time is UTC (as the ledger's frames take it)."""
    modified = entry.modified
    return (modified if modified.tzinfo else modified.replace(tzinfo=UTC), entry.path)


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

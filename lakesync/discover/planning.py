"""Which files are new, and which of them go into the next batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from lakesync.state.ledger_files import KEY, hashes
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

    @property
    def new_bytes(self) -> int:
        return sum(f.size for f in self.new)


def _order(entry: FileEntry) -> tuple[datetime, str]:
    return (entry.modified, entry.path)


def discover(listing: Iterable[FileEntry], known: pl.DataFrame | Mapping[str, str]) -> Discovery:
    """Split a listing into new and changed files against ``known``: the ledger's hashes of each
    path and version tag (``h1``, ``h2``, ``tag``: :attr:`DatasetLedger.known`), or ``path``,
    ``version_tag`` columns, or a mapping path -> version tag.

    One join in polars, however large the lake: a million listed files against a million known
    ones cost what building their frame costs. Changed files are reported, not re-ingested: a
    file's path is ingested once.
    """
    entries = listing if isinstance(listing, list) else list(listing)
    if not entries:
        return Discovery((), (), 0, 0, None)
    if not isinstance(known, pl.DataFrame):
        known = pl.DataFrame(
            {"path": list(known), "version_tag": list(known.values())},
            schema={"path": pl.String, "version_tag": pl.String},
        )
    frame = entry_frame(entries).with_row_index("i")
    if "h1" in known.columns:
        frame = frame.select("i", "modified", "size", "path", *hashes())
        on, tag = KEY, "tag"
    else:
        on, tag = ["path"], "version_tag"
    joined = frame.join(known.select(*on, pl.col(tag).alias("known_tag")), on=on, how="left")

    def oldest_first(rows: pl.Expr) -> list[int]:  # only the rows found are sorted
        return joined.filter(rows).sort("modified", "path")["i"].to_list()

    new = oldest_first(pl.col("known_tag").is_null())
    changed = oldest_first(pl.col("known_tag") != pl.col(tag))
    newest = frame["modified"].max()
    return Discovery(
        tuple(entries[i] for i in new),
        tuple(entries[i] for i in changed),
        len(entries),
        int(frame["size"].sum()),
        newest if isinstance(newest, datetime) else None,
    )


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

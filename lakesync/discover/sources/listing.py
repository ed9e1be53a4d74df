"""The listing source: list the lake's store (from the pattern's literal prefix, or after the
greatest known key when keys only grow) and diff the listing against the ledger.

A sensor's listing may be cut at a limit (``sensor.max_listed``) and resumed at the next tick
after the last path it listed: stores list in key order, so a lake of millions of files is gone
through a page per tick, each tick's cost bounded, and every file seen once a pass."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from lakesync.discover.planning import Discovery, discover
from lakesync.discover.stores import LakeStore
from lakesync.state.ledger_state import DatasetLedger
from lakesync.state.values import FileEntry


class ListingSource:
    def __init__(self, store: LakeStore, pattern: str, *, ordered_keys: bool = False) -> None:
        self.store = store
        self.pattern = pattern
        self.ordered_keys = ordered_keys
        self.description = f"a listing of {store.description}"

    def start_after(self, state: DatasetLedger) -> str | None:
        """Where a listing may start for keys that only grow: after the greatest key known."""
        if not self.ordered_keys or state.files.is_empty():
            return None
        last = state.files["path"].max()
        return str(last) if last is not None else None

    def scan(self, state: DatasetLedger, *, after: str | None = None, limit: int | None = None) -> Discovery:
        """The listing diffed against ``state``; with ``limit``, at most that many files, after
        ``after`` (an earlier page's :attr:`Discovery.resume_after`). Keys that only grow are
        listed after the greatest known key, whole (those are the new files)."""
        if self.ordered_keys or limit is None:
            listing = self.store.list(self.pattern, start_after=self.start_after(state))
            return discover(listing, state.known)
        page = Page(self.store.list(self.pattern, start_after=after), limit)
        found = discover(page, state.known)
        return replace(found, started_after=after, resume_after=page.last if page.more else None)


class Page(Iterable[FileEntry]):
    """The first ``limit`` entries of a listing; whether more follow (one more is asked for, then
    the listing is closed: no further list call), and the last path given."""

    def __init__(self, listing: Iterator[FileEntry], limit: int) -> None:
        self.listing = listing
        self.limit = limit
        self.last: str | None = None
        self.more = False

    def __iter__(self) -> Iterator[FileEntry]:
        given = 0
        try:
            for entry in self.listing:
                if given == self.limit:
                    self.more = True
                    return
                given += 1
                self.last = entry.path
                yield entry
        finally:
            close = getattr(self.listing, "close", None)
            if close is not None:
                close()

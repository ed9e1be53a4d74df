"""The listing source: list the lake's store (from the pattern's literal prefix, or after the
greatest known key when keys only grow) and diff the listing against the ledger."""

from __future__ import annotations

from lakesync.discover.planning import Discovery, discover
from lakesync.discover.stores import LakeStore
from lakesync.state.ledger_state import DatasetLedger


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

    def scan(self, state: DatasetLedger) -> Discovery:
        listing = self.store.list(self.pattern, start_after=self.start_after(state))
        return discover(listing, state.known)

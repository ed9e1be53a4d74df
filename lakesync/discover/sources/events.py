"""The events source: the files storage events (or a reconciliation) announced in the ledger.

It never lists: the lake's intake (:mod:`lakesync.discover.events.intake`) has already written
each file the queue told of into the ledger as *announced*, and a reconciliation listing adds
what the events missed. New files are the announced ones no batch has taken yet.
"""

from __future__ import annotations

from lakesync.discover.planning import Discovery
from lakesync.discover.stores import LakeStore
from lakesync.state.ledger_state import DatasetLedger


class EventsSource:
    def __init__(self, store: LakeStore, pattern: str) -> None:
        self.store = store
        self.pattern = pattern
        self.description = f"storage events of {store.description}"

    def scan(self, state: DatasetLedger, *, after: str | None = None, limit: int | None = None) -> Discovery:
        del after, limit  # nothing is listed
        new = state.announced()
        sizes = state.state.select(["size"])["size"]
        files, total = sizes.len(), int(sizes.sum() or 0)
        newest = max((e.modified for e in new), default=None)
        return Discovery(new, (), files, total, newest)

"""Discovery sources: where a dataset's new files are found, behind one protocol.

A source answers one question: *which files of this dataset does the ledger not know yet?*
A listing of the lake's store (:class:`ListingSource`, the default), or the files the lake's
storage events announced (:class:`EventsSource`, a lake in events mode). A new source is one
module here and one entry in :func:`source_for`.
"""

from lakesync.config.datasets import Dataset
from lakesync.discover.sources.base import DiscoverySource
from lakesync.discover.sources.events import EventsSource
from lakesync.discover.sources.listing import ListingSource
from lakesync.discover.stores import LakeStore


def source_for(dataset: Dataset, store: LakeStore, mode: str = "listing") -> DiscoverySource:
    """The discovery source of a dataset: a listing of its store, or (its lake in events mode)
    the files its lake's storage events announced."""
    if mode == "events":
        return EventsSource(store, dataset.pattern)
    return ListingSource(store, dataset.pattern, ordered_keys=dataset.ordered_keys)


__all__ = ["DiscoverySource", "EventsSource", "ListingSource", "source_for"]

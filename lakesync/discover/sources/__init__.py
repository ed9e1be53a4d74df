"""Discovery sources: where a dataset's new files are found, behind one protocol.

A source answers one question: *which files of this dataset does the ledger not know yet?*
Today's source lists the lake's store (:class:`ListingSource`); a source fed by storage events
is another implementation of the same protocol. A new source is one module here and one entry
in :func:`source_for`.
"""

from lakesync.config.datasets import Dataset
from lakesync.discover.sources.base import DiscoverySource
from lakesync.discover.sources.listing import ListingSource
from lakesync.discover.stores import LakeStore


def source_for(dataset: Dataset, store: LakeStore) -> DiscoverySource:
    """The discovery source of a dataset (a listing of its store)."""
    return ListingSource(store, dataset.pattern, ordered_keys=dataset.ordered_keys)


__all__ = ["DiscoverySource", "ListingSource", "source_for"]

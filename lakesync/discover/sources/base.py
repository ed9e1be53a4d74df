"""The discovery-source protocol."""

from __future__ import annotations

from typing import Protocol

from lakesync.discover.planning import Discovery
from lakesync.state.ledger_state import DatasetLedger


class DiscoverySource(Protocol):
    """Finds a dataset's files that its ledger does not know (or knows with other content)."""

    description: str
    """Where the source looks, for messages (never a secret)."""

    def scan(self, state: DatasetLedger) -> Discovery:
        """The dataset's files compared with ``state`` (its ledger now): new, changed, totals.

        Raises :class:`~lakesync.discover.stores.LakeUnavailableError` when the lake cannot be
        reached; reads nothing but the lake's listing (or its events) and ``state``.
        """
        ...

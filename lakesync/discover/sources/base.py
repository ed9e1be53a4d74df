"""The discovery-source protocol."""

from __future__ import annotations

from typing import Protocol

from lakesync.discover.planning import Discovery
from lakesync.state.ledger_state import DatasetLedger


class DiscoverySource(Protocol):
    """Finds a dataset's files that its ledger does not know (or knows with other content)."""

    description: str
    """Where the source looks, for messages (never a secret)."""

    def scan(self, state: DatasetLedger, *, after: str | None = None, limit: int | None = None) -> Discovery:
        """The dataset's files compared with ``state`` (its ledger now): new, changed, totals.

        A listing source lists at most ``limit`` files after the path ``after`` when given (a
        sensor's listing resumed across ticks); a source that does not list ignores both.

        Raises :class:`~lakesync.discover.stores.LakeUnavailableError` when the lake cannot be
        reached; reads nothing but the lake's listing (or its events) and ``state``.
        """
        ...

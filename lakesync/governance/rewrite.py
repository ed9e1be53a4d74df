"""What the commands that rewrite stored rows (erase, pii apply) share: how they go about it, and
the one thing that stops a purge."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from lakesync.config.models import LakesyncConfig
from lakesync.governance.errors import ErasureError
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger


@dataclass(frozen=True)
class Rewrite:
    """How a rewrite of stored rows goes: for real or not, and whether old versions go too."""

    dry_run: bool = False
    """Say what would change; change nothing."""
    purge: bool = False
    """Also remove the earlier versions (old files, commits, change data): ends time travel."""
    actor: str | None = None
    """Who asked (recorded in the audit trail)."""

    @property
    def purges(self) -> bool:
        return self.purge and not self.dry_run


def refuse_while_syncing(config: LakesyncConfig, lakehouse: Lakehouse, tables: Collection[str]) -> None:
    """A purge deletes unreferenced files at once: refuse while a batch of these tables is in flight."""
    ledger = Ledger(lakehouse)
    for lake, spec in config.lakes.items():
        for name, dataset in spec.datasets.items():
            if dataset.table not in tables:
                continue
            pending = ledger.read(f"{lake}.{name}").pending
            if pending:
                msg = (
                    f"--purge refused: batch {pending[0].version} of {lake}.{name} (table {dataset.table!r}) "
                    "is planned but not done — a sync is running, or one stopped and the next sync will "
                    "finish it; purging now could delete the files it is writing. Run this again when "
                    "that sync is done"
                )
                raise ErasureError(msg)

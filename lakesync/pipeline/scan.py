"""What a sensor tick sees: what a dataset's discovery source found, compared with its ledger."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from lakesync.discover import Discovery
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.state.ledger_state import DatasetLedger


@dataclass(frozen=True)
class DatasetScan:
    key: str
    discovery: Discovery
    pending: tuple[int, ...]
    """Batches planned but not finished (a run died or failed); the next run completes them."""
    newest_file: datetime | None = None
    """Modification time of the newest file listed now or known to the ledger."""
    oldest_waiting: datetime | None = None
    """Modification time of the oldest file not ingested yet (new, or in a pending batch)."""
    last_ingested: datetime | None = None
    """When the ledger last recorded a file as ingested or quarantined."""


def scan_dataset(
    runtime: DatasetRuntime, state: DatasetLedger, *, after: str | None = None, limit: int | None = None
) -> DatasetScan:
    """Ask the dataset's source what is new against ``state`` (its ledger now), listing at most
    ``limit`` files after ``after`` when given (a sensor's page); raises ``LakeUnavailableError``."""
    found = runtime.source.scan(state, after=after, limit=limit)
    if runtime.config.changed == "reingest":
        found = replace(found, new=(*found.new, *found.changed), changed=())
    known = state.state.select(["modified"])["modified"].max()
    newest = max((t for t in (found.newest, known) if isinstance(t, datetime)), default=None)
    waiting = [f.modified for f in found.new] + [f.modified for p in state.pending for f in p.files]
    return DatasetScan(
        runtime.key,
        found,
        tuple(p.version for p in state.pending),
        newest_file=newest,
        oldest_waiting=min(waiting, default=None),
        last_ingested=state.last_recorded_at,
    )

"""What a sensor tick needs: a dataset's listing compared with its ledger (no writes)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from lakesync.discover import DatasetLedger, Discovery, Ledger, discover
from lakesync.pipeline.runtime import DatasetRuntime


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


def start_after(runtime: DatasetRuntime, state: DatasetLedger) -> str | None:
    """Where a listing may start for keys that only grow: after the greatest key known."""
    if not runtime.config.ordered_keys or state.files.is_empty():
        return None
    last = state.files["path"].max()
    return str(last) if last is not None else None


def scan_dataset(runtime: DatasetRuntime, ledger: Ledger) -> DatasetScan:
    """List the dataset and diff it against the ledger; raises ``LakeUnavailableError``."""
    state = ledger.read(runtime.key)
    listing = runtime.store.list(runtime.config.pattern, start_after=start_after(runtime, state))
    found = discover(listing, state.known_tags())
    if runtime.config.changed == "reingest":
        found = replace(found, new=(*found.new, *found.changed), changed=())
    known = state.events["modified"].max() if state.events is not None and state.events.height else None
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

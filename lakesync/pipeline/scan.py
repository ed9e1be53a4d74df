"""What a sensor tick needs: a dataset's listing compared with its ledger (no writes)."""

from __future__ import annotations

from dataclasses import dataclass

from lakesync.discover import Discovery, Ledger, discover
from lakesync.pipeline.runtime import DatasetRuntime


@dataclass(frozen=True)
class DatasetScan:
    key: str
    discovery: Discovery
    pending: tuple[int, ...]
    """Batches planned but not finished (a run died or failed); the next run completes them."""


def scan_dataset(runtime: DatasetRuntime, ledger: Ledger) -> DatasetScan:
    """List the dataset and diff it against the ledger; raises ``LakeUnavailableError``."""
    state = ledger.read(runtime.key)
    found = discover(runtime.store.list(runtime.config.pattern), state.known_tags())
    return DatasetScan(runtime.key, found, tuple(p.version for p in state.pending))

"""Where every dataset and table stands, from the ledger, a listing and the Delta log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lakesync.config import LakesyncConfig
from lakesync.discover import LakeStore, LakeUnavailableError, discover
from lakesync.pipeline.runtime import dataset_runtimes
from lakesync.state.lakehouse import Lakehouse, row_count
from lakesync.state.ledger import Ledger


@dataclass(frozen=True)
class DatasetStatus:
    key: str
    lake: str
    dataset: str
    table: str
    files_in_lake: int | None
    """Files matching the pattern now (``None`` when the lake cannot be listed)."""
    files_known: int
    files_ingested: int
    files_quarantined: int
    files_new: int | None
    batches_pending: int
    last_ingested_at: datetime | None
    error: str | None = None


@dataclass(frozen=True)
class TableStatus:
    table: str
    delta_version: int | None
    rows: int
    quarantined_rows: int
    last_commit_at: datetime | None
    superseded_rows: int = 0
    """Row versions a merge replaced by a newer one with the same key (kept at ``_superseded``)."""


def dataset_statuses(
    config: LakesyncConfig, lakehouse: Lakehouse, *, stores: Mapping[str, LakeStore] | None = None
) -> list[DatasetStatus]:
    ledger = Ledger(lakehouse)
    statuses = []
    for runtime in dataset_runtimes(config, stores=stores):
        state = ledger.read(runtime.key)
        files: int | None = None
        new: int | None = None
        error = None
        try:
            found = discover(runtime.store.list(runtime.config.pattern), state.known)
            files, new = found.files, len(found.new)
        except LakeUnavailableError as exc:
            error = str(exc)
        statuses.append(
            DatasetStatus(
                key=runtime.key,
                lake=runtime.lake,
                dataset=runtime.name,
                table=runtime.table,
                files_in_lake=files,
                files_known=state.files.height,
                files_ingested=state.count("ingested"),
                files_quarantined=state.count("quarantined"),
                files_new=new,
                batches_pending=len(state.pending),
                last_ingested_at=state.last_recorded_at,
                error=error,
            )
        )
    return statuses


def table_statuses(config: LakesyncConfig, lakehouse: Lakehouse) -> list[TableStatus]:
    statuses = []
    for table in config.tables:
        snapshot = lakehouse.open(lakehouse.table_uri(table))
        quarantine = lakehouse.open(lakehouse.quarantine_uri(table))
        superseded = lakehouse.open(lakehouse.superseded_uri(table))
        last = None
        if snapshot is not None:
            history = snapshot.history(1)
            if history:
                last = datetime.fromtimestamp(int(history[0]["timestamp"]) / 1000, tz=UTC)
        statuses.append(
            TableStatus(
                table=table,
                delta_version=snapshot.version() if snapshot is not None else None,
                rows=row_count(snapshot) if snapshot is not None else 0,
                quarantined_rows=row_count(quarantine) if quarantine is not None else 0,
                last_commit_at=last,
                superseded_rows=row_count(superseded) if superseded is not None else 0,
            )
        )
    return statuses


@dataclass(frozen=True)
class EventsStatus:
    """Where a lake in events mode stands: what waits, when it was last received and reconciled."""

    lake: str
    source: str
    announced_waiting: int
    """Files announced (by events or a reconciliation) that no batch has taken yet."""
    last_intake_at: datetime | None
    last_reconciled_at: datetime | None
    missed_last: int
    missed_total: int
    messages_not_understood: int
    recent_failures: tuple[str, ...] = ()
    """The last messages not understood, with their reason."""


def events_statuses(config: LakesyncConfig, lakehouse: Lakehouse) -> list[EventsStatus]:
    from lakesync.state.inbox import Inbox  # noqa: PLC0415 - only for lakes in events mode

    ledger = Ledger(lakehouse)
    found = []
    for name, lake in config.lakes.items():
        source = lake.discovery.source
        if lake.discovery.mode != "events" or source is None:
            continue
        summary = Inbox(lakehouse).summary(name)
        waiting = sum(len(ledger.read(f"{name}.{d}").announced()) for d in lake.datasets)
        found.append(
            EventsStatus(
                name,
                source.kind,
                waiting,
                summary.last_intake,
                summary.last_reconciled,
                summary.missed_last,
                summary.missed_total,
                summary.failed_messages,
                summary.recent_failures,
            )
        )
    return found

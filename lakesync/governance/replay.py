"""Quarantine, reviewed: what was rejected, grouped per file and batch, and its replay.

A replay ingests again, after a contract or mapping fix (or a drift approval), what a batch
quarantined from one file: the rows it rejected, or the whole file when the file itself was
held back. It is an ordinary batch of the dataset (planned in the ledger, committed with its
application transaction), so it happens exactly once; rows that still fail are quarantined
again, under the replay's batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from lakesync.config import LakesyncConfig
from lakesync.discover import LakeStore
from lakesync.pipeline.runtime import dataset_runtimes
from lakesync.state.lakehouse import Lakehouse, read_current
from lakesync.state.ledger import Ledger
from lakesync.state.quarantine import QUARANTINE_ARROW
from lakesync.state.values import BatchPlan, dataset_id


@dataclass(frozen=True)
class QuarantineGroup:
    """What one batch quarantined from one file."""

    id: str
    table: str
    lake: str
    dataset: str
    file: str
    batch: int
    level: str
    """``file`` when the file itself was rejected (unreadable), else ``row``."""
    records: int
    rows: tuple[int, ...]
    rules: tuple[str, ...]
    reason: str
    quarantined_at: datetime
    replayed_in: int | None
    """The batch that replayed (or will replay) it, if any."""

    @property
    def key(self) -> str:
        return dataset_id(self.lake, self.dataset)


def group_id(table: str, lake: str, dataset: str, file: str, batch: int) -> str:
    return hashlib.sha256(f"{table}\n{lake}\n{dataset}\n{file}\n{batch}".encode()).hexdigest()[:8]


def quarantine_groups(
    config: LakesyncConfig, lakehouse: Lakehouse, *, table: str | None = None
) -> list[QuarantineGroup]:
    """Every file and batch with quarantined rows or files, newest first."""
    ledger = Ledger(lakehouse)
    states: dict[str, object] = {}
    groups: list[QuarantineGroup] = []
    for name in config.tables:
        if table is not None and name != table:
            continue
        snapshot = lakehouse.open(lakehouse.quarantine_uri(name))
        if snapshot is None:
            continue
        frame = pl.from_arrow(read_current(snapshot, QUARANTINE_ARROW))
        assert isinstance(frame, pl.DataFrame)
        summary = frame.group_by(["lake", "dataset", "file", "batch"]).agg(
            pl.len().alias("records"),
            (pl.col("level") == "file").any().alias("whole_file"),
            pl.col("row").drop_nulls().sort().alias("rows"),
            pl.col("rules")
            .list.explode(keep_nulls=False, empty_as_null=False)
            .unique()
            .sort()
            .alias("rules"),
            pl.col("reason").first().alias("reason"),
            pl.col("quarantined_at").min().alias("quarantined_at"),
        )
        for row in summary.iter_rows(named=True):
            key = dataset_id(row["lake"], row["dataset"])
            if key not in states:
                states[key] = ledger.read(key)
            state = states[key]
            replayed = state.replay_batch(row["file"], row["batch"])  # type: ignore[attr-defined]
            groups.append(
                QuarantineGroup(
                    id=group_id(name, row["lake"], row["dataset"], row["file"], row["batch"]),
                    table=name,
                    lake=row["lake"],
                    dataset=row["dataset"],
                    file=row["file"],
                    batch=int(row["batch"]),
                    level="file" if row["whole_file"] else "row",
                    records=int(row["records"]),
                    rows=tuple(row["rows"]),
                    rules=tuple(row["rules"]),
                    reason=str(row["reason"]),
                    quarantined_at=row["quarantined_at"],
                    replayed_in=replayed,
                )
            )
    return sorted(groups, key=lambda g: (g.quarantined_at, g.file), reverse=True)


def plan_replays(
    config: LakesyncConfig,
    lakehouse: Lakehouse,
    groups: Sequence[QuarantineGroup],
    *,
    run_id: str,
    stores: Mapping[str, LakeStore] | None = None,
) -> list[BatchPlan]:
    """Plan a replay batch per dataset and source batch; the table's next run ingests them.

    Raises ``ValueError`` naming a group that was already replayed or whose file is gone.
    """
    runtimes = {r.key: r for r in dataset_runtimes(config, stores=stores)}
    ledger = Ledger(lakehouse)
    plans = []
    by_source: dict[tuple[str, int], list[QuarantineGroup]] = {}
    for group in groups:
        if group.key not in runtimes:
            msg = f"quarantine {group.id}: dataset {group.key} is no longer in the configuration"
            raise ValueError(msg)
        if group.replayed_in is not None:
            where = f"{group.lake}/{group.file}"
            msg = f"quarantine {group.id} ({where}) was already replayed in batch {group.replayed_in}"
            raise ValueError(msg)
        by_source.setdefault((group.key, group.batch), []).append(group)
    for (key, batch), members in by_source.items():
        runtime = runtimes[key]
        files = []
        for group in members:
            entry = runtime.store.stat(group.file)
            if entry is None:
                msg = f"quarantine {group.id}: {group.lake}/{group.file} no longer exists in the lake"
                raise ValueError(msg)
            files.append((entry, None if group.level == "file" else group.rows))
        plans.append(ledger.plan_replay(key, runtime.table, files, replay_of=batch, run_id=run_id))
    return plans

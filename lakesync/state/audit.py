"""The audit trail: ``lakehouse/_audit``, one record per file and per batch of every sync, and
per drift decision; written in the batch flow, exactly once (application transaction
``audit:<lake>.<dataset>`` = batch), before the ledger marks the batch done.

Credentials appear by *name* only (the environment variables a lake's secrets come from).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.config.models import LakesyncConfig
from lakesync.state.append import Append, Appended, append_once
from lakesync.state.lakehouse import Lakehouse, read_current, transaction_version
from lakesync.state.values import BatchPlan, FileOutcome

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string()),
        pa.field("lake", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("table", pa.string()),
        pa.field("batch", pa.int64()),
        pa.field("replay_of", pa.int64()),
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("modified", pa.timestamp("us", tz="UTC")),
        pa.field("etag", pa.string()),
        pa.field("checksum", pa.string()),
        pa.field("status", pa.string()),
        pa.field("rows_read", pa.int64()),
        pa.field("rows_committed", pa.int64()),
        pa.field("rows_quarantined", pa.int64()),
        pa.field("rows_erased", pa.int64()),
        pa.field("rows_rescued", pa.int64()),
        pa.field("table_version", pa.int64()),
        pa.field("contract", pa.string()),
        pa.field("drift", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("credential", pa.string()),
        pa.field("actor", pa.string()),
        pa.field("note", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("discovered_by", pa.string()),
    ]
)
"""``kind``: ``file`` (a file of a batch), ``batch`` (a batch; ``replay`` for a quarantine
replay), ``drift_decision``, ``erasure_request``, ``erasure``, ``pii_apply``, ``file_deleted``
(a file deleted from its lake, its rows removed: ``on_delete: propagate``), ``dataset_added``
(a dataset lakesync added itself: ``autonomy.new_datasets: auto``)."""


def credential_names(config: LakesyncConfig, lake: str) -> str | None:
    """The environment variable names a lake's credentials come from (never their values)."""
    return ", ".join(config.lakes[lake].secret_names) or None


@dataclass(frozen=True)
class Committed:
    """What every audit record of a round's batches shares."""

    table_version: int | None
    run_id: str
    contract: str
    """The contract's fingerprint."""
    recorded_at: datetime


def batch_records(
    plan: BatchPlan,
    outcomes: Sequence[FileOutcome],
    committed: Committed,
    *,
    credential: str | None,
    discovered: Callable[[str], str | None] = lambda _: None,
) -> list[dict[str, Any]]:
    """The audit records of one batch: one per file, then one for the batch. ``credential``
    names the environment variables the lake's secrets came from (never their values);
    ``discovered`` says how each file was found (event, reconcile, listing)."""
    lake, dataset = plan.dataset.split(".", 1)
    common = {
        "recorded_at": committed.recorded_at,
        "run_id": committed.run_id,
        "lake": lake,
        "dataset": dataset,
        "table": plan.table,
        "batch": plan.version,
        "replay_of": plan.replay_of,
        "table_version": committed.table_version,
        "contract": committed.contract,
        "credential": credential,
    }
    records = [
        {
            **common,
            "kind": "file",
            "path": outcome.entry.path,
            "size": outcome.entry.size,
            "modified": outcome.entry.modified,
            "etag": outcome.entry.etag,
            "checksum": outcome.checksum,
            "status": outcome.status,
            "rows_read": outcome.rows_read,
            "rows_committed": outcome.rows_committed,
            "rows_quarantined": outcome.rows_quarantined,
            "rows_erased": outcome.rows_erased,
            "rows_rescued": outcome.rows_rescued,
            "drift": "; ".join(outcome.drift.get("actions", [])) or None if outcome.drift else None,
            "reason": outcome.reason,
            "discovered_by": discovered(outcome.entry.path),
        }
        for outcome in outcomes
    ]
    records.append(
        {
            **common,
            "kind": "replay" if plan.replay_of is not None else "batch",
            "size": sum(o.entry.size for o in outcomes),
            "status": f"{sum(o.status == 'ingested' for o in outcomes)} ingested, "
            f"{sum(o.status == 'quarantined' for o in outcomes)} quarantined",
            "rows_read": sum(o.rows_read for o in outcomes),
            "rows_committed": sum(o.rows_committed for o in outcomes),
            "rows_quarantined": sum(o.rows_quarantined for o in outcomes),
            "rows_erased": sum(o.rows_erased for o in outcomes),
            "rows_rescued": sum(o.rows_rescued for o in outcomes),
            "detail": json.dumps({"files": len(outcomes)}),
        }
    )
    return records


class AuditLog:
    """Append to and query ``<lakehouse>/_audit``."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.uri = lakehouse.audit_uri

    def record_batches(self, records: Mapping[str, tuple[int, list[dict[str, Any]]]]) -> int | None:
        """Append each dataset's batch records once: ``{dataset: (batch, records)}``. Batches a
        retried run already audited are left out. Returns the audit table's version."""

        def build(snapshot: DeltaTable | None) -> Append[None] | None:
            pending = {k: v for k, v in records.items() if transaction_version(snapshot, f"audit:{k}") < v[0]}
            if not pending:
                return None
            return Append(
                pa.Table.from_pylist(
                    [r for _, batch in pending.values() for r in batch], schema=AUDIT_SCHEMA
                ),
                transactions={f"audit:{k}": v[0] for k, v in pending.items()},
                metadata={"lakesync.operation": "audit"},
            )

        return append_once(self.lakehouse, self.uri, build, what="the audit records of a batch").version

    def append(self, rows: Sequence[dict[str, Any]], *, what: str) -> int | None:
        """Append records that need no exactly-once guard (each is a new fact: a decision, an
        erasure); raises :class:`~lakesync.state.append.AppendContentionError` if it cannot."""
        now = datetime.now(tz=UTC)
        data = pa.Table.from_pylist([{"recorded_at": now, **r} for r in rows], schema=AUDIT_SCHEMA)
        appended: Appended[None] = append_once(
            self.lakehouse,
            self.uri,
            lambda _: Append(data, metadata={"lakesync.operation": "audit"}),
            what=what,
        )
        return appended.version

    def details(self, *kinds: str) -> list[str]:
        """The ``detail`` of every record of these kinds (reads two columns, not the whole trail)."""
        table = read_current(self.lakehouse.open(self.uri), AUDIT_SCHEMA, columns=["kind", "detail"])
        frame: pl.DataFrame = pl.from_arrow(table)  # type: ignore[assignment]
        chosen = frame.filter(pl.col("kind").is_in(list(kinds)))
        return [str(d) for d in chosen["detail"].drop_nulls().to_list()]

    def read(
        self, *, table: str | None = None, file: str | None = None, since: datetime | None = None
    ) -> pl.DataFrame:
        """Records, oldest first; ``file`` matches ``path`` or ``<lake>/<path>`` as a substring."""
        frame: pl.DataFrame = pl.from_arrow(read_current(self.lakehouse.open(self.uri), AUDIT_SCHEMA))  # type: ignore[assignment]
        if table is not None:
            frame = frame.filter(pl.col("table") == table)
        if file is not None:
            where = pl.concat_str([pl.col("lake"), pl.lit("/"), pl.col("path")])
            frame = frame.filter(
                where.str.contains(file, literal=True) | pl.col("path").str.contains(file, literal=True)
            )
        if since is not None:
            frame = frame.filter(pl.col("recorded_at") >= since)
        return frame.sort("recorded_at", maintain_order=True)

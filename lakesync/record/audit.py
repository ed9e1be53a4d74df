"""The audit trail: ``lakehouse/_audit``, one record per file and per batch of every sync, and
per drift decision; written in the batch flow, exactly once (application transaction
``audit:<lake>.<dataset>`` = batch), before the ledger marks the batch done.

Credentials appear by *name* only (the environment variables a lake's secrets come from).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake.exceptions import CommitFailedError

from lakesync.config.models import LakesyncConfig
from lakesync.discover.ledger import BatchPlan, FileOutcome
from lakesync.lakehouse import Lakehouse, read_current, transaction_version

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
        pa.field("table_version", pa.int64()),
        pa.field("contract", pa.string()),
        pa.field("drift", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("credential", pa.string()),
        pa.field("actor", pa.string()),
        pa.field("note", pa.string()),
        pa.field("detail", pa.string()),
    ]
)
"""``kind``: ``file`` (a file of a batch), ``batch`` (a batch; ``replay`` for a quarantine
replay), ``drift_decision``."""
_ATTEMPTS = 32


def credential_names(config: LakesyncConfig, lake: str) -> str | None:
    """The environment variable names a lake's credentials come from (never their values)."""
    credentials = getattr(config.lakes[lake], "credentials", None)
    if credentials is None:
        return None
    names = [
        getattr(value, "env", None)
        for value in (getattr(credentials, f) for f in type(credentials).model_fields)
    ]
    return ", ".join(n for n in names if n) or None


def batch_records(
    plan: BatchPlan,
    outcomes: Sequence[FileOutcome],
    *,
    table_version: int | None,
    run_id: str,
    contract: str,
    credential: str | None,
    recorded_at: datetime,
) -> list[dict[str, Any]]:
    """The audit records of one batch: one per file, then one for the batch."""
    lake, dataset = plan.dataset.split(".", 1)
    common = {
        "recorded_at": recorded_at,
        "run_id": run_id,
        "lake": lake,
        "dataset": dataset,
        "table": plan.table,
        "batch": plan.version,
        "replay_of": plan.replay_of,
        "table_version": table_version,
        "contract": contract,
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
            "drift": "; ".join(outcome.drift.get("actions", [])) or None if outcome.drift else None,
            "reason": outcome.reason,
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
        for _ in range(_ATTEMPTS):
            snapshot = self.lakehouse.open(self.uri)
            pending = {k: v for k, v in records.items() if transaction_version(snapshot, f"audit:{k}") < v[0]}
            if not pending:
                return snapshot.version() if snapshot is not None else None
            rows = [r for _, batch in pending.values() for r in batch]
            try:
                self.lakehouse.append(
                    snapshot if snapshot is not None else self.uri,
                    pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA),
                    app_transactions={f"audit:{k}": v[0] for k, v in pending.items()},
                    metadata={"lakesync.operation": "audit"},
                    schema_mode="merge",
                )
            except CommitFailedError:
                continue
            written = self.lakehouse.open(self.uri)
            return written.version() if written is not None else None
        msg = "could not append to the audit table (concurrent commits)"
        raise RuntimeError(msg)

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append records that need no exactly-once guard (decisions: each is a new fact)."""
        for _ in range(_ATTEMPTS):
            snapshot = self.lakehouse.open(self.uri)
            try:
                self.lakehouse.append(
                    snapshot if snapshot is not None else self.uri,
                    pa.Table.from_pylist(
                        [{"recorded_at": datetime.now(tz=UTC), **r} for r in rows], schema=AUDIT_SCHEMA
                    ),
                    metadata={"lakesync.operation": "audit"},
                    schema_mode="merge",
                )
            except CommitFailedError:
                continue
            return

    def details(self, kind: str) -> list[str]:
        """The ``detail`` of every record of ``kind`` (reads two columns, not the whole trail)."""
        table = read_current(self.lakehouse.open(self.uri), AUDIT_SCHEMA, columns=["kind", "detail"])
        frame: pl.DataFrame = pl.from_arrow(table)  # type: ignore[assignment]
        return [str(d) for d in frame.filter(pl.col("kind") == kind)["detail"].drop_nulls().to_list()]

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

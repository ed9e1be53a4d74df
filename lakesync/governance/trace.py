"""Where a row came from: ``lakesync trace --table T --where "order_id = 42"``.

Each row carries its source (``_lakesync_file`` = ``<lake>/<path>``, ``_lakesync_row``, names
configurable); the
ledger knows which batch, run and Delta version committed that file; merge tables keep Delta's
change data feed, which lists every later version that changed a row with the same key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
import pyarrow as pa

from lakesync.commit.provenance import Provenance
from lakesync.config import LakesyncConfig
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger

MAX_ROWS = 100


class TraceError(ValueError):
    """The trace cannot be answered as asked (unknown table, a filter that does not parse...)."""


@dataclass(frozen=True)
class Change:
    version: int
    change: str
    """``insert``, ``update_preimage``, ``update_postimage`` or ``delete`` (Delta's change types)."""
    at: datetime | None
    source: str | None
    """The file the new version of the row came from."""


@dataclass(frozen=True)
class RowTrace:
    row: dict[str, Any]
    lake: str
    dataset: str | None
    file: str
    record: int | None
    batch: int | None = None
    run_id: str | None = None
    table_version: int | None = None
    ingested_at: datetime | None = None
    history: tuple[Change, ...] = field(default_factory=tuple)
    """Every committed version of this key (merge tables' change data feed), oldest first."""
    superseded: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """Versions of this key that lost a merge: (source file#row, why)."""


def _where(text: str) -> pl.Expr:
    try:
        return pl.sql_expr(text)
    except Exception as exc:
        msg = f'--where {text!r} is not a SQL condition polars understands ({exc}); e.g. "order_id = 42"'
        raise TraceError(msg) from exc


def trace_rows(config: LakesyncConfig, lakehouse: Lakehouse, table: str, where: str) -> list[RowTrace]:
    """The current rows of ``table`` matching ``where``, each with its source and history."""
    if table not in config.tables:
        msg = f"unknown table {table!r} (tables: {', '.join(config.tables)})"
        raise TraceError(msg)
    snapshot = lakehouse.open(lakehouse.table_uri(table))
    if snapshot is None:
        return []
    options = dict(lakehouse.storage_options) or None
    try:
        rows = pl.scan_delta(lakehouse.table_uri(table), version=snapshot.version(), storage_options=options)
        found = rows.filter(_where(where)).head(MAX_ROWS).collect()
    except pl.exceptions.PolarsError as exc:
        msg = f"--where {where!r} cannot be applied to {table!r}: {exc}"
        raise TraceError(msg) from exc
    datasets = [
        f"{lake}.{name}"
        for lake, spec in config.lakes.items()
        for name, ds in spec.datasets.items()
        if ds.table == table
    ]
    ledger = Ledger(lakehouse)
    events = {key: ledger.read(key).events for key in datasets}
    keys = config.tables[table].keys
    merge = config.tables[table].mode == "merge" and bool(keys)
    provenance = Provenance.of(config)
    cdf = _changes(snapshot, found, keys, provenance.file) if merge else None
    losers = lakehouse.open(lakehouse.superseded_uri(table)) if merge else None
    superseded: pl.DataFrame | None = pl.from_arrow(losers.to_pyarrow_table()) if losers is not None else None  # type: ignore[assignment]
    traces = []
    for row in found.iter_rows(named=True):
        source = str(row.get(provenance.file) or "")
        lake, _, path = source.partition("/")
        hit = _ingestion(events, lake, path)
        history: tuple[Change, ...] = ()
        same_key = pl.all_horizontal([pl.col(k) == row[k] for k in keys]) if keys else None
        if cdf is not None and same_key is not None:
            history = tuple(
                Change(
                    int(c["_commit_version"]),
                    str(c["_change_type"]),
                    c["_commit_timestamp"],
                    c.get(provenance.file),
                )
                for c in cdf.filter(same_key & (pl.col("_change_type") != "update_preimage")).iter_rows(
                    named=True
                )
            )
        lost: tuple[tuple[str, str], ...] = ()
        if superseded is not None and same_key is not None:
            lost = tuple(
                (f"{s[provenance.file]}#{s[provenance.row]}", str(s["_lakesync_superseded_reason"]))
                for s in superseded.filter(same_key).iter_rows(named=True)
            )
        traces.append(
            RowTrace(
                row={
                    k: v
                    for k, v in row.items()
                    if k not in provenance.names and not k.startswith("_lakesync_")
                },
                lake=lake,
                dataset=hit["dataset"] if hit else None,
                file=path,
                record=row.get(provenance.row),
                batch=hit["batch"] if hit else None,
                run_id=hit["run_id"] if hit else None,
                table_version=hit["table_version"] if hit else None,
                ingested_at=hit["recorded_at"] if hit else None,
                history=history,
                superseded=lost,
            )
        )
    return traces


def _internal(column: str, provenance: Provenance) -> bool:
    """Provenance, and lakesync's own columns: not part of the row's data."""
    return column in provenance.names or column.startswith("_lakesync_")


def _ingestion(events: Mapping[str, pl.DataFrame | None], lake: str, path: str) -> dict[str, Any] | None:
    """The latest ledger record of ``path`` being ingested by a dataset of ``lake``."""
    for key, frame in events.items():
        if not key.startswith(f"{lake}.") or frame is None or frame.is_empty():
            continue
        done = frame.filter((pl.col("path") == path) & (pl.col("event") == "ingested"))
        if done.height:
            latest = done.sort("batch").tail(1).row(0, named=True)
            return {
                "dataset": key,
                "batch": latest["batch"],
                "run_id": latest.get("run_id"),
                "table_version": latest.get("table_version"),
                "recorded_at": latest["recorded_at"],
            }
    return None


def _sql_literal(value: Any) -> str | None:
    """``value`` as a Delta SQL literal (``None`` when lakesync does not spell its type)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return None


def _key_predicate(found: pl.DataFrame, keys: list[str]) -> str | None:
    """``(k1 = v1 AND k2 = v2) OR ...`` for the keys found, so the change feed is read for them only."""
    terms = []
    for row in found.select(keys).unique().iter_rows(named=True):
        parts = []
        for key, value in row.items():
            literal = _sql_literal(value)
            if literal is None:
                return None
            parts.append(f"`{key}` = {literal}")
        terms.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(terms) or None


def _changes(snapshot: Any, found: pl.DataFrame, keys: list[str], source: str) -> pl.DataFrame | None:
    """The change data feed rows of the keys found (every version since the table began).

    The keys are pushed into the read as a predicate and only the columns shown are read.
    """
    if found.is_empty():
        return None
    columns = [*keys, source, "_change_type", "_commit_version", "_commit_timestamp"]
    try:
        reader = snapshot.load_cdf(starting_version=0, columns=columns, predicate=_key_predicate(found, keys))
    except Exception:  # noqa: BLE001 - a table without a change data feed: no history to show
        return None
    table = pa.table(reader.read_all()) if hasattr(reader, "read_all") else pa.table(reader)
    changes: pl.DataFrame = pl.from_arrow(table)  # type: ignore[assignment]
    wanted = found.select(keys).unique()
    return changes.join(wanted, on=keys, how="semi").sort("_commit_version")

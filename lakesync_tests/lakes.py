"""Helpers that build small real lakes and configurations on disk for tests."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ORDERS_CONTRACT: dict[str, Any] = {
    "columns": {
        "order_id": {"type": "int64", "nullable": False, "unique": True},
        "customer_id": {"type": "int64", "nullable": False},
        "amount": {"type": "float64", "checks": {"ge": 0}},
        "currency": {"type": "string", "checks": {"isin": ["EUR", "USD", "GBP", "JPY"]}},
        "ordered_at": {"type": "datetime"},
    }
}
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def write_config(
    root: Path,
    *,
    lakes: dict[str, Any],
    tables: dict[str, Any],
    lakehouse: str = "lakehouse",
    features: dict[str, Any] | None = None,
) -> Path:
    path = root / "lakesync.yaml"
    document: dict[str, Any] = {"lakehouse": {"uri": lakehouse}, "lakes": lakes, "tables": tables}
    if features:
        document["features"] = features
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


SPEND_FEATURE = {
    "inputs": ["orders"],
    "group_by": ["customer_id"],
    "aggregations": {"orders": "count()", "total": "sum(amount)", "last_order_at": "max(ordered_at)"},
}


def contract_lake(root: Path) -> Path:
    """A lake of good orders feeding ``orders`` and a ``spend`` feature; :func:`break_contract`
    then lands a file where most rows fail the contract."""
    write_orders_parquet(root / "lake" / "a.parquet", orders_rows(1, 100), mtime=T0)
    return write_config(
        root,
        lakes={
            "eu": local_lake(
                root / "lake", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table(max_failed_rows="10%")},
        features={"spend": SPEND_FEATURE},
    )


def break_contract(root: Path, name: str = "b.parquet", start: int = 1000) -> Path:
    """60 of 100 rows with a negative amount: above the table's max_failed_rows of 10%."""
    rows = orders_rows(start, 100)
    for row in rows[:60]:
        row["amount"] = -1.0
    return write_orders_parquet(root / "lake" / name, rows, mtime=T0 + timedelta(hours=1))


def orders_table(*, mode: str = "append", drift: str = "evolve", **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"mode": mode, "drift": drift, "contract": ORDERS_CONTRACT, **extra}
    if mode == "merge":
        table.setdefault("keys", ["order_id"])
    return table


def local_lake(root: Path, datasets: dict[str, Any]) -> dict[str, Any]:
    return {"provider": "local", "root": str(root), "datasets": datasets}


def orders_rows(start: int, count: int, **overrides: Any) -> list[dict[str, Any]]:
    rows = [
        {
            "order_id": start + i,
            "customer_id": 1000 + i,
            "amount": float(10 + i),
            "currency": "EUR",
            "ordered_at": T0 + timedelta(minutes=i),
        }
        for i in range(count)
    ]
    for row in rows:
        row.update(overrides)
    return rows


def write_orders_parquet(path: Path, rows: list[dict[str, Any]], *, mtime: datetime | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer_id", pa.int64()),
            ("amount", pa.float64()),
            ("currency", pa.string()),
            ("ordered_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    if mtime is not None:
        touch(path, mtime)
    return path


def write_orders_csv(
    path: Path, rows: list[dict[str, Any]], *, delimiter: str = ",", mtime: datetime | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["order_id", "customer_id", "amount", "currency", "ordered_at"]
    lines = [delimiter.join(header)]
    for row in rows:
        values = []
        for name in header:
            value = row.get(name)
            values.append(
                "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
            )
        lines.append(delimiter.join(values))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if mtime is not None:
        touch(path, mtime)
    return path


def touch(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def write_renamed_orders(
    path: Path, rows: list[dict[str, Any]], renames: dict[str, str], mtime: datetime, **cast: Any
) -> Path:
    """Orders as a lake that renamed some columns writes them (``cast``: column -> Arrow type)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{renames.get(k, k): v for k, v in r.items()} for r in rows])
    for column, arrow_type in cast.items():
        table = table.set_column(table.schema.get_field_index(column), column, table[column].cast(arrow_type))
    pq.write_table(table, path)
    touch(path, mtime)
    return path

"""Bad input, case by case: a clear error naming the file, the line or column and the reason;
the other files go on; and for every dataset, rows read = rows committed + rows quarantined."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakesync.config import LakesyncConfig, load_config
from lakesync.pipeline import sync_table
from lakesync.state.lakehouse import lakehouse_for
from lakesync.state.ledger import Ledger
from lakesync_tests.lakes import (
    T0,
    local_lake,
    orders_rows,
    orders_table,
    write_config,
    write_orders_csv,
    write_orders_parquet,
)

HEADER = "order_id,customer_id,amount,currency,ordered_at"


@dataclass(frozen=True)
class Case:
    fmt: str
    name: str
    write: Callable[[Path], None]
    committed: int
    """Rows of the bad file that are committed."""
    quarantined: int
    """Rows of the bad file quarantined (0 for a file quarantined as a whole)."""
    reason: str | None = None
    """Text the quarantine reason must contain (file-level when ``file_level``)."""
    file_level: bool = False
    options: dict[str, object] | None = None
    dataset: dict[str, object] | None = None
    """Settings of the dataset (besides its reader options)."""


def text(content: str | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    return write


def parquet(rows: list[dict[str, object]]) -> Callable[[Path], None]:
    return lambda path: write_orders_parquet(path, rows)


def truncated(path: Path) -> None:
    write_orders_parquet(path, orders_rows(500, 50))
    path.write_bytes(path.read_bytes()[:300])


def empty_parquet(path: Path) -> None:
    write_orders_parquet(path, [])


def csv_rows(*lines: str) -> Callable[[Path], None]:
    return text("\n".join([HEADER, *lines]) + "\n")


BIG = "x" * (10 * 1024 * 1024)
CASES = [
    Case("csv", "zero-byte.csv", text(b""), 0, 0, "the file is empty (0 bytes)", file_level=True),
    Case("parquet", "truncated.parquet", truncated, 0, 0, "not a readable parquet file", file_level=True),
    Case(
        "parquet",
        "not-parquet.parquet",
        text("order_id,customer_id\n1,2\n"),
        0,
        0,
        "not a readable parquet file",
        file_level=True,
    ),
    Case(
        "csv",
        "semicolons.csv",
        text(HEADER.replace(",", ";") + "\n500;1;1.0;EUR;2026-01-01T00:00:00Z\n"),
        0,
        0,
        "the delimiter is probably ';'",
        file_level=True,
    ),
    Case(
        "csv",
        "ragged.csv",
        csv_rows("500,1,1.0,EUR,2026-01-01T00:00:00Z", "501,1,1.0,EUR,2026-01-01T00:00:00Z,extra"),
        1,
        1,
        "line 3: a record has more fields than the header (6 fields, the header has 5)",
    ),
    Case(
        "csv",
        "ragged-whole-file.csv",
        csv_rows("500,1,1.0,EUR,2026-01-01T00:00:00Z", "501,1,1.0,EUR,2026-01-01T00:00:00Z,extra"),
        0,
        0,
        "line 3: a record has more fields than the header (6 fields, the header has 5)",
        file_level=True,
        dataset={"bad_records": "quarantine_file"},
    ),
    Case(
        "ndjson",
        "broken-line.ndjson",
        text(
            '{"order_id":500,"customer_id":1}\n{"order_id":501,"customer_id":\n{"order_id":502,"customer_id":2}\n'
        ),
        2,
        1,
        "line 2: not valid JSON",
    ),
    Case(
        "csv",
        "quoted-newline.csv",
        text(HEADER + ',note\n500,1,1.0,EUR,2026-01-01T00:00:00Z,"two\nlines"\n'),
        1,
        0,
    ),
    Case("csv", "bom.csv", text("\ufeff" + HEADER + "\n500,1,1.0,EUR,2026-01-01T00:00:00Z\n"), 1, 0),
    Case(
        "csv",
        "latin1.csv",
        text((HEADER + ",city\n500,1,1.0,EUR,2026-01-01T00:00:00Z,Zürich\n").encode("latin-1")),
        0,
        0,
        "line 2: byte",
        file_level=True,
    ),
    Case(
        "csv",
        "latin1-declared.csv",
        text((HEADER + ",city\n500,1,1.0,EUR,2026-01-01T00:00:00Z,Zürich\n").encode("latin-1")),
        1,
        0,
        options={"encoding": "latin1"},
    ),
    Case(
        "csv",
        "invalid-utf8.csv",
        text(HEADER.encode() + b"\n500,1,1.0,EUR,\xff\xfe\n"),
        0,
        0,
        "is not valid utf-8",
        file_level=True,
    ),
    Case(
        "csv",
        "duplicate-header.csv",
        text(HEADER + ",amount\n500,1,1.0,EUR,2026-01-01T00:00:00Z,2.0\n"),
        0,
        0,
        "'amount' appears more than once",
        file_level=True,
    ),
    Case("csv", "header-only.csv", text(HEADER + "\n"), 0, 0),
    Case(
        "csv",
        "ten-megabyte-field.csv",
        text(HEADER + f",note\n500,1,1.0,EUR,2026-01-01T00:00:00Z,{BIG}\n"),
        1,
        0,
    ),
    Case(
        "csv",
        "int64-overflow.csv",
        csv_rows("9223372036854775808,1,1.0,EUR,2026-01-01T00:00:00Z", "500,1,1.0,EUR,2026-01-01T00:00:00Z"),
        1,
        1,
        "OrderID: '9223372036854775808' is not a valid int64".replace("OrderID", "order_id"),
    ),
    Case(
        "csv",
        "nan-inf.csv",
        csv_rows("500,1,NaN,EUR,", "501,1,inf,EUR,", "502,1,-inf,EUR,"),
        2,
        1,
        "amount: '-inf' fails greater_than_or_equal_to(0)",
    ),
    Case(
        "ndjson",
        "mixed-types.ndjson",
        text(
            '{"order_id":500,"customer_id":1,"amount":1.5}\n{"order_id":501,"customer_id":"one","amount":2}\n'
        ),
        1,
        1,
        "customer_id: 'one' is not a valid int64",
    ),
    Case(
        "csv",
        "timestamps.csv",
        csv_rows(
            "500,1,1.0,EUR,2026-01-01T09:00:00+09:00",
            "501,1,1.0,EUR,2026-01-01 00:00:00",
            "502,1,1.0,EUR,2026-01-01T00:00:00Z",
            "503,1,1.0,EUR,01/01/2026 00:00",
        ),
        4,
        0,
    ),
    Case(
        "ndjson",
        "nested.ndjson",
        text('{"order_id":500,"customer_id":1,"meta":{"source":"app","v":2},"tags":["a","b"]}\n'),
        1,
        0,
    ),
    Case(
        "json",
        "array.json",
        text(json.dumps([{"order_id": 500, "customer_id": 1}, {"order_id": 501, "customer_id": 2}])),
        2,
        0,
    ),
    Case(
        "json",
        "lines-as-array.json",
        text('{"order_id":500,"customer_id":1}\n{"order_id":501,"customer_id":2}\n'),
        0,
        0,
        "not a JSON array of records",
        file_level=True,
    ),
    Case(
        "ndjson",
        "array-as-lines.ndjson",
        text(json.dumps([{"order_id": 500, "customer_id": 1}])),
        0,
        0,
        "use format: json",
        file_level=True,
    ),
    Case(
        "csv",
        "null-and-duplicate-keys.csv",
        csv_rows(",1,1.0,EUR,", "500,1,1.0,EUR,", "500,2,2.0,EUR,"),
        1,
        2,
        "order_id: duplicate value '500' (first in row 2)",
    ),
    Case(
        "csv",
        "orders.csv.gz",
        lambda p: p.write_bytes(gzip.compress((HEADER + "\n500,1,1.0,EUR,\n").encode())),
        1,
        0,
    ),
    Case(
        "csv", "corrupt.csv.gz", text(b"\x1f\x8b\x08\x00corrupt"), 0, 0, "corrupt gzip data", file_level=True
    ),
    Case("csv", "spaces ü #1 %20.csv", csv_rows("500,1,1.0,EUR,"), 1, 0),
    Case("parquet", "zero-rows.parquet", empty_parquet, 0, 0),
]


def lake_with(tmp_path: Path, case: Case) -> LakesyncConfig:
    """A lake holding one good file and the bad one, for an append table that evolves."""
    folder = tmp_path / "lake"
    folder.mkdir()
    good = orders_rows(1, 3)
    if case.fmt == "parquet":
        write_orders_parquet(folder / "good.parquet", good, mtime=T0)
    elif case.fmt == "csv":
        write_orders_csv(folder / "good.csv", good, mtime=T0)
    else:
        lines = [json.dumps({**r, "ordered_at": r["ordered_at"].isoformat()}) for r in good]  # type: ignore[union-attr]
        content = "[" + ",".join(lines) + "]" if case.fmt == "json" else "\n".join(lines) + "\n"
        (folder / f"good.{case.fmt}").write_text(content)
    case.write(folder / case.name)
    pattern = {"csv": "*.csv*", "parquet": "*.parquet", "ndjson": "*.ndjson", "json": "*.json"}[case.fmt]
    dataset: dict[str, object] = {"pattern": pattern, "format": case.fmt, "table": "orders"}
    if case.options:
        dataset["options"] = case.options
    dataset.update(case.dataset or {})
    config = write_config(
        tmp_path, lakes={"lake": local_lake(folder, {"orders": dataset})}, tables={"orders": orders_table()}
    )
    return load_config(config)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(tmp_path: Path, case: Case) -> None:
    config = lake_with(tmp_path, case)
    result = sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="bad-input")
    (dataset,) = result.datasets
    assert dataset.error is None
    assert dataset.conserved, dataset
    assert dataset.rows_read == 3 + case.committed + case.quarantined
    assert dataset.rows_committed == 3 + case.committed
    assert dataset.rows_quarantined == case.quarantined
    lakehouse = lakehouse_for(config)
    rows = pl.read_delta(lakehouse.table_uri("orders"))
    assert sorted(rows.filter(pl.col("_lakesync_file") == "lake/good." + case.fmt)["order_id"].to_list()) == [
        1,
        2,
        3,
    ]
    assert rows.filter(pl.col("_lakesync_file") == f"lake/{case.name}").height == case.committed
    events = Ledger(lakehouse).read("lake.orders").files
    status = events.filter(pl.col("path") == case.name)["status"].to_list()
    assert status == ["quarantined" if case.file_level else "ingested"]
    if case.reason is not None:
        reasons = pl.read_delta(lakehouse.quarantine_uri("orders")).filter(pl.col("file") == case.name)
        assert reasons.height == (1 if case.file_level else case.quarantined)
        assert reasons["level"].to_list()[0] == ("file" if case.file_level else "row")
        text_ = " | ".join(reasons["reason"].to_list())
        assert case.reason in text_, text_
        if case.file_level:
            assert text_.startswith(f"lake/{case.name}: ")


def test_no_value_changes_on_its_way_to_delta(tmp_path: Path) -> None:
    """Edge values, written and read back through Delta: every one exactly as it was."""
    from datetime import UTC, datetime
    from decimal import Decimal

    folder = tmp_path / "lake"
    folder.mkdir()
    edges = pa.table(
        {
            "order_id": pa.array([2**63 - 1, -(2**63), 0], pa.int64()),
            "customer_id": pa.array([1, 2, 3], pa.int32()),  # safely widened to int64
            "amount": pa.array([1.7976931348623157e308, 5e-324, 0.1 + 0.2], pa.float64()),
            "currency": pa.array(["EUR", "USD", "JPY"]),
            "ordered_at": pa.array(
                [
                    datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),
                    datetime(2262, 4, 12, tzinfo=UTC),
                    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "price": pa.array(
                [Decimal("12345678901234567890.12"), Decimal("-0.01"), Decimal(0)], pa.decimal128(22, 2)
            ),
        }
    )
    pq.write_table(edges, folder / "edges.parquet")
    table = orders_table()
    table["contract"] = {"columns": {**table["contract"]["columns"], "price": {"type": "decimal(22,2)"}}}
    config = load_config(
        write_config(
            tmp_path,
            lakes={
                "lake": local_lake(
                    folder, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
                )
            },
            tables={"orders": table},
        )
    )
    result = sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="edges")
    assert result.rows_committed == 3 and result.rows_quarantined == 0
    back = pl.read_delta(lakehouse_for(config).table_uri("orders")).sort("customer_id")
    expected = pl.from_arrow(edges).sort("customer_id")
    assert isinstance(expected, pl.DataFrame)
    for column in ("order_id", "amount", "currency", "ordered_at", "price"):
        assert back[column].to_list() == expected[column].to_list(), column


def test_files_replaced_or_deleted_between_listing_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "lake"
    write_orders_parquet(folder / "a.parquet", orders_rows(1, 2), mtime=T0)
    write_orders_parquet(folder / "replaced.parquet", orders_rows(10, 2), mtime=T0 + timedelta(minutes=1))
    write_orders_parquet(folder / "deleted.parquet", orders_rows(20, 2), mtime=T0 + timedelta(minutes=2))
    config = load_config(
        write_config(
            tmp_path,
            lakes={
                "lake": local_lake(
                    folder, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
                )
            },
            tables={"orders": orders_table()},
        )
    )
    original = Ledger.plan

    def plan_then_change(self: Ledger, *args: object, **kwargs: object) -> object:
        planned = original(self, *args, **kwargs)  # type: ignore[arg-type]
        write_orders_parquet(folder / "replaced.parquet", orders_rows(10, 5), mtime=T0 + timedelta(hours=1))
        (folder / "deleted.parquet").unlink()
        return planned

    monkeypatch.setattr(Ledger, "plan", plan_then_change)
    result = sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="race")
    (dataset,) = result.datasets
    assert (dataset.files_ingested, dataset.files_quarantined, dataset.rows_committed) == (1, 2, 2)
    reasons = dict(
        pl.read_delta(lakehouse_for(config).quarantine_uri("orders")).select("file", "reason").rows()
    )
    assert "the file changed after it was listed (size" in reasons["replaced.parquet"]
    assert "the file was deleted or moved after it was listed" in reasons["deleted.parquet"]

"""`lakesync query`: one SQL over the lakehouse's tables and the lakes' files, read in place with
the sync's own mapping, conversion, contract and personal-data treatment; nothing written."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import lakesync
from lakesync.config import load_config
from lakesync.defs.providers import open_lakehouse, open_stores
from lakesync.demo.servers import Server
from lakesync.governance.erase import erase_subject
from lakesync.pipeline import SyncOptions, sync_table
from lakesync.sql import FAILED, PASSES, QueryError, QueryOptions, run_query
from lakesync.state.lakehouse import Lakehouse
from lakesync_tests.cloud import new_bucket, s3_lakehouse, unique
from lakesync_tests.commands import cli
from lakesync_tests.lakes import (
    T0,
    local_lake,
    orders_rows,
    orders_table,
    touch,
    write_config,
)

KEY = "test-pii-key-for-queries-0123456789"


def _orders_lake(root: Path, *, mode: str = "append", **table: Any) -> Path:
    """A lake of 100 good orders feeding ``orders``, its name for order_id being ``order_no``."""
    (root / "lake").mkdir(parents=True)
    _land(root, "a.parquet", orders_rows(1, 100), minutes=0)
    return write_config(
        root,
        lakes={
            "eu": local_lake(
                root / "lake",
                {
                    "orders": {
                        "pattern": "*.parquet",
                        "format": "parquet",
                        "table": "orders",
                        "columns": {"order_no": "order_id"},
                    }
                },
            )
        },
        tables={"orders": orders_table(mode=mode, **table)},
        lakehouse=str(root / "lakehouse"),
    )


def _renamed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"order_no" if k == "order_id" else k: v for k, v in r.items()} for r in rows]


def _land(root: Path, name: str, rows: list[dict[str, Any]], minutes: int) -> None:
    schema = pa.schema(
        [
            ("order_no", pa.int64()),
            ("customer_id", pa.int64()),
            ("amount", pa.float64()),
            ("currency", pa.string()),
            ("ordered_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    path = root / "lake" / name
    pq.write_table(pa.Table.from_pylist(_renamed(rows), schema=schema), path)
    touch(path, T0 + timedelta(minutes=minutes))


def _sync(config_path: Path, table: str = "orders", key: str | None = None) -> None:
    config = load_config(config_path)
    sync_table(config, table, lakehouse=Lakehouse(config.lakehouse.uri, pii_key=key), run_id="test")


def _query(config_path: Path, sql: str, key: str | None = None, **options: Any) -> Any:
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri, pii_key=key)
    return run_query(config, sql, lakehouse=lakehouse, options=QueryOptions(**options))


def _three_new_files(root: Path) -> None:
    """300 new orders in 3 files; 5 have a negative amount (the contract's ge: 0 rejects them)."""
    for i, start in enumerate((1000, 2000, 3000)):
        rows = orders_rows(start, 100)
        if i == 1:
            for row in rows[:5]:
                row["amount"] = -1.0
        _land(root, f"new-{i}.parquet", rows, minutes=10 + i)


def test_fresh_returns_committed_plus_new_rows_and_the_same_rows_after_a_sync(tmp_path: Path) -> None:
    config = _orders_lake(tmp_path)
    _sync(config)
    _three_new_files(tmp_path)

    plain = _query(config, "select count(*) as n from orders")
    assert plain.frame["n"].to_list() == [100] and plain.in_place == {}
    fresh = _query(
        config,
        "select order_id, amount, _lakesync_file, _lakesync_passes, _lakesync_failed from orders",
        fresh=True,
    )
    assert fresh.in_place == {"eu.orders": 3}  # only the ledger's difference is read
    assert fresh.frame.height == 400
    failing = fresh.frame.filter(~pl.col(PASSES))
    assert sorted(failing["order_id"].to_list()) == list(range(2000, 2005))
    assert set(failing[FAILED]) == {"amount: greater_than_or_equal_to(0)"}
    assert set(failing["_lakesync_file"]) == {"eu/new-1.parquet"}
    strict = _query(config, "select * from orders", fresh=True, strict=True).frame
    assert strict.height == 395 and strict[PASSES].all()

    # Nothing was written: the table, the ledger and the quarantine are as they were.
    assert _query(config, "select count(*) as n from orders").frame["n"].to_list() == [100]
    _sync(config)
    synced = _query(config, "select * from orders").frame
    columns = [c for c in synced.columns if c not in ("_lakesync_batch", "_lakesync_ingested_at")]
    assert synced.select(columns).sort("order_id").equals(strict.select(columns).sort("order_id"))
    again = _query(config, "select count(*) as n from orders", fresh=True)
    assert again.frame["n"].to_list() == [395] and again.in_place == {"eu.orders": 0}


def test_fresh_over_a_merge_table_replaces_the_rows_of_keys_new_files_update(tmp_path: Path) -> None:
    config = _orders_lake(tmp_path, mode="merge")
    _sync(config)
    _land(tmp_path, "update.parquet", orders_rows(1, 10, amount=999.0), minutes=30)
    fresh = _query(config, "select order_id, amount from orders order by order_id", fresh=True).frame
    assert fresh.height == 100
    assert fresh.filter(pl.col("amount") == 999.0)["order_id"].to_list() == list(range(1, 11))
    _sync(config)
    after = _query(config, "select order_id, amount from orders order by order_id").frame
    assert after.equals(fresh)


def test_a_lake_dataset_is_queried_in_place_by_its_canonical_columns(tmp_path: Path) -> None:
    config = _orders_lake(tmp_path)
    _three_new_files(tmp_path)
    # No sync yet: the lake's files are read where they are, order_no mapped to order_id.
    raw = _query(
        config, "select order_id, _lakesync_lake from eu.orders where order_id between 995 and 1002"
    ).frame
    assert raw["order_id"].to_list() == [1000, 1001, 1002] and set(raw["_lakesync_lake"]) == {"eu"}
    joined = _query(
        config, "select count(*) as n from eu.orders r where r.amount < 0 and r._lakesync_passes = false"
    ).frame
    assert joined["n"].to_list() == [5]
    assert not (tmp_path / "lakehouse").exists()  # a query writes nothing, not even a ledger


def test_time_travel_returns_an_older_versions_rows(tmp_path: Path) -> None:
    config = _orders_lake(tmp_path)
    _sync(config)
    first = datetime.now(tz=UTC)
    _land(tmp_path, "b.parquet", orders_rows(500, 50), minutes=5)
    _sync(config)
    versions = _query(config, "select count(*) as n from orders")
    assert versions.frame["n"].to_list() == [150]
    old = _query(config, "select count(*) as n from orders", as_of=versions.versions["orders"] - 1)
    assert old.frame["n"].to_list() == [100]
    assert _query(config, "select count(*) as n from orders", as_of=first).frame["n"].to_list() == [100]
    with pytest.raises(QueryError, match=r"table 'orders' has no version 9 \(its versions are 0 to 2\)"):
        _query(config, "select * from orders", as_of=9)
    with pytest.raises(QueryError, match="did not exist yet at 2020-01-01"):
        _query(config, "select * from orders", as_of=datetime(2020, 1, 1, tzinfo=UTC))


PEOPLE: dict[str, Any] = {
    "columns": {
        "customer_id": {"type": "int64", "nullable": False, "subject_key": "customer"},
        "email": {"type": "string", "pii": "hash"},
        "phone": {"type": "string", "pii": "mask", "mask": {"keep_suffix": 4}},
        "ssn": {"type": "string", "pii": "drop"},
    }
}


def _people_lake(root: Path) -> Path:
    people = [
        {
            "customer_id": 1,
            "email": "planted.ann@example.org",
            "phone": "+44 7700 900123",
            "ssn": "123-45-6789",
        },
        {
            "customer_id": 2,
            "email": "planted.ben@example.org",
            "phone": "+1 555 0100 777",
            "ssn": "987-65-4321",
        },
    ]
    path = root / "crm" / "people.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(people), path)
    touch(path, T0)
    return write_config(
        root,
        lakes={
            "crm": local_lake(
                root / "crm", {"people": {"pattern": "*.parquet", "format": "parquet", "table": "people"}}
            )
        },
        tables={"people": {"contract": PEOPLE, "mode": "merge", "keys": ["customer_id"]}},
        lakehouse=str(root / "lakehouse"),
    )


def test_personal_data_read_in_place_is_treated_as_the_lakehouse_stores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _people_lake(tmp_path)
    raw = _query(config, "select * from crm.people order by customer_id", key=KEY).frame
    digest = hmac.digest(KEY.encode(), b"planted.ann@example.org", "sha256").hex()
    assert raw["email"][0] == digest
    assert raw["phone"].to_list() == ["***0123", "*** 777"]
    assert "ssn" not in raw.columns
    assert not any("planted" in str(v) or "123-45" in str(v) for row in raw.rows() for v in row)
    _sync(config, "people", key=KEY)
    stored = _query(config, "select customer_id, email, phone from people order by customer_id").frame
    assert stored.equals(raw.select(stored.columns))

    # An erased subject is not returned from the lake either.
    erase_subject(load_config(config), Lakehouse(str(tmp_path / "lakehouse"), pii_key=KEY), "customer", "1")
    again = _query(config, "select customer_id from crm.people", key=KEY).frame
    assert again["customer_id"].to_list() == [2]

    # Without the key, a query of the lake is refused in a sentence naming the variable.
    monkeypatch.delenv("LAKESYNC_PII_KEY", raising=False)
    with pytest.raises(QueryError, match=r"LAKESYNC_PII_KEY"):
        _query(config, "select * from crm.people")


def test_bad_queries_are_one_sentence_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _orders_lake(tmp_path)
    _sync(config)
    cases = {
        "selec 1": "the query cannot be run: sql parser error",
        "select * from nowhere": "the query names 'nowhere', which is not a table here (known: orders, eu.orders",
        "select nope from orders": 'the query names a column that does not exist: unable to find column "nope"',
    }
    for sql, said in cases.items():
        done = cli(capsys, "query", sql, "--config", str(config))
        assert done.returncode == 2, done
        assert done.stderr.startswith(said) and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    done = cli(capsys, "query", "select * from orders", "--as-of", "7", "--config", str(config))
    assert done.returncode == 2 and "has no version 7" in done.stderr
    done = cli(capsys, "query", "select 1", "--as-of", "yesterday-ish", "--config", str(config))
    assert done.returncode == 2 and "--as-of 'yesterday-ish'" in done.stderr
    done = cli(capsys, "query", "select * from orders", "--fresh", "--as-of", "1", "--config", str(config))
    assert done.returncode == 2 and "cannot be combined" in done.stderr


def test_query_command_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _orders_lake(tmp_path)
    _sync(config)
    sql = "select order_id, amount from orders where order_id <= 3 order by order_id"
    table = cli(capsys, "query", sql, "--config", str(config))
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == ["order_id", "amount"]
    assert "orders: Delta version 1" in table.stderr
    rows = [
        json.loads(line)
        for line in cli(capsys, "query", sql, "--format", "json", "--config", str(config)).stdout.splitlines()
    ]
    assert rows == [
        {"order_id": 1, "amount": 10.0},
        {"order_id": 2, "amount": 11.0},
        {"order_id": 3, "amount": 12.0},
    ]
    out = tmp_path / "result.parquet"
    written = cli(capsys, "query", sql, "--format", "parquet", "--out", str(out), "--config", str(config))
    assert written.returncode == 0 and pl.read_parquet(out)["order_id"].to_list() == [1, 2, 3]
    limited = cli(
        capsys, "query", "select * from orders", "--limit", "2", "--format", "csv", "--config", str(config)
    )
    assert len(limited.stdout.splitlines()) == 3
    assert lakesync.query(sql, config=config)["order_id"].to_list() == [1, 2, 3]


def test_query_in_place_on_the_s3_emulator(
    tmp_path: Path, s3_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LAKE_S3_KEY", "LAKEHOUSE_KEY"):
        monkeypatch.setenv(name, "testing")
    for name in ("LAKE_S3_SECRET", "LAKEHOUSE_SECRET"):
        monkeypatch.setenv(name, "testing")
    lake, house = new_bucket("s3", s3_server), new_bucket("s3", s3_server)

    def put(name: str, rows: list[dict[str, Any]]) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), sink)
        lake.put(f"orders/{name}", sink.getvalue().to_pybytes())

    put("a.parquet", orders_rows(1, 20))
    document = {
        "lakehouse": s3_lakehouse(s3_server, house.name),
        "lakes": {
            "s3lake": lake.lake(
                {"orders": {"pattern": "orders/*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        "tables": {"orders": orders_table()},
    }
    config = tmp_path / "lakesync.yaml"
    config.write_text(yaml.safe_dump(document))
    raw = lakesync.query("select count(*) as n from s3lake.orders", config=config)
    assert raw["n"].to_list() == [20]
    assert _sync_cloud(config) == 0
    put(unique("b") + ".parquet", orders_rows(100, 5))
    assert lakesync.query("select count(*) as n from orders", config=config)["n"].to_list() == [20]
    fresh = lakesync.query("select count(*) as n from orders", config=config, fresh=True)
    assert fresh["n"].to_list() == [25]


def _sync_cloud(config: Path) -> int:
    """Sync ``orders`` through the lakes' stores (a cloud lake's comes from its resource)."""
    project = load_config(config)
    with open_stores(project) as stores:
        synced = sync_table(
            project,
            "orders",
            lakehouse=open_lakehouse(project),
            run_id="t",
            options=SyncOptions(stores=stores),
        )
    return 0 if all(d.error is None for d in synced.datasets) else 1

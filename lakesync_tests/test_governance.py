"""Governance: the audit trail of every sync (issue 6, first part)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

from lakesync.config import ConfigError, LakesyncConfig, load_config
from lakesync.config.units import parse_since
from lakesync.governance.erase import erase_subject
from lakesync.governance.errors import ErasureError
from lakesync.governance.rewrite import Rewrite
from lakesync.pipeline import sync_table
from lakesync.state.audit import AuditLog, credential_names
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import lakehouse_for
from lakesync.state.ledger import Ledger
from lakesync_tests.commands import cli
from lakesync_tests.lakes import (
    ORDERS_CONTRACT,
    T0,
    local_lake,
    orders_rows,
    orders_table,
    write_config,
    write_orders_parquet,
)
from lakesync_tests.test_defs import drift_lakes

BIN = Path(sys.executable).parent


def test_every_file_of_a_sync_is_in_the_audit_trail_once(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_orders_parquet(lake / "a.parquet", orders_rows(1, 10), mtime=T0)
    write_orders_parquet(lake / "b.parquet", orders_rows(100, 5, amount=-1.0), mtime=T0)
    (lake / "c.parquet").write_bytes(b"not parquet")
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                lake, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table()},
    )
    config = load_config(config_path)
    lakehouse = lakehouse_for(config)
    result = sync_table(config, "orders", lakehouse=lakehouse, run_id="run-1")
    audit = AuditLog(lakehouse).read()
    files = audit.filter(pl.col("kind") == "file").sort("path")
    assert files["path"].to_list() == ["a.parquet", "b.parquet", "c.parquet"]
    assert files["status"].to_list() == ["ingested", "ingested", "quarantined"]
    assert files["rows_committed"].to_list() == [10, 0, 0]
    assert files["rows_quarantined"].to_list() == [0, 5, 0]
    assert files["size"].to_list() == [
        (lake / n).stat().st_size for n in ("a.parquet", "b.parquet", "c.parquet")
    ]
    assert "not a readable parquet file" in files["reason"][2]
    assert files["checksum"].to_list() == [
        hashlib.sha256((lake / n).read_bytes()).hexdigest() for n in ("a.parquet", "b.parquet", "c.parquet")
    ]
    assert set(files["table_version"]) == {result.delta_version}
    assert set(files["run_id"]) == {"run-1"} and set(files["contract"]) == {result.contract}
    (batch,) = audit.filter(pl.col("kind") == "batch").iter_rows(named=True)
    assert (batch["rows_read"], batch["rows_committed"], batch["rows_quarantined"]) == (15, 10, 5)
    assert batch["status"] == "2 ingested, 1 quarantined"
    # A second sync finds nothing new and audits nothing; a new file adds its own records.
    sync_table(config, "orders", lakehouse=lakehouse, run_id="run-2")
    assert AuditLog(lakehouse).read().height == 4
    write_orders_parquet(lake / "d.parquet", orders_rows(200, 3), mtime=T0 + timedelta(hours=1))
    sync_table(config, "orders", lakehouse=lakehouse, run_id="run-3")
    assert AuditLog(lakehouse).read(file="eu/d.parquet")["batch"].to_list() == [2]


def test_a_retried_batch_is_audited_once(tmp_path: Path) -> None:
    lakehouse = lakehouse_for(load_config(drift_lakes(tmp_path)))
    log = AuditLog(lakehouse)
    record = {
        "kind": "batch",
        "recorded_at": datetime.now(tz=UTC),
        "lake": "eu",
        "dataset": "orders",
        "batch": 1,
    }
    log.record_batches({"eu.orders": (1, [record])})
    log.record_batches({"eu.orders": (1, [record])})  # a retry of the same batch
    assert log.read().height == 1


def test_drift_decisions_are_audit_records(tmp_path: Path) -> None:
    config = load_config(drift_lakes(tmp_path))
    lakehouse = lakehouse_for(config)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r1")
    (event,) = DriftLog(lakehouse).events(dataset="eu.orders")
    DriftLog(lakehouse).decide(event.id, "rejected", actor="ada", note="not ours")
    (decision,) = AuditLog(lakehouse).read().filter(pl.col("kind") == "drift_decision").iter_rows(named=True)
    assert (decision["actor"], decision["note"], decision["status"]) == ("ada", "not ours", "rejected")
    assert json.loads(decision["detail"])["event"] == event.id


def test_credentials_are_audited_by_name_only(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        lakes={
            "eu": {
                "provider": "s3",
                "bucket": "b",
                "credentials": {
                    "access_key_id": {"env": "EU_KEY_ID"},
                    "secret_access_key": {"env": "EU_SECRET"},
                },
                "datasets": {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}},
            },
            "local": local_lake(
                tmp_path, {"orders": {"pattern": "*.csv", "format": "csv", "table": "orders"}}
            ),
        },
        tables={"orders": orders_table()},
    )
    config = load_config(path)
    assert credential_names(config, "eu") == "EU_KEY_ID, EU_SECRET"
    assert credential_names(config, "local") is None


def test_lakesync_audit_filters_by_table_file_and_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    write_orders_parquet(lake / "a.parquet", orders_rows(1, 4), mtime=T0)
    write_orders_parquet(lake / "b.parquet", orders_rows(10, 2), mtime=T0)
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                lake, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table()},
    )
    config = load_config(config_path)
    sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="r1")

    def audit(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(capsys, "audit", "--config", str(config_path), *args)

    listed = audit("--table", "orders")
    assert listed.returncode == 0, listed.stderr
    assert "a.parquet" in listed.stdout and "b.parquet" in listed.stdout
    one = [
        json.loads(line) for line in audit("--file", "eu/b.parquet", "--format", "json").stdout.splitlines()
    ]
    assert [(r["kind"], r["path"], r["rows_committed"]) for r in one] == [("file", "b.parquet", 2)]
    assert audit("--since", "1h", "--format", "json").stdout.count("\n") == 3
    assert audit("--since", "2999-01-01").stdout.strip() == "no audit records match"
    bad = audit("--since", "yesterday")
    assert bad.returncode == 2 and "use a duration (2h, 7d) or an ISO date/time" in bad.stderr
    assert audit("--table", "nope").returncode == 2


def test_since_reads_durations_and_dates() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T08:00+01:00", now) == datetime(2026, 11, 1, 7, tzinfo=UTC)


def test_trace_follows_a_merged_row_to_its_source_file_and_its_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3), mtime=T0)
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                tmp_path / "eu", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            ),
            "us": local_lake(
                tmp_path / "us", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            ),
        },
        tables={"orders": orders_table(mode="merge")},
    )
    config = load_config(config_path)
    lakehouse = lakehouse_for(config)
    first = sync_table(config, "orders", lakehouse=lakehouse, run_id="run-eu")
    # Later the US lake sends a new version of order 2 (and order 3); the EU lake, in the same
    # sync, an older one of order 2, which loses (the most recently landed file wins).
    write_orders_parquet(
        tmp_path / "us" / "b.parquet",
        [*orders_rows(2, 1, amount=99.0), *orders_rows(3, 1, amount=7.0)],
        mtime=T0 + timedelta(hours=2),
    )
    write_orders_parquet(
        tmp_path / "eu" / "c.parquet", orders_rows(2, 1, amount=50.0), mtime=T0 + timedelta(hours=1)
    )
    second = sync_table(config, "orders", lakehouse=lakehouse, run_id="run-us")
    listed = subprocess.run(
        [
            BIN / "lakesync",
            "trace",
            "--config",
            str(config_path),
            "--table",
            "orders",
            "--where",
            "order_id = 2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("orders: order_id=2, customer_id=1000, amount=99.0")
    assert lines[1].split() == ["source", "us/b.parquet", "record", "1"]
    assert f"Delta version {second.delta_version}, batch 1 of us.orders, run run-us" in lines[2]
    history = [line.split(":")[0].split() for line in lines if line.lstrip().startswith("history")]
    assert history == [
        ["history", "version", str(first.delta_version)],
        ["history", "version", str(second.delta_version)],
    ]
    assert (
        "insert from eu/a.parquet" in listed.stdout and "update_postimage from us/b.parquet" in listed.stdout
    )
    assert "superseded eu/c.parquet#1:" in listed.stdout
    (three,) = [
        json.loads(line)
        for line in cli(
            capsys,
            "trace",
            "--config",
            str(config_path),
            "--table",
            "orders",
            "--where",
            "order_id = 3",
            "--format",
            "json",
        ).stdout.splitlines()
    ]
    assert (three["lake"], three["file"], three["record"], three["row"]["amount"]) == (
        "us",
        "b.parquet",
        2,
        7.0,
    )
    assert three["superseded"] == [] and three["batch"] == 1 and three["run_id"] == "run-us"
    bad = cli(capsys, "trace", "--config", str(config_path), "--table", "orders", "--where", "order_id = ")
    assert bad.returncode == 2 and "is not a SQL condition" in bad.stderr


def _synced_demo(tmp_path: Path) -> tuple[Path, LakesyncConfig]:
    from lakesync.demo.generate import generate
    from lakesync.features import build_feature

    demo = generate(tmp_path / "demo")
    config = load_config(demo.config)
    lakehouse = lakehouse_for(config)
    for table in config.tables:
        sync_table(config, table, lakehouse=lakehouse, run_id=f"sync-{table}")
    build_feature(config, "customer_spend", lakehouse, run_id="features")
    return demo.config, config


def _stats_name(stats: str | None, column: str, value: object) -> bool:
    if not stats:
        return False
    parsed = json.loads(stats)
    return any((parsed.get(bound) or {}).get(column) == value for bound in ("minValues", "maxValues"))


def _leftovers(root: Path, column: str, value: object) -> list[tuple[str, str]]:
    """Every file under ``root`` still holding ``column == value``: as a row of a data or change
    data file, or in the file statistics of a Delta commit or checkpoint."""
    found: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*")):
        if path.suffix == ".json" and path.parent.name == "_delta_log":
            for line in path.read_text().splitlines():
                add = json.loads(line).get("add")
                if add and _stats_name(add.get("stats"), column, value):
                    found.append((str(path), "statistics"))
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            if "add" in table.column_names:  # a checkpoint
                adds = [a for a in table.column("add").to_pylist() if a]
                if any(_stats_name(a.get("stats"), column, value) for a in adds):
                    found.append((str(path), "statistics"))
            elif column in table.column_names and value in table.column(column).to_pylist():
                kind = "rows in change data" if "_change_data" in path.parts else "rows"
                found.append((str(path), kind))
    return found


def _count(uri: str, column: str, value: int, version: int | None = None) -> int:
    frame = pl.read_delta(uri, version=version)
    return frame.filter(pl.col(column) == value).height


@pytest.mark.parametrize("purge", [False, True])
def test_erasure_deletes_a_subject_from_every_table_and_leaves_a_receipt(tmp_path: Path, purge: bool) -> None:
    config_path, config = _synced_demo(tmp_path)
    lakehouse = lakehouse_for(config)
    orders, customers = lakehouse.table_uri("orders"), lakehouse.table_uri("customers")
    spend = lakehouse.feature_uri("customer_spend")
    held = {uri: _count(uri, "customer_id", 210) for uri in (orders, customers, spend)}
    assert all(held.values())  # customer 210 has orders, a customer row and spend features
    versions = {uri: DeltaTable(uri).version() for uri in held}
    dry = erase_subject(config, lakehouse, "customer", "210", Rewrite(dry_run=True))
    assert {t.table: t.rows for t in dry.tables}["orders"] == held[orders]
    assert all(DeltaTable(uri).version() == v for uri, v in versions.items())  # nothing deleted
    args = ["--purge"] if purge else []
    done = subprocess.run(
        [
            BIN / "lakesync",
            "erase",
            "--config",
            str(config_path),
            "--subject",
            "customer=210",
            "--format",
            "json",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    rows = {t["table"]: t["rows"] for t in receipt["tables"]}
    assert (
        rows["orders"] == held[orders]
        and rows["customers"] == 1
        and rows["features/customer_spend"] == held[spend]
    )
    assert rows["_superseded/customers"] == 1  # 210 was in both customer lakes; the EU version lost
    assert "eu_sales/customers/customers-0001.parquet" in receipt["source_files"]
    assert "us_sales/crm/customers.csv" in receipt["source_files"]
    for uri in held:
        assert _count(uri, "customer_id", 210) == 0
    assert _count(orders, "customer_id", 211) > 0  # others untouched
    leftovers = _leftovers(Path(lakehouse.uri), "customer_id", 210)
    if purge:
        assert "time travel" in done.stderr and receipt["purged"]
        for uri, version in versions.items():  # the files of older versions are gone
            with pytest.raises(Exception):  # noqa: B017, PT011 - delta-rs raises its own IO errors
                _count(uri, "customer_id", 210, version=version)
        # Nothing anywhere: no data or change data file holds a row of 210, no commit's file
        # statistics (min/max in the Delta log and its checkpoints) name 210.
        assert leftovers == []
    else:
        assert any("remain readable through Delta time travel until VACUUM" in n for n in receipt["notes"])
        assert all(_count(uri, "customer_id", 210, version=v) == held[uri] for uri, v in versions.items())
        kinds = {kind for _, kind in leftovers}
        assert {"rows", "rows in change data"} <= kinds  # what --purge removes
    (audited,) = AuditLog(lakehouse).read().filter(pl.col("kind") == "erasure").iter_rows(named=True)
    detail = json.loads(audited["detail"])
    assert detail["subject_hash"] == receipt["subject_hash"] and "210" not in audited["detail"].replace(
        receipt["subject_hash"], ""
    ).replace(receipt["at"], "")
    # The next sync goes on as before: exactly once, nothing re-ingested.
    assert sync_table(config, "orders", lakehouse=lakehouse, run_id="again").rows_committed == 0


def test_erasure_reaches_quarantined_raw_values(tmp_path: Path) -> None:
    _, config = _synced_demo(tmp_path)
    lakehouse = lakehouse_for(config)
    quarantined = pl.read_delta(lakehouse.quarantine_uri("orders"))
    # a quarantined row whose raw values name a customer (the EU lake calls it customer_id too)
    raw = next(r for r in quarantined["raw"].to_list() if r and '"customer_id":"' in r)
    customer = json.loads(raw)["customer_id"]
    receipt = erase_subject(config, lakehouse, "customer", customer)
    assert {t.table: t.rows for t in receipt.tables}["_quarantine/orders"] >= 1
    left = pl.read_delta(lakehouse.quarantine_uri("orders"))["raw"].to_list()
    assert not any(
        f'"customer_id":"{customer}"' in (r or "") or f'"CustomerID":"{customer}"' in (r or "") for r in left
    )


def test_erasure_refuses_an_unknown_subject_or_a_badly_typed_key(tmp_path: Path) -> None:
    _, config = _synced_demo(tmp_path)
    lakehouse = lakehouse_for(config)
    with pytest.raises(ErasureError, match="unknown subject 'patient' \\(subjects: customer\\)"):
        erase_subject(config, lakehouse, "patient", "1")
    with pytest.raises(ErasureError, match=r"orders\.customer_id is int64: 'abc' is not a whole number"):
        erase_subject(config, lakehouse, "customer", "abc")


def test_an_erased_subject_arriving_again_is_dropped_and_recorded_as_erased(tmp_path: Path) -> None:
    _, config = _synced_demo(tmp_path)
    lakehouse = lakehouse_for(config)
    erase_subject(config, lakehouse, "customer", "0210")  # the same customer as 210
    late = tmp_path / "demo" / "data" / "lakes" / "eu_sales" / "orders" / "2026" / "11" / "part-0099.parquet"
    rows = orders_rows(700_000, 6, customer_id=210) + orders_rows(700_100, 4, customer_id=211)
    write_orders_parquet(late, rows, mtime=T0 + timedelta(days=20))
    later = orders_rows(700_200, 3, customer_id=210) + orders_rows(700_300, 2, customer_id=212)
    write_orders_parquet(late.with_name("part-0100.parquet"), later, mtime=T0 + timedelta(days=21))
    result = sync_table(
        config, "orders", lakehouse=lakehouse, run_id="late"
    )  # two small files, checked together
    (eu,) = [d for d in result.datasets if d.key == "eu_sales.orders"]
    assert (eu.rows_read, eu.rows_committed, eu.rows_quarantined, eu.rows_erased) == (15, 6, 0, 9)
    assert eu.conserved
    orders = pl.read_delta(lakehouse.table_uri("orders"))
    assert orders.filter(pl.col("customer_id") == 210).is_empty()
    assert orders.filter(pl.col("order_id") >= 700_100).height == 6
    assert (
        pl.read_delta(lakehouse.quarantine_uri("orders"))
        .filter(pl.col("file").str.contains("part-0099"))
        .is_empty()
    )
    (audited,) = (
        AuditLog(lakehouse).read(file="part-0099").filter(pl.col("kind") == "file").iter_rows(named=True)
    )
    assert (audited["rows_committed"], audited["rows_erased"]) == (4, 6)
    assert audited["discovered_by"] == "listing"
    (audited,) = (
        AuditLog(lakehouse).read(file="part-0100").filter(pl.col("kind") == "file").iter_rows(named=True)
    )
    assert (audited["rows_committed"], audited["rows_erased"]) == (2, 3)


def _with_provenance(config_path: Path, provenance: dict[str, object]) -> LakesyncConfig:
    document = yaml.safe_load(config_path.read_text())
    document["lakehouse"]["provenance"] = provenance
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(config_path)


def _two_lakes(tmp_path: Path, **table: object) -> Path:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3), mtime=T0)
    write_orders_parquet(
        tmp_path / "us" / "b.parquet", orders_rows(3, 2, amount=9.0), mtime=T0 + timedelta(hours=1)
    )
    dataset = {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
    return write_config(
        tmp_path,
        lakes={"eu": local_lake(tmp_path / "eu", dataset), "us": local_lake(tmp_path / "us", dataset)},
        tables={"orders": orders_table(**table)},
    )


def test_every_row_carries_its_lake_file_record_batch_and_ingestion_time(tmp_path: Path) -> None:
    config = load_config(_two_lakes(tmp_path))
    lakehouse = lakehouse_for(config)
    before = datetime.now(tz=UTC)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r1")
    write_orders_parquet(tmp_path / "eu" / "c.parquet", orders_rows(10, 1), mtime=T0 + timedelta(hours=2))
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r2")
    after = datetime.now(tz=UTC)
    rows = pl.read_delta(lakehouse.table_uri("orders")).sort("_lakesync_file", "_lakesync_row")
    provenance = rows.select("_lakesync_lake", "_lakesync_file", "_lakesync_row", "_lakesync_batch").rows()
    assert provenance == [
        ("eu", "eu/a.parquet", 1, 1),
        ("eu", "eu/a.parquet", 2, 1),
        ("eu", "eu/a.parquet", 3, 1),
        ("eu", "eu/c.parquet", 1, 2),
        ("us", "us/b.parquet", 2, 1),  # its record 1 repeats order 3 of eu/a.parquet (unique)
    ]
    (duplicate,) = pl.read_delta(lakehouse.quarantine_uri("orders")).iter_rows(named=True)
    assert (duplicate["file"], duplicate["row"], duplicate["rules"]) == ("b.parquet", 1, ["duplicate_key"])
    times = rows["_lakesync_ingested_at"]
    assert times.dtype == pl.Datetime("us", "UTC") and before <= times.min() <= times.max() <= after  # type: ignore[operator]
    assert times.n_unique() == 2  # one per batch commit
    # The batch number is the one the audit trail and the ledger know the file by.
    audit = AuditLog(lakehouse).read(file="eu/c.parquet")
    assert audit["batch"].to_list() == [2]


def test_provenance_columns_can_be_renamed_or_left_out_and_trace_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _two_lakes(tmp_path, mode="merge")
    renamed = {
        "file": "src_file",
        "row": "src_row",
        "lake": False,
        "batch": "load_batch",
        "ingested_at": False,
    }
    config = _with_provenance(config_path, renamed)
    lakehouse = lakehouse_for(config)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r1")
    table = pl.read_delta(lakehouse.table_uri("orders"))
    assert [c for c in table.columns if c not in ORDERS_CONTRACT["columns"]] == [
        "_rescued_data",  # drift policy evolve: values that do not fit their column are rescued
        "src_file",
        "src_row",
        "load_batch",
    ]
    # Order 3 came from both lakes: the later file won the merge, the other is superseded.
    assert table.filter(pl.col("order_id") == 3)[["src_file", "src_row"]].row(0) == ("us/b.parquet", 1)
    losers = pl.read_delta(lakehouse.superseded_uri("orders"))
    assert losers["_lakesync_superseded_by"].to_list() == ["us/b.parquet#1"]
    (traced,) = [
        json.loads(line)
        for line in cli(
            capsys, "trace", "--config", str(config_path), "--table", "orders", "--where", "order_id = 3",
            "--format", "json",
        ).stdout.splitlines()
    ]  # fmt: skip
    assert (traced["lake"], traced["file"], traced["record"]) == ("us", "b.parquet", 1)
    assert set(traced["row"]) == {*ORDERS_CONTRACT["columns"], "_rescued_data"}
    assert traced["superseded"][0][0] == "eu/a.parquet#3"
    clash = dict(renamed, batch="src_file")
    with pytest.raises(
        ConfigError, match=r"lakehouse\.provenance: two provenance columns have the same name"
    ):
        _with_provenance(config_path, clash)


def test_a_table_written_without_some_provenance_columns_gains_them_for_new_rows(tmp_path: Path) -> None:
    config_path = _two_lakes(tmp_path)
    old = _with_provenance(config_path, {"lake": False, "batch": False, "ingested_at": False})
    lakehouse = lakehouse_for(old)
    sync_table(old, "orders", lakehouse=lakehouse, run_id="r1")
    assert "_lakesync_lake" not in pl.read_delta(lakehouse.table_uri("orders")).columns
    config = _with_provenance(config_path, {})
    write_orders_parquet(tmp_path / "eu" / "c.parquet", orders_rows(10, 1), mtime=T0 + timedelta(hours=2))
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r2")
    rows = pl.read_delta(lakehouse.table_uri("orders")).sort("order_id")
    # four rows before (us/b.parquet repeats order 3: unique), then eu/c.parquet's
    assert rows["_lakesync_lake"].to_list() == [None] * 4 + ["eu"]
    assert rows["_lakesync_batch"].to_list() == [None] * 4 + [2]


def test_a_pandera_model_contract_marks_its_subject_key_for_erasure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model_contracts.py").write_text(
        "import pandera.polars as pa\n"
        "import polars as pl\n\n"
        "class Orders(pa.DataFrameModel):\n"
        "    order_id: pl.Int64 = pa.Field(unique=True)\n"
        '    customer_id: pl.Int64 = pa.Field(metadata={"subject_key": "customer"})\n'
        "    amount: pl.Float64 = pa.Field(ge=0, nullable=True)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 6), mtime=T0)
    config = load_config(
        write_config(
            tmp_path,
            lakes={
                "eu": local_lake(
                    tmp_path / "eu",
                    {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}},
                )
            },
            tables={"orders": {"contract": {"model": "model_contracts:Orders"}}},
        )
    )
    lakehouse = lakehouse_for(config)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r1")
    table = pl.read_delta(lakehouse.table_uri("orders"))
    customer = table["customer_id"][0]
    held = table.filter(pl.col("customer_id") == customer).height
    receipt = erase_subject(config, lakehouse, "customer", str(customer))
    assert {t.table: t.rows for t in receipt.tables} == {"orders": held}
    assert pl.read_delta(lakehouse.table_uri("orders")).filter(pl.col("customer_id") == customer).is_empty()


class Stopped(BaseException):
    """A sync stopped between its Delta commit and its ledger record."""


def _stop(*args: object, **kwargs: object) -> None:
    raise Stopped


def test_a_purge_after_an_erasure_without_it_leaves_no_statistics_naming_the_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contract = {
        "columns": {**ORDERS_CONTRACT["columns"], "customer_id": {"type": "int64", "subject_key": "customer"}}
    }
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3, customer_id=7), mtime=T0)
    write_orders_parquet(tmp_path / "eu" / "b.parquet", orders_rows(10, 3, customer_id=8), mtime=T0)
    dataset = {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
    config = load_config(
        write_config(
            tmp_path,
            lakes={"eu": local_lake(tmp_path / "eu", dataset)},
            tables={"orders": {"mode": "merge", "keys": ["order_id"], "contract": contract}},
        )
    )
    lakehouse = lakehouse_for(config)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r1")
    root = Path(lakehouse.table_uri("orders"))
    everywhere = {"rows", "rows in change data", "statistics"}
    # A first load of a merge table is appended: its inserts are data files, not change data.
    assert {kind for _, kind in _leftovers(root, "customer_id", 7)} == {"rows", "statistics"}
    first = erase_subject(config, lakehouse, "customer", "7")
    assert {t.table: t.rows for t in first.tables}["orders"] == 3
    # Deleted, but still in the old data file, the change data of the delete, and the log's
    # statistics of the first commit (customer 7 was a file's min and max).
    assert {kind for _, kind in _leftovers(root, "customer_id", 7)} == everywhere
    # A batch planned but not done (a sync running, or stopped): --purge waits for it.
    write_orders_parquet(tmp_path / "eu" / "late.parquet", orders_rows(30, 1, customer_id=8), mtime=T0)
    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "record_many", _stop)
        with pytest.raises(Stopped):
            sync_table(config, "orders", lakehouse=lakehouse, run_id="stopped")
    with pytest.raises(
        ErasureError, match=r"--purge refused: batch 2 of eu\.orders .* is planned but not done"
    ):
        erase_subject(config, lakehouse, "customer", "7", Rewrite(purge=True))
    sync_table(config, "orders", lakehouse=lakehouse, run_id="finish")
    purged = erase_subject(config, lakehouse, "customer", "7", Rewrite(purge=True))
    assert purged.purged and {t.table: t.rows for t in purged.tables}["orders"] == 0
    assert _leftovers(root, "customer_id", 7) == []
    # The table goes on: customer 8's rows, exactly once, and a new file is ingested once.
    assert pl.read_delta(str(root))["customer_id"].to_list() == [8, 8, 8, 8]
    write_orders_parquet(tmp_path / "eu" / "c.parquet", orders_rows(20, 2, customer_id=9), mtime=T0)
    assert sync_table(config, "orders", lakehouse=lakehouse, run_id="r2").rows_committed == 2
    assert sync_table(config, "orders", lakehouse=lakehouse, run_id="r3").rows_committed == 0
    assert DeltaTable(str(root)).metadata().configuration["delta.logRetentionDuration"] == "interval 30 days"


def test_the_erasure_list_covers_every_subject_column_of_a_table() -> None:
    from lakesync.state.erasures import ErasureList, subject_hash

    erased = ErasureList(
        {
            "customer_id": ("customer", frozenset({subject_hash("customer", "7")})),
            "agent_id": ("agent", frozenset({subject_hash("agent", "3")})),
        }
    )
    rows = pl.DataFrame({"customer_id": [7, 8, 8, None], "agent_id": [1, 3, 2, None]})
    assert erased.keep(rows).to_list() == [False, False, True, True]

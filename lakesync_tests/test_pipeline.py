"""The pipeline end to end on real folders and real Delta tables, read back after every sync."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from lakesync.commit import delta
from lakesync.config import LakesyncConfig, load_config
from lakesync.pipeline import SyncOptions, sync_table
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Lakehouse, lakehouse_for, transaction_version
from lakesync.state.ledger import Ledger
from lakesync_tests.lakes import (
    T0,
    local_lake,
    orders_rows,
    orders_table,
    touch,
    write_config,
    write_orders_csv,
    write_orders_parquet,
)


def table(config: LakesyncConfig, name: str) -> pl.DataFrame:
    return pl.read_delta(lakehouse_for(config).table_uri(name))


def quarantine(config: LakesyncConfig, name: str) -> pl.DataFrame:
    return pl.read_delta(lakehouse_for(config).quarantine_uri(name))


def sync(config: LakesyncConfig, name: str = "orders", run: str = "run", **options: object):  # type: ignore[no-untyped-def]
    return sync_table(
        config, name, lakehouse=lakehouse_for(config), run_id=run, options=SyncOptions(**options)
    )  # type: ignore[arg-type]


# -- the demo --------------------------------------------------------------------------------
def test_the_demo_syncs_every_lake_into_the_unified_tables(demo: Path) -> None:
    config = load_config(demo)
    orders = sync(config, "orders")
    by_key = {d.key: d for d in orders.datasets}
    assert {k: (d.files_seen, d.files_ingested, d.files_quarantined) for k, d in by_key.items()} == {
        "eu_sales.orders": (5, 4, 1),
        "us_sales.orders": (3, 3, 0),
        "apac_sales.orders": (2, 2, 0),
    }
    for dataset in orders.datasets:
        assert dataset.conserved, dataset
        assert dataset.rows_quarantined > 0
    rows = table(config, "orders")
    assert rows.height == orders.row_count == sum(d.rows_committed for d in orders.datasets)
    assert rows["order_id"].is_unique().all()
    assert set(rows["_lakesync_file"].str.split("/").list.first().unique()) == {
        "eu_sales",
        "us_sales",
        "apac_sales",
    }
    # APAC's extra column was added by drift policy evolve: null for the other lakes.
    assert rows.filter(pl.col("_lakesync_file").str.starts_with("apac_sales/"))["channel"].null_count() == 0
    assert (
        rows.filter(pl.col("_lakesync_file").str.starts_with("apac_sales/").not_())["channel"].null_count()
        == rows.filter(pl.col("_lakesync_file").str.starts_with("apac_sales/").not_()).height
    )
    # The US CSV says 11/02/2026 03:xx in New York; stored as UTC instants.
    assert rows.schema["ordered_at"] == pl.Datetime("us", "UTC")
    rejected = quarantine(config, "orders")
    corrupt = rejected.filter(pl.col("level") == "file")
    assert corrupt["file"].to_list() == ["orders/2026/11/part-0004.parquet"]
    assert "not a readable parquet file" in corrupt["reason"][0]
    row_level = rejected.filter(pl.col("level") == "row")
    assert row_level.height == orders.rows_quarantined
    assert row_level["row"].null_count() == 0 and row_level["raw"].null_count() == 0
    not_null = row_level.filter(pl.col("rules").list.contains("not_nullable"))
    assert not_null["reason"][0] == "customer_id: is null, but the contract says nullable: false"
    assert '"customer_id":null' in not_null["raw"][0] or '"CustomerID":null' in not_null["raw"][0]
    # Drift policy evolve rescues a value that does not fit its nullable column: the row is
    # committed with a null amount and the original text kept in _rescued_data.
    rescued = rows.filter(pl.col("_rescued_data").is_not_null())
    assert rescued["_rescued_data"].to_list() == ['{"Amount":"N/A"}'] * 3
    assert rescued["amount"].null_count() == 3
    customers = sync(config, "customers")
    assert customers.rows_superseded == 51
    merged = table(config, "customers")
    assert merged.height == 399
    # Customers 200..250 are in both lakes; the US file landed later and wins.
    assert merged.filter(pl.col("customer_id") == 220)["country"].to_list() == ["US"]


def test_unified_tables_are_written_compressed(tmp_path: Path) -> None:
    # delta-rs writes *uncompressed* files when given writer properties without a codec.
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 100), mtime=T0)
    config = one_lake(tmp_path)
    sync(config)
    files = DeltaTable(lakehouse_for(config).table_uri("orders")).file_uris()
    codecs = {pq.ParquetFile(f).metadata.row_group(0).column(i).compression for f in files for i in range(7)}
    assert codecs == {"SNAPPY"}


def test_a_finished_sync_run_again_adds_nothing(demo: Path) -> None:
    config = load_config(demo)
    first = sync(config, "orders")
    ledger_version = DeltaTable(lakehouse_for(config).ledger_uri).version()
    again = sync(config, "orders", run="again")
    assert again.commits == 0 and again.rows_read == 0
    assert again.delta_version == first.delta_version
    assert DeltaTable(lakehouse_for(config).ledger_uri).version() == ledger_version
    assert table(config, "orders").height == first.row_count


# -- small lakes -----------------------------------------------------------------------------
def one_lake(
    tmp_path: Path, *, fmt: str = "parquet", pattern: str = "*.parquet", **table: object
) -> LakesyncConfig:
    dataset: dict[str, object] = {"pattern": pattern, "format": fmt, "table": "orders"}
    for key in ("sensor", "drift", "options", "bad_records"):
        if key in table:
            dataset[key] = table.pop(key)
    lakes = {"eu": local_lake(tmp_path / "eu", {"orders": dataset})}
    return load_config(write_config(tmp_path, lakes=lakes, tables={"orders": orders_table(**table)}))  # type: ignore[arg-type]


def test_new_files_are_ingested_in_later_batches_with_increasing_versions(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 10), mtime=T0)
    config = one_lake(tmp_path)
    sync(config)
    write_orders_parquet(tmp_path / "eu" / "b.parquet", orders_rows(11, 5), mtime=T0 + timedelta(hours=1))
    second = sync(config, run="second")
    assert second.datasets[0].batches == (2,)
    assert second.rows_committed == 5
    snapshot = DeltaTable(lakehouse_for(config).table_uri("orders"))
    assert transaction_version(snapshot, "eu.orders") == 2
    assert sorted(table(config, "orders")["order_id"].to_list()) == list(range(1, 16))
    history = snapshot.history()
    assert history[0]["lakesync.batches"] == '{"eu.orders": 2}'
    assert history[0]["lakesync.run_id"] == "second"


def test_a_sync_started_by_hand_catches_up_in_batches_of_max_files(tmp_path: Path) -> None:
    for i in range(5):
        write_orders_parquet(
            tmp_path / "eu" / f"{i}.parquet", orders_rows(i * 10, 10), mtime=T0 + timedelta(minutes=i)
        )
    config = one_lake(tmp_path, sensor={"max_files": 2})
    first = sync(config, run="r0").datasets[0]
    assert (first.files_ingested, first.files_pending, first.batches) == (5, 0, (1, 2, 3))
    assert [rows for _, rows in first.batch_rows] == [20, 20, 10]  # oldest files first, 2 a batch
    assert table(config, "orders").height == 50
    history = DeltaTable(str(tmp_path / "lakehouse" / "orders")).history()
    assert [h["lakesync.batches"] for h in history if "lakesync.batches" in h][:3] == [
        '{"eu.orders": 3}',
        '{"eu.orders": 2}',
        '{"eu.orders": 1}',
    ]  # one commit per batch
    again = sync(config, run="r1").datasets[0]
    assert (again.files_ingested, again.batches) == (0, ())


def test_merge_keeps_the_latest_version_of_each_key(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3, amount=1.0), mtime=T0)
    write_orders_parquet(
        tmp_path / "eu" / "b.parquet", orders_rows(2, 3, amount=2.0), mtime=T0 + timedelta(hours=1)
    )
    config = one_lake(tmp_path, mode="merge")
    result = sync(config)
    assert result.rows_superseded == 2
    rows = table(config, "orders").sort("order_id")
    assert rows.select("order_id", "amount", "_lakesync_file").rows() == [
        (1, 1.0, "eu/a.parquet"),
        (2, 2.0, "eu/b.parquet"),
        (3, 2.0, "eu/b.parquet"),
        (4, 2.0, "eu/b.parquet"),
    ]
    write_orders_parquet(
        tmp_path / "eu" / "c.parquet", orders_rows(1, 1, amount=9.0), mtime=T0 + timedelta(hours=2)
    )
    sync(config, run="later")
    assert table(config, "orders").filter(pl.col("order_id") == 1)["amount"].to_list() == [9.0]


def test_a_merge_table_appends_keys_it_never_held_and_merges_the_others(tmp_path: Path) -> None:
    """Three commit paths, one result: a first load (appended as it streams), new keys only
    (appended after a check of the table's keys), a key the table holds (a merge)."""
    config = one_lake(tmp_path, mode="merge")
    house = lakehouse_for(config)
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3, amount=1.0), mtime=T0)
    sync(config, run="first")
    write_orders_parquet(
        tmp_path / "eu" / "b.parquet", orders_rows(10, 2, amount=2.0), mtime=T0 + timedelta(hours=1)
    )
    sync(config, run="new-keys")
    write_orders_parquet(
        tmp_path / "eu" / "c.parquet", orders_rows(3, 8, amount=3.0), mtime=T0 + timedelta(hours=2)
    )
    assert sync(config, run="upsert").rows_superseded == 0
    history = DeltaTable(house.table_uri("orders")).history()
    batches = [(h["operation"], h["lakesync.batches"]) for h in history if "lakesync.batches" in h]
    assert batches == [
        ("MERGE", '{"eu.orders": 3}'),
        ("WRITE", '{"eu.orders": 2}'),
        ("WRITE", '{"eu.orders": 1}'),
    ]
    rows = table(config, "orders").sort("order_id")
    assert rows.select("order_id", "amount").rows() == [
        (1, 1.0), (2, 1.0), *((k, 3.0) for k in range(3, 11)), (11, 2.0)
    ]  # fmt: skip
    assert rows["order_id"].is_unique().all()
    # The change data feed still shows every version (trace reads it): appended rows are inserts.
    feed = pl.from_arrow(
        pa.table(DeltaTable(house.table_uri("orders")).load_cdf(starting_version=0).read_all())
    )
    assert isinstance(feed, pl.DataFrame)
    inserted = feed.filter(pl.col("_change_type") == "insert")["order_id"].sort().to_list()
    assert inserted == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_a_first_load_whose_keys_repeat_is_merged_from_disk_and_leaves_one_commit(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 4, amount=1.0), mtime=T0)
    b = orders_rows(2, 1, amount=5.0)  # key 2 again, in a later file of the same batch
    write_orders_parquet(tmp_path / "eu" / "b.parquet", b, mtime=T0 + timedelta(hours=1))
    config = one_lake(tmp_path, mode="merge")
    result = sync(config)
    assert (result.rows_committed, result.rows_superseded) == (5, 1)
    assert table(config, "orders").sort("order_id").select("order_id", "amount").rows() == [
        (1, 1.0), (2, 5.0), (3, 1.0), (4, 1.0)
    ]  # fmt: skip
    history = DeltaTable(lakehouse_for(config).table_uri("orders")).history()
    assert [h["operation"] for h in history if "lakesync.batches" in h] == ["WRITE"]
    lost = pl.read_delta(lakehouse_for(config).superseded_uri("orders"))
    assert lost.select("order_id", "amount", "_lakesync_superseded_by").rows() == [(2, 1.0, "eu/b.parquet#1")]


def test_a_merge_on_text_keys_with_quotes_only_reads_the_range_the_table_holds(tmp_path: Path) -> None:
    from lakesync.commit.winners import key_bounds

    held = pl.DataFrame({"sku": ["O'Brien-2", "A-1"], "n": [2, 1]})
    assert key_bounds(held, ["sku", "n"]) == [
        "t.`sku` >= 'A-1' AND t.`sku` <= 'O''Brien-2'",
        "t.`n` >= 1 AND t.`n` <= 2",
    ]
    table = {
        "mode": "merge",
        "keys": ["sku"],
        "contract": {"columns": {"sku": {"type": "string", "nullable": False}, "qty": {"type": "int64"}}},
    }
    datasets = {"stock": {"pattern": "*.csv", "format": "csv", "table": "stock"}}
    config = load_config(
        write_config(tmp_path, lakes={"eu": local_lake(tmp_path / "eu", datasets)}, tables={"stock": table})
    )
    (tmp_path / "eu").mkdir(parents=True, exist_ok=True)
    (tmp_path / "eu" / "a.csv").write_text("sku,qty\nA-1,1\nO'Brien-2,2\nZ-9,9\n", encoding="utf-8")
    touch_at(tmp_path / "eu" / "a.csv", T0)
    sync(config, "stock")
    (tmp_path / "eu" / "b.csv").write_text("sku,qty\nO'Brien-2,20\nB-5,5\n", encoding="utf-8")
    touch_at(tmp_path / "eu" / "b.csv", T0 + timedelta(hours=1))
    sync(config, "stock", run="second")
    rows = pl.read_delta(lakehouse_for(config).table_uri("stock")).sort("sku")
    assert rows.select("sku", "qty").rows() == [("A-1", 1), ("B-5", 5), ("O'Brien-2", 20), ("Z-9", 9)]


def test_a_batch_whose_rows_all_fail_still_commits_its_transaction(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3, currency="XXX"), mtime=T0)
    config = one_lake(tmp_path, mode="merge")
    result = sync(config)
    assert result.rows_committed == 0 and result.rows_quarantined == 3
    write_orders_parquet(tmp_path / "eu" / "b.parquet", orders_rows(10, 2), mtime=T0 + timedelta(hours=1))
    assert sync(config, run="next").rows_committed == 2


# -- drift policies --------------------------------------------------------------------------
def extra_column_file(path: Path) -> None:
    frame = pl.DataFrame(orders_rows(100, 4)).with_columns(channel=pl.lit("web"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


def test_drift_evolve_adds_the_column(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 2), mtime=T0)
    config = one_lake(tmp_path, drift="evolve")
    sync(config)
    extra_column_file(tmp_path / "eu" / "b.parquet")
    result = sync(config, run="drift")
    assert result.datasets[0].drift[0].actions == ("added column 'channel' (string) to the table",)
    rows = table(config, "orders")
    assert rows.filter(pl.col("order_id") >= 100)["channel"].to_list() == ["web"] * 4
    assert rows.filter(pl.col("order_id") < 100)["channel"].null_count() == 2


def test_drift_quarantine_holds_back_the_whole_file(tmp_path: Path) -> None:
    extra_column_file(tmp_path / "eu" / "b.parquet")
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 2), mtime=T0)
    config = one_lake(tmp_path, drift="quarantine")
    result = sync(config)
    assert (result.datasets[0].files_ingested, result.datasets[0].files_quarantined) == (1, 1)
    assert "channel" not in table(config, "orders").columns
    held = quarantine(config, "orders")
    assert held.height == 4 and held["rules"].to_list() == [["schema_drift"]] * 4
    assert "new column 'channel' (string)" in held["reason"][0]


def test_drift_rescue_keeps_unknown_values_in_rescued_data(tmp_path: Path) -> None:
    extra_column_file(tmp_path / "eu" / "b.parquet")
    config = one_lake(tmp_path, drift="rescue")
    sync(config)
    rows = table(config, "orders")
    assert "channel" not in rows.columns
    assert rows["_rescued_data"].to_list() == ['{"channel":"web"}'] * 4


def test_drift_fail_stops_that_dataset_only_until_the_config_changes(tmp_path: Path) -> None:
    extra_column_file(tmp_path / "eu" / "b.parquet")
    write_orders_parquet(tmp_path / "us" / "a.parquet", orders_rows(1, 2), mtime=T0)
    lakes = {
        "eu": local_lake(
            tmp_path / "eu",
            {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders", "drift": "fail"}},
        ),
        "us": local_lake(
            tmp_path / "us", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
        ),
    }
    config = load_config(write_config(tmp_path, lakes=lakes, tables={"orders": orders_table()}))
    result = sync(config)
    failed = {d.key: d.error for d in result.datasets}
    assert failed["us.orders"] is None
    assert re.search(r"schema drift (\w{8}) in eu/b.parquet: new column 'channel'", failed["eu.orders"] or "")
    assert "policy is 'fail': it is stopped until the drift is reviewed" in (failed["eu.orders"] or "")
    assert table(config, "orders").height == 2
    assert [p.version for p in Ledger(lakehouse_for(config)).read("eu.orders").pending] == [1]
    lakes["eu"]["datasets"]["orders"]["drift"] = "evolve"
    fixed = load_config(write_config(tmp_path, lakes=lakes, tables={"orders": orders_table()}))
    assert sync(fixed, run="after-review").rows_committed == 4
    assert table(config, "orders").height == 6


def fail_policy_lake(tmp_path: Path) -> LakesyncConfig:
    extra_column_file(tmp_path / "eu" / "b.parquet")
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 2), mtime=T0)
    return one_lake(tmp_path, drift="fail")


def test_approving_a_drift_lets_the_stopped_dataset_go_on(tmp_path: Path) -> None:
    config = fail_policy_lake(tmp_path)
    assert sync(config).datasets[0].error is not None
    log = DriftLog(lakehouse_for(config))
    (event,) = log.events()
    assert (event.status, event.dataset, event.held_back) == ("open", "eu.orders", ("b.parquet",))
    assert event.report.suggestion() == "approve to add channel to the table (nullable)"
    decided = log.decide(event.id, "approved", actor="ada")
    assert (decided.status, decided.decided_by) == ("approved", "ada")
    result = sync(config, run="after-approval")
    assert result.datasets[0].error is None
    assert result.datasets[0].drift[0].actions[0] == f"accepted: drift {event.id} was approved"
    rows = table(config, "orders")
    assert rows.height == 6 and rows["channel"].drop_nulls().to_list() == ["web"] * 4


def test_rejecting_a_drift_quarantines_its_files_for_good_and_the_dataset_goes_on(tmp_path: Path) -> None:
    config = fail_policy_lake(tmp_path)
    sync(config)
    log = DriftLog(lakehouse_for(config))
    (event,) = log.events()
    log.decide(event.id, "rejected", actor="grace")
    result = sync(config, run="after-rejection")
    assert result.datasets[0].error is None
    assert (result.datasets[0].files_ingested, result.datasets[0].files_quarantined) == (1, 1)
    held = quarantine(config, "orders")
    assert held.height == 4 and f"schema drift {event.id} was rejected (grace on" in held["reason"][0]
    assert "channel" not in table(config, "orders").columns


def test_an_approved_rename_maps_the_column(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 20), mtime=T0)
    config = one_lake(tmp_path, drift="quarantine")
    sync(config)
    renamed = pl.DataFrame(orders_rows(21, 5)).rename({"customer_id": "cust_id"})
    renamed.with_columns(pl.Series("cust_id", [1000, 1001, 1002, 99, 98])).write_parquet(
        tmp_path / "eu" / "b.parquet"
    )
    assert sync(config, run="renamed").datasets[0].files_quarantined == 1
    log = DriftLog(lakehouse_for(config))
    (event,) = log.events()
    assert event.renames == {"cust_id": "customer_id"}
    rename = next(c for c in event.report.changes if c.change == "renamed")
    assert rename.evidence == {
        "source_column": "cust_id",
        "name_similarity": 0.75,
        "value_overlap": 0.6,
        "score": 0.68,
        "margin": 0.68,
    }
    log.decide(event.id, "approved")
    write_orders_parquet(tmp_path / "eu" / "c.parquet", orders_rows(40, 1), mtime=T0 + timedelta(days=1))
    renamed.write_parquet(tmp_path / "eu" / "d.parquet")  # a later file with the same drift
    result = sync(config, run="after-approval")
    assert result.datasets[0].files_quarantined == 0
    rows = table(config, "orders").filter(pl.col("_lakesync_file") == "eu/d.parquet")
    assert rows["customer_id"].to_list() == [1000 + i for i in range(5)]
    # Erasure and `pii apply` find values quarantined under the old name through the same mapping.
    assert DriftLog(lakehouse_for(config)).source_columns(config, "orders") == {"cust_id": "customer_id"}


# -- failures of one part never stop the others ---------------------------------------------
def test_an_unreachable_lake_fails_alone(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "us" / "a.parquet", orders_rows(1, 2), mtime=T0)
    lakes = {
        "eu": local_lake(
            tmp_path / "missing", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
        ),
        "us": local_lake(
            tmp_path / "us", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
        ),
    }
    config = load_config(write_config(tmp_path, lakes=lakes, tables={"orders": orders_table()}))
    result = sync(config)
    errors = {d.key: d.error for d in result.datasets}
    assert errors["us.orders"] is None
    assert "lake 'eu': the folder" in (errors["eu.orders"] or "")
    assert table(config, "orders").height == 2


def _breaks_at_its_end(tmp_path: Path) -> None:
    """a.csv: ten good records, then one with an extra field; b.csv: three good ones."""
    path = write_orders_csv(tmp_path / "eu" / "a.csv", orders_rows(1, 10), mtime=T0)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("11,1,1.0,EUR,2026-01-01T00:00:00Z,surprise\n")
    write_orders_csv(tmp_path / "eu" / "b.csv", orders_rows(50, 3), mtime=T0 + timedelta(hours=1))


@pytest.mark.parametrize("whole_file_bytes", [0, 10**9], ids=["streamed", "whole"])
def test_a_file_that_breaks_after_its_first_chunks_is_quarantined_whole(
    tmp_path: Path, whole_file_bytes: int
) -> None:
    _breaks_at_its_end(tmp_path)
    config = one_lake(tmp_path, fmt="csv", pattern="*.csv", bad_records="quarantine_file")
    result = sync(config, chunk_rows=3, whole_file_bytes=whole_file_bytes)
    assert (result.datasets[0].files_ingested, result.datasets[0].files_quarantined) == (1, 1)
    assert sorted(table(config, "orders")["order_id"].to_list()) == [50, 51, 52]
    record = quarantine(config, "orders").filter(pl.col("file") == "a.csv")
    assert record["level"].to_list() == ["file"]
    assert (
        "line 12: a record has more fields than the header (6 fields, the header has 5)"
        in record["reason"][0]
    )


@pytest.mark.parametrize("whole_file_bytes", [0, 10**9], ids=["streamed", "whole"])
def test_a_record_that_breaks_after_the_first_chunks_costs_only_itself(
    tmp_path: Path, whole_file_bytes: int
) -> None:
    # Streamed: its first chunks were already on their way to the Delta writer when the bad
    # record came; the round is redone reading the file record by record (nothing committed twice).
    _breaks_at_its_end(tmp_path)
    config = one_lake(tmp_path, fmt="csv", pattern="*.csv")
    result = sync(config, chunk_rows=3, whole_file_bytes=whole_file_bytes)
    (dataset,) = result.datasets
    assert (dataset.files_ingested, dataset.files_quarantined) == (2, 0)
    assert (dataset.rows_read, dataset.rows_committed, dataset.rows_quarantined) == (14, 13, 1)
    assert sorted(table(config, "orders")["order_id"].to_list()) == [*range(1, 11), 50, 51, 52]
    (record,) = quarantine(config, "orders").filter(pl.col("file") == "a.csv").iter_rows(named=True)
    assert (record["level"], record["row"], record["rules"]) == ("row", 11, ["malformed_record"])
    assert (
        record["reason"] == "line 12: a record has more fields than the header (6 fields, the header has 5)"
    )
    assert json.loads(record["raw"]) == {"(record)": "11,1,1.0,EUR,2026-01-01T00:00:00Z,surprise"}


# -- exactly once under crashes ----------------------------------------------------------------
class Crash(BaseException):
    """Stands for the process dying at that point (not an Exception: nothing catches it)."""


def crash_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    original = getattr(owner, name)
    state = {"crashed": False}

    def wrapper(*args: object, **kwargs: object) -> object:
        if not state["crashed"]:
            state["crashed"] = True
            raise Crash(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        (delta, "append"),  # after planning, before the data commit
        (Ledger, "record_many"),  # after the data and quarantine commits, before the ledger
        (Lakehouse, "open"),  # at the very start
    ],
)
def test_a_run_killed_at_any_step_and_retried_commits_each_row_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: object, name: str
) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 10) + orders_rows(1, 1), mtime=T0)
    write_orders_parquet(
        tmp_path / "eu" / "b.parquet", orders_rows(20, 5, currency="XXX"), mtime=T0 + timedelta(minutes=1)
    )
    config = one_lake(tmp_path)
    crash_once(monkeypatch, owner, name)
    with pytest.raises(Crash):
        sync(config, run="killed")
    retried = sync(config, run="retry")
    rows = table(config, "orders")
    assert sorted(rows["order_id"].to_list()) == list(range(1, 11))
    assert quarantine(config, "orders").height == 6  # one duplicate id, five bad currencies
    ledger = Ledger(lakehouse_for(config)).read("eu.orders")
    assert ledger.pending == () and ledger.count("ingested") == 2
    assert sync(config, run="again").rows_read == 0
    assert retried.rows_read in (0, 16)  # 0 when the crash came after every commit


def test_two_syncs_racing_on_one_table_never_duplicate_a_row(tmp_path: Path) -> None:
    for i in range(6):
        write_orders_parquet(
            tmp_path / "eu" / f"{i}.parquet", orders_rows(i * 100, 50), mtime=T0 + timedelta(minutes=i)
        )
    config = one_lake(tmp_path, sensor={"max_files": 2})
    errors: list[BaseException] = []
    results = []

    def worker(n: int) -> None:
        try:
            results.extend(sync(config, run=f"w{n}-{round_}") for round_ in range(4))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = table(config, "orders")["order_id"]
    assert ids.len() == 300 and ids.is_unique().all()
    # Each run reports only what it committed itself: together, every row once.
    assert sum(d.rows_committed_here for r in results for d in r.datasets) == 300


def test_the_documented_example_config_syncs_the_demo_lakes_as_written(demo: Path) -> None:
    from lakesync.config import parse_config
    from lakesync_tests.test_config import EXAMPLE

    config = parse_config(EXAMPLE, source="example", base_dir=demo.parent)
    result = sync(config, "orders")
    by_key = {d.key: d for d in result.datasets}
    assert all(d.error is None and d.conserved for d in result.datasets)
    assert by_key["eu_sales.orders"].rows_committed == 1988
    # The example names no timestamp format; the demo's US export writes 11/02/2026 03:15.
    # lakesync does not guess between month-first and day-first. Under drift policy evolve the
    # text is rescued: the row is committed with ordered_at null and '11/02/2026 03:15' kept in
    # _rescued_data, until `timestamp_format: "%m/%d/%Y %H:%M"` is set (as the demo's config does).
    us = by_key["us_sales.orders"]
    assert us.rows_read == 1200
    rows = table(config, "orders").filter(pl.col("_lakesync_file").str.starts_with("us_sales/"))
    assert rows["ordered_at"].null_count() == rows.height
    assert rows["_rescued_data"].str.contains(r'"OrderedAt":"11/0\d/2026 \d\d:\d\d"').all()


# -- quarantine replay -------------------------------------------------------------------------
def test_replay_ingests_quarantined_rows_again_after_a_contract_fix_exactly_once(tmp_path: Path) -> None:
    from lakesync.governance.replay import plan_replays, quarantine_groups

    rows = orders_rows(1, 5)
    rows[1]["currency"] = "CHF"
    rows[3]["currency"] = "CHF"
    write_orders_parquet(tmp_path / "eu" / "a.parquet", rows, mtime=T0)
    config = one_lake(tmp_path)
    first = sync(config)
    assert (first.rows_committed, first.rows_quarantined) == (3, 2)
    (group,) = quarantine_groups(config, lakehouse_for(config))
    assert (group.file, group.batch, group.level, group.rows, group.records) == (
        "a.parquet",
        1,
        "row",
        (2, 4),
        2,
    )
    # The contract is fixed: CHF is a currency too.
    fixed_table = orders_table()
    fixed_table["contract"] = {
        "columns": {
            **fixed_table["contract"]["columns"],
            "currency": {"type": "string", "checks": {"isin": ["EUR", "USD", "GBP", "JPY", "CHF"]}},
        }
    }
    lakes = {
        "eu": local_lake(
            tmp_path / "eu", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
        )
    }
    fixed = load_config(write_config(tmp_path, lakes=lakes, tables={"orders": fixed_table}))
    (plan,) = plan_replays(fixed, lakehouse_for(fixed), [group], run_id="replay")
    assert (plan.version, plan.replay_of, dict(plan.rows)) == (2, 1, {"a.parquet": (2, 4)})
    replayed = sync(fixed, run="replay")
    assert (replayed.rows_read, replayed.rows_committed, replayed.rows_quarantined) == (2, 2, 0)
    assert sorted(table(fixed, "orders")["order_id"].to_list()) == [1, 2, 3, 4, 5]
    (after,) = quarantine_groups(fixed, lakehouse_for(fixed))
    assert after.replayed_in == 2
    with pytest.raises(ValueError, match="was already replayed in batch 2"):
        plan_replays(fixed, lakehouse_for(fixed), [after], run_id="again")
    assert sync(fixed, run="again").rows_read == 0


def test_replay_of_an_unreadable_file_takes_the_whole_file(tmp_path: Path) -> None:
    from lakesync.governance.replay import plan_replays, quarantine_groups

    broken = tmp_path / "eu" / "a.csv"
    write_orders_csv(broken, orders_rows(1, 3), mtime=T0)
    broken.write_text(broken.read_text().replace("order_id,", "order_id;", 1), encoding="utf-8")
    config = one_lake(tmp_path, fmt="csv", pattern="*.csv")
    assert sync(config).datasets[0].files_quarantined == 1
    (group,) = quarantine_groups(config, lakehouse_for(config))
    assert group.level == "file"
    write_orders_csv(broken, orders_rows(1, 3))  # the owner of the lake fixed the file
    plan_replays(config, lakehouse_for(config), [group], run_id="replay")
    assert sync(config, run="replay").rows_committed == 3
    assert sorted(table(config, "orders")["order_id"].to_list()) == [1, 2, 3]


# -- merge: which version wins, and where the others go ------------------------------------------
def customers_lakes(tmp_path: Path, latest_by: str | None) -> LakesyncConfig:
    table: dict[str, object] = {
        "mode": "merge",
        "keys": ["id"],
        "contract": {
            "columns": {
                "id": {"type": "int64", "nullable": False},
                "name": {"type": "string"},
                "updated_at": {"type": "datetime"},
            }
        },
    }
    if latest_by:
        table["latest_by"] = latest_by
    datasets = {"customers": {"pattern": "*.csv", "format": "csv", "table": "customers"}}
    lakes = {"eu": local_lake(tmp_path / "eu", datasets), "us": local_lake(tmp_path / "us", datasets)}
    return load_config(write_config(tmp_path, lakes=lakes, tables={"customers": table}))


def customers_file(path: Path, rows: list[tuple[int, str, str]], landed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,name,updated_at\n" + "".join(f"{i},{n},{u}\n" for i, n, u in rows), encoding="utf-8")
    touch_at(path, T0 + timedelta(hours=landed))


def touch_at(path: Path, when: object) -> None:
    from lakesync_tests.lakes import touch

    touch(path, when)  # type: ignore[arg-type]


def test_lakes_disagreeing_on_a_key_keep_the_latest_version_and_trace_the_others(tmp_path: Path) -> None:
    config = customers_lakes(tmp_path, "updated_at")
    customers_file(
        tmp_path / "us" / "a.csv",
        [(7, "Ada (US)", "2026-11-02T00:00:00Z"), (8, "Ken", "2026-11-01T00:00:00Z")],
        landed=1,
    )
    customers_file(
        tmp_path / "eu" / "b.csv", [(7, "Ada (EU)", "2026-11-01T00:00:00Z")], landed=2
    )  # lands later, is older
    result = sync(config, "customers")
    assert result.rows_superseded == 1
    lakehouse = lakehouse_for(config)
    rows = pl.read_delta(lakehouse.table_uri("customers")).sort("id")
    assert rows.select("id", "name").rows() == [(7, "Ada (US)"), (8, "Ken")]
    lost = pl.read_delta(lakehouse.superseded_uri("customers"))
    assert lost.select("id", "name", "_lakesync_file", "_lakesync_superseded_by").rows() == [
        (7, "Ada (EU)", "eu/b.csv", "us/a.csv#1")
    ]
    assert (
        lost["_lakesync_superseded_reason"][0]
        == "superseded in the same batch by a later version by updated_at"
    )
    # A late file with an older version loses against the table; a newer one replaces it.
    customers_file(
        tmp_path / "eu" / "c.csv",
        [(8, "Ken (old)", "2026-10-01T00:00:00Z"), (7, "Ada (new)", "2026-11-05T00:00:00Z")],
        landed=3,
    )
    sync(config, "customers", run="later")
    rows = pl.read_delta(lakehouse.table_uri("customers")).sort("id")
    assert rows.select("id", "name").rows() == [(7, "Ada (new)"), (8, "Ken")]
    lost = pl.read_delta(lakehouse.superseded_uri("customers")).sort("_lakesync_superseded_at")
    assert lost.select("name", "_lakesync_superseded_by", "_lakesync_superseded_reason").row(-1) == (
        "Ken (old)",
        "us/a.csv#2",
        "the table already holds a later version by updated_at",
    )
    # What a later batch replaced stays readable in the change data feed.
    changes = pl.from_arrow(
        pa.table(DeltaTable(lakehouse.table_uri("customers")).load_cdf(starting_version=0))
    )
    assert isinstance(changes, pl.DataFrame)
    replaced = changes.filter(pl.col("_change_type") == "update_preimage")
    assert replaced.select("id", "name").rows() == [(7, "Ada (US)")]


def test_without_latest_by_the_most_recently_landed_file_wins(tmp_path: Path) -> None:
    config = customers_lakes(tmp_path, None)
    customers_file(tmp_path / "us" / "a.csv", [(7, "Ada (US)", "2026-11-02T00:00:00Z")], landed=1)
    customers_file(tmp_path / "eu" / "b.csv", [(7, "Ada (EU)", "2026-11-01T00:00:00Z")], landed=2)
    sync(config, "customers")
    assert pl.read_delta(lakehouse_for(config).table_uri("customers"))["name"].to_list() == ["Ada (EU)"]
    lost = pl.read_delta(lakehouse_for(config).superseded_uri("customers"))
    assert lost.select("name", "_lakesync_superseded_by", "_lakesync_superseded_reason").rows() == [
        ("Ada (US)", "eu/b.csv#1", "superseded in the same batch by a version in a later file")
    ]


# -- bookkeeping tables written by an older lakesync ---------------------------------------
def _as_if_older(uri: str, dropped: list[str], *, partition_by: list[str] | None = None) -> None:
    """Rewrite a bookkeeping table without some of today's columns, keeping its transactions."""
    from deltalake import write_deltalake

    snapshot = DeltaTable(uri)
    older = snapshot.to_pyarrow_table().drop_columns(dropped)
    write_deltalake(uri, older, mode="overwrite", schema_mode="overwrite", partition_by=partition_by)
    assert not set(dropped) & {f.name for f in DeltaTable(uri).schema().fields}


def test_ledger_and_quarantine_of_an_older_lakesync_are_read_and_extended(tmp_path: Path) -> None:
    from lakesync.governance.replay import quarantine_groups

    write_orders_parquet(
        tmp_path / "eu" / "a.parquet", orders_rows(1, 5) + orders_rows(6, 1, amount=-1.0), mtime=T0
    )
    config = one_lake(tmp_path)
    sync(config)
    house = lakehouse_for(config)
    _as_if_older(house.ledger_uri, ["rows", "replay_of"], partition_by=["dataset"])
    _as_if_older(house.quarantine_uri("orders"), ["contract"])

    state = Ledger(house).read("eu.orders")  # readers see the missing columns as null
    assert set(state.known_tags()) == {"a.parquet"}
    assert [g.file for g in quarantine_groups(config, house)] == ["a.parquet"]

    write_orders_parquet(
        tmp_path / "eu" / "b.parquet",
        orders_rows(7, 3) + orders_rows(10, 1, amount=-2.0),
        mtime=T0 + timedelta(hours=1),
    )
    second = sync(config, run="second")  # writers add today's columns back
    assert second.rows_committed == 3
    assert second.datasets[0].error is None
    assert {"rows", "replay_of"} <= {f.name for f in DeltaTable(house.ledger_uri).schema().fields}
    records = quarantine(config, "orders").sort("file")
    assert records["file"].to_list() == ["a.parquet", "b.parquet"]
    assert records["contract"].null_count() == 1  # the older record has none; the new one does
    assert sorted(table(config, "orders")["order_id"].to_list()) == [1, 2, 3, 4, 5, 7, 8, 9]


@pytest.mark.parametrize("whole_file_bytes", [0, 10**9], ids=["streamed", "whole"])
def test_unique_keys_hold_across_files_and_after_a_crash_before_the_quarantine_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_file_bytes: int
) -> None:
    import lakesync.state.quarantine as quarantine_table

    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 10), mtime=T0)
    config = one_lake(tmp_path)
    sync(config)
    write_orders_parquet(tmp_path / "eu" / "b.parquet", orders_rows(8, 7), mtime=T0 + timedelta(hours=1))
    write_orders_parquet(tmp_path / "eu" / "c.parquet", orders_rows(14, 3), mtime=T0 + timedelta(hours=2))
    crash_once(monkeypatch, quarantine_table, "write")  # the rows are committed, their rejects not yet
    options = {"chunk_rows": 3, "whole_file_bytes": whole_file_bytes}
    with pytest.raises(Crash):
        sync(config, run="killed", **options)
    retried = sync(config, run="retry", **options)  # reads the committed batch again: same verdicts
    assert (retried.rows_committed, retried.datasets[0].rows_quarantined) == (6, 4)  # the batch, as committed
    assert retried.datasets[0].rows_committed_elsewhere == 6  # by the killed run: not this one's
    from lakesync.report.summary import sync_summary

    summary = sync_summary(retried.datasets, [])
    assert "eu.orders: 6 row(s); this run read their batch again" in summary
    assert sorted(table(config, "orders")["order_id"].to_list()) == list(range(1, 17))
    rejected = quarantine(config, "orders").sort("file", "row")
    assert rejected.select("file", "row").rows() == [
        ("b.parquet", 1),
        ("b.parquet", 2),
        ("b.parquet", 3),
        ("c.parquet", 1),
    ]
    assert set(rejected["rules"].list.first()) == {"duplicate_key"}
    assert "an earlier file of this sync holds it (eu/b.parquet record 7)" in rejected["reason"][-1]


# -- small files checked together --------------------------------------------------------------
def _small_files_lake(root: Path, fmt: str) -> None:
    """Twelve small files of one batch, most of them wrong in their own way."""
    rows = {n: orders_rows(n * 10, 5) for n in range(12)}
    if fmt == "csv":
        rows[1][1]["amount"] = "abc"  # not a number
    rows[2][2]["currency"] = "XXX"  # not in the contract's list
    rows[3][3]["order_id"] = rows[3][0]["order_id"]  # twice in its file
    rows[4][0]["order_id"] = rows[0][4]["order_id"]  # also in an earlier file
    rows[5][4]["amount"] = -1.0  # below the contract's minimum
    rows[6] = []  # no rows
    rows[9][2]["customer_id"] = None  # a required value missing
    for n, file_rows in rows.items():
        when = T0 + timedelta(minutes=n)
        path = root / "eu" / f"{n:02d}.{fmt}"
        if n == 7:  # a column the table does not have
            extra = pl.DataFrame(file_rows).with_columns(channel=pl.lit("web"))
            if fmt == "csv":
                extra.write_csv(path)
            else:
                extra.write_parquet(path)
            touch(path, when)
        elif n == 8 and fmt == "csv":  # a record that cannot be parsed
            write_orders_csv(path, file_rows, mtime=when)
            path.write_text(path.read_text() + "81,1,2,EUR,2026-11-01T00:00:00+00:00,extra,fields\n")
            touch(path, when)
        elif n == 8:  # not parquet at all
            path.write_bytes(b"PAR1 this is not a parquet file")
            touch(path, when)
        elif fmt == "csv":
            write_orders_csv(path, file_rows, mtime=when)
        else:
            write_orders_parquet(path, file_rows, mtime=when)


@pytest.mark.parametrize(("fmt", "drift"), [("csv", "evolve"), ("csv", "rescue"), ("parquet", "evolve")])
def test_small_files_checked_together_give_exactly_what_each_file_gives_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, drift: str
) -> None:
    from lakesync.pipeline import fused

    groups: list[int] = []
    scans: list[bool] = []
    together, read_together = fused._together, fused._read_parquet_together

    def counted(members, raw):  # type: ignore[no-untyped-def]
        groups.append(len(members))
        return together(members, raw)

    def scanned(jobs):  # type: ignore[no-untyped-def]
        found = read_together(jobs)
        scans.append(found is not None)
        return found

    def run(root: Path) -> tuple[object, ...]:
        _small_files_lake(root, fmt)
        config = one_lake(root, fmt=fmt, pattern=f"*.{fmt}", drift=drift, bad_records="quarantine_row")
        result = sync(config)
        rows = table(config, "orders").drop("_lakesync_ingested_at").sort("_lakesync_file", "_lakesync_row")
        rejected = (
            quarantine(config, "orders")
            .select("file", "row", "level", "rules", "columns", "reason")
            .sort("file", "row", nulls_last=True)
        )
        ledger = (
            pl.read_delta(lakehouse_for(config).ledger_uri)
            .filter(pl.col("event") != "planned")
            .select(
                "path", "event", "rows_read", "rows_committed", "rows_quarantined", "rows_rescued", "drift"
            )
            .sort("path")
        )
        counts = [(d.rows_read, d.rows_committed, d.rows_quarantined) for d in result.datasets]
        return rows, rejected, ledger, counts

    monkeypatch.setattr(fused, "_together", counted)
    monkeypatch.setattr(fused, "_read_parquet_together", scanned)
    monkeypatch.setattr(fused, "FUSE_FILES", 6)  # 00-05 (one schema) and 06-11 (three, one file unreadable)
    rows, rejected, ledger, counts = run(tmp_path / "together")
    assert max(groups) >= 5  # the files of one schema were checked as one frame
    assert set(scans) == ({True, False} if fmt == "parquet" else {False})  # parquet 00-05: one scan
    monkeypatch.setattr(fused, "FUSE_FILES", 1)
    groups.clear()
    alone = run(tmp_path / "alone")
    assert not groups
    assert rows.equals(alone[0])  # type: ignore[attr-defined]
    assert rejected.equals(alone[1])  # type: ignore[attr-defined]
    assert ledger.equals(alone[2])  # type: ignore[attr-defined]
    assert counts == alone[3]
    # Each failure names its own file and its row there.
    reasons = {(r["file"], r["row"]): r["reason"] for r in rejected.iter_rows(named=True)}  # type: ignore[attr-defined]
    assert "first in row 1" in reasons[(f"03.{fmt}", 4)]
    assert "XXX" in reasons[(f"02.{fmt}", 3)]
    assert "an earlier file of this sync holds it" in reasons[(f"04.{fmt}", 1)]
    assert (f"09.{fmt}", 3) in reasons and (f"05.{fmt}", 5) in reasons
    if fmt == "csv":
        rescued = ledger.filter(pl.col("path") == "01.csv")["rows_rescued"].item()  # type: ignore[attr-defined]
        assert rescued == 1  # 'abc' kept in _rescued_data (a nullable column)
    else:
        assert "not a readable parquet file" in reasons[("08.parquet", None)]
    assert rows["_lakesync_file"].n_unique() == (11 if fmt == "csv" else 10)  # type: ignore[attr-defined]

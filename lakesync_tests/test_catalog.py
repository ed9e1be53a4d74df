"""The global catalog: every asset and column of every lake, table and feature, found by any of
its names; the ``_catalog`` table rebuilt after every sync; owners, tags and personal data in
Dagster."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakesync
from lakesync.catalog import catalog_frame, search
from lakesync.config import ConfigError, load_config
from lakesync.defs import build_definitions
from lakesync.pipeline import sync_table
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Lakehouse, lakehouse_for
from lakesync_tests.commands import cli
from lakesync_tests.lakes import (
    T0,
    contract_lake,
    local_lake,
    orders_rows,
    orders_table,
    write_config,
    write_renamed_orders,
)


def _sources(hit: object) -> dict[str, str]:
    return {f"{s.lake}.{s.dataset}": s.column for s in hit.sources}  # type: ignore[attr-defined]


def test_a_source_name_finds_its_canonical_column_in_every_lake_and_back(demo: Path) -> None:
    config = load_config(demo)
    frame = catalog_frame(config, lakehouse_for(config))
    everywhere = {
        "eu_sales.orders": "order_no",
        "us_sales.orders": "OrderID",
        "apac_sales.orders": "order_id",
    }

    by_us_name = search(frame, "OrderID")[0]
    assert (by_us_name.asset, by_us_name.column) == ("lakehouse/orders", "order_id")
    assert by_us_name.match == "us_sales.orders calls it OrderID"
    assert _sources(by_us_name) == everywhere
    by_eu_name = search(frame, "order_no")[0]
    assert (by_eu_name.asset, by_eu_name.column, by_eu_name.match) == (
        "lakehouse/orders",
        "order_id",
        "eu_sales.orders calls it order_no",
    )
    canonical = search(frame, "order_id")[0]
    assert canonical.match == "exact" and _sources(canonical) == everywhere
    assert search(frame, "Order-Id")[0].match == "same name, other spelling"
    # Exact and alias matches rank above similar names; asset names only when asked for.
    email = search(frame, "Email", columns_only=True)
    assert [(h.asset, h.column) for h in email][:1] == [("lakehouse/customers", "email")]
    assert all(h.column is not None for h in email)
    named = {h.asset for h in search(frame, "orders") if h.match == "asset name (exact)"}
    assert named == {"lakehouse/orders", *(f"lakes/{lake}_sales/orders" for lake in ("eu", "us", "apac"))}
    assert ("features/customer_spend", "orders") in {(h.asset, h.column) for h in search(frame, "orders")}
    us_only = search(frame, "order_id", lake="us_sales")[0]
    assert _sources(us_only) == {"us_sales.orders": "OrderID"}
    personal = search(frame, "customer_id", tag="pii", columns_only=True)
    assert {h.asset for h in personal} == {
        "lakehouse/orders",
        "lakehouse/customers",
        "features/customer_spend",
    }
    assert search(frame, "no_such_column_anywhere") == []


def test_every_asset_and_column_is_one_row_with_its_source_names_and_contract(demo: Path) -> None:
    config = load_config(demo)
    frame = catalog_frame(config, lakehouse_for(config))
    assert frame.select("asset", "column").is_unique().all()
    us = frame.filter((pl.col("asset") == "lakes/us_sales/customers") & (pl.col("column") == "email")).row(
        0, named=True
    )
    assert (us["source_column"], us["mapped_by"], us["pii"], us["table"]) == (
        "Email",
        "config",
        "mask",
        "customers",
    )
    assert us["pattern"] == "crm/*.csv" and us["format"] == "csv" and us["location"].endswith("us_sales")
    assert us["tags"] == "pii=true" and us["downstream"] == "lakehouse/customers"
    table = frame.filter((pl.col("asset") == "lakehouse/orders") & (pl.col("column") == "amount")).row(
        0, named=True
    )
    assert table["checks"] == "greater_than_or_equal_to(0)" and table["origin"] == "contract"
    assert table["upstream"] == "lakes/eu_sales/orders, lakes/us_sales/orders, lakes/apac_sales/orders"
    assert table["downstream"] == "features/customer_spend" and table["delta_version"] is None  # not synced


def test_an_approved_rename_is_the_datasets_name_for_the_column(tmp_path: Path) -> None:
    config_path = contract_lake(tmp_path)
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="first")
    renames = {"amount": "order_total"}
    write_renamed_orders(
        tmp_path / "lake" / "renamed.parquet", orders_rows(500, 100), renames, T0 + timedelta(hours=2)
    )
    quarantining = load_config(
        write_config(
            tmp_path,
            lakes={
                "eu": local_lake(
                    tmp_path / "lake",
                    {
                        "orders": {
                            "pattern": "*.parquet",
                            "format": "parquet",
                            "table": "orders",
                            "drift": "quarantine",
                        }
                    },
                )
            },
            tables={"orders": orders_table()},
        )
    )
    sync_table(quarantining, "orders", lakehouse=lakehouse, run_id="second")
    drift = DriftLog(lakehouse)
    (event,) = [e for e in drift.events() if e.status == "open"]
    assert event.renames == {"order_total": "amount"}
    before = catalog_frame(quarantining, lakehouse)
    open_row = before.filter((pl.col("asset") == "lakes/eu/orders") & (pl.col("column") == "amount")).row(
        0, named=True
    )
    assert (open_row["source_column"], open_row["drift_open"]) == ("amount", 1)
    drift.decide(event.id, "approved", actor="reviewer")
    after = catalog_frame(quarantining, lakehouse)
    row = after.filter((pl.col("asset") == "lakes/eu/orders") & (pl.col("column") == "amount")).row(
        0, named=True
    )
    assert (row["source_column"], row["mapped_by"], row["drift_open"]) == (
        "order_total",
        "approved rename",
        0,
    )
    assert search(after, "order_total")[0].column == "amount"


def test_the_catalog_table_is_rebuilt_after_every_sync_and_answers_sql(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = contract_lake(tmp_path)
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    lakehouse = lakehouse_for(load_config(config))
    stored = pl.read_delta(lakehouse.catalog_uri)
    assert stored.filter(pl.col("asset") == "lakehouse/orders")["delta_version"].unique().to_list() == [1]
    assets = set(stored["asset"])
    assert assets == {"lakes/eu/orders", "lakehouse/orders", "features/spend"}
    files = stored.filter(pl.col("asset") == "lakes/eu/orders")["files_ingested"].unique().to_list()
    assert files == [1]
    instance = dg.DagsterInstance.get()
    assert instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "_catalog"])) is not None

    path = tmp_path / "lake" / "more.parquet"
    pq.write_table(pa.Table.from_pylist(orders_rows(5000, 10)), path)
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    again = pl.read_delta(lakehouse.catalog_uri)
    assert again.filter(pl.col("asset") == "lakehouse/orders")["delta_version"].unique().to_list() == [2]
    assert again.filter(pl.col("asset") == "lakes/eu/orders")["files_ingested"].unique().to_list() == [2]
    answer = cli(
        capsys,
        "query",
        "select asset, rows from _catalog where column = 'order_id' and kind = 'table'",
        "--format",
        "json",
        "--config",
        str(config),
    )
    assert [json.loads(line) for line in answer.stdout.splitlines()] == [
        {"asset": "lakehouse/orders", "rows": 110}
    ]
    nothing_new = DeltaVersion(lakehouse)
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    assert DeltaVersion(lakehouse) == nothing_new  # nothing synced: not rebuilt


def DeltaVersion(lakehouse: Lakehouse) -> int:  # noqa: N802 - reads like the value it is
    snapshot = lakehouse.open(lakehouse.catalog_uri)
    assert snapshot is not None
    return snapshot.version()


def test_catalog_commands_list_search_and_show(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listed = cli(capsys, "catalog", "--config", str(demo))
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()[2:]] == [
        "lakehouse/orders",
        "lakehouse/customers",
        "lakes/eu_sales/orders",
        "lakes/eu_sales/customers",
        "lakes/us_sales/orders",
        "lakes/us_sales/customers",
        "lakes/apac_sales/orders",
        "features/customer_spend",
    ]
    found = cli(capsys, "catalog", "search", "OrderID", "--column", "--config", str(demo))
    first = found.stdout.splitlines()[2]
    assert (
        first.startswith("us_sales.orders calls it OrderID  lakehouse/orders")
        and "eu_sales.orders: order_no" in first
    )
    as_json = cli(
        capsys, "catalog", "search", "email", "--tag", "pii", "--format", "json", "--config", str(demo)
    )
    assert [json.loads(line)["asset"] for line in as_json.stdout.splitlines()] == ["lakehouse/customers"]
    shown = cli(capsys, "catalog", "show", "us_sales.orders", "--config", str(demo))
    assert shown.returncode == 0
    assert "lineage:           lakes/us_sales/orders -> lakehouse/orders" in shown.stdout
    assert any(line.split()[:3] == ["OrderID", "order_id", "config"] for line in shown.stdout.splitlines())
    table = cli(capsys, "catalog", "show", "orders", "--config", str(demo))
    row = next(line for line in table.stdout.splitlines() if line.startswith("order_id "))
    assert "eu_sales.orders: order_no; us_sales.orders: OrderID; apac_sales.orders: order_id" in row
    unknown = cli(capsys, "catalog", "show", "nowhere", "--config", str(demo))
    assert unknown.returncode == 2 and unknown.stderr.startswith(
        "no asset 'nowhere' in the catalog (assets: "
    )
    hits = lakesync.search("order_no", config=demo)
    assert hits.row(0, named=True)["column"] == "order_id"


def test_owners_tags_and_personal_data_reach_dagster_and_the_catalog(demo: Path) -> None:
    text = demo.read_text()
    text = text.replace(
        "        table: customers\n        columns: {CustomerID",
        "        table: customers\n        owners: [team:crm]\n        tags: {domain: sales}\n        columns: {CustomerID",
    ).replace(
        "    latest_by: updated_at\n",
        "    latest_by: updated_at\n    owners: [data@example.com]\n",
    )
    demo.write_text(text)
    config = load_config(demo)
    repo = build_definitions(config).get_repository_def()
    dataset = repo.assets_defs_by_key[dg.AssetKey(["lakes", "us_sales", "customers"])].specs_by_key[
        dg.AssetKey(["lakes", "us_sales", "customers"])
    ]
    assert dataset.tags["lakesync/pii"] == "true" and dataset.tags["domain"] == "sales"
    assert "team:crm" in dataset.owners
    assert [c.name for c in dataset.metadata["dagster/column_schema"].columns] == [
        "CustomerID",
        "Name",
        "Email",
        "Country",
        "UpdatedAt",
    ]
    assert dataset.metadata["dagster/table_name"] == "us_sales.customers"
    table = repo.assets_defs_by_key[dg.AssetKey(["lakehouse", "customers"])].specs_by_key[
        dg.AssetKey(["lakehouse", "customers"])
    ]
    assert table.owners == ["data@example.com"] and table.tags["lakesync/pii"] == "true"
    frame = catalog_frame(config, lakehouse_for(config))
    row = frame.filter(pl.col("asset") == "lakes/us_sales/customers").row(0, named=True)
    assert row["owners"] == "team:crm" and row["tags"] == "domain=sales, pii=true"


def test_an_owner_dagster_cannot_take_is_a_config_error(tmp_path: Path) -> None:
    config = contract_lake(tmp_path)
    config.write_text(
        config.read_text().replace("    mode: append\n", "    mode: append\n    owners: [bob]\n", 1)
    )
    with pytest.raises(ConfigError, match=r"tables\.orders\.owners\.0"):
        load_config(config)

"""Lakes on S3, Azure and GCS plus a local one, synced into one lakehouse on S3 or Azure,
through the Dagster job the sensors launch, against servers that speak the real protocols."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from lakesync.config import load_config
from lakesync.defs import build_definitions
from lakesync.defs.providers import open_lakehouse
from lakesync.demo.servers import AZURITE_KEY, Server, start_s3
from lakesync_tests.cloud import (
    Bucket,
    azure_service,
    new_bucket,
    new_lakehouse,
    s3_client,
    s3_lakehouse,
    unique,
)
from lakesync_tests.lakes import ORDERS_CONTRACT, orders_rows, write_orders_csv

PLANTED_S3 = "PlantedS3Secret-do-not-leak-7f3a91"
PLANTED_AZURE = base64.b64encode(b"planted-azure-key-do-not-leak-5d2c").decode()


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def csv_bytes(rows: list[dict[str, Any]], tmp: Path) -> bytes:
    path = write_orders_csv(tmp / unique("x"), rows)
    return path.read_bytes()


def ndjson_bytes(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps({**r, "ordered_at": r["ordered_at"].isoformat()}) + "\n" for r in rows).encode()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "LAKE_S3_KEY": "testing",
        "LAKE_S3_SECRET": PLANTED_S3,
        "LAKE_AZURE_KEY": AZURITE_KEY,
        "LAKEHOUSE_KEY": "testing",
        "LAKEHOUSE_SECRET": PLANTED_S3,
        "LAKEHOUSE_AZURE_KEY": AZURITE_KEY,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def four_lakes(
    tmp_path: Path, servers: dict[str, Server], lakehouse: dict[str, Any]
) -> tuple[Path, dict[str, Bucket]]:
    buckets = {p: new_bucket(p, servers[p]) for p in ("s3", "azure", "gcs")}
    buckets["s3"].put("landing/orders/2026/a.parquet", parquet_bytes(orders_rows(1, 5)))
    buckets["azure"].put("exports/b.csv", csv_bytes(orders_rows(100, 4), tmp_path))
    buckets["gcs"].put("events/c.ndjson", ndjson_bytes(orders_rows(200, 3)))
    write_orders_csv(tmp_path / "onprem" / "d.csv", orders_rows(300, 2))
    lakes = {
        "eu_sales": buckets["s3"].lake(
            {"orders": {"pattern": "orders/**/*.parquet", "format": "parquet", "table": "orders"}},
            prefix="landing/",
        ),
        "us_crm": buckets["azure"].lake(
            {"orders": {"pattern": "exports/*.csv", "format": "csv", "table": "orders"}}
        ),
        "apac_events": buckets["gcs"].lake(
            {
                "orders": {
                    "pattern": "events/*.ndjson",
                    "format": "ndjson",
                    "table": "orders",
                    "ordered_keys": True,
                }
            }
        ),
        "onprem": {
            "provider": "local",
            "root": str(tmp_path / "onprem"),
            "datasets": {"orders": {"pattern": "*.csv", "format": "csv", "table": "orders"}},
        },
    }
    config = {
        "lakehouse": lakehouse,
        "lakes": lakes,
        "tables": {"orders": {"mode": "append", "contract": ORDERS_CONTRACT}},
    }
    path = tmp_path / "lakesync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, buckets


def run_job(config_path: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    definitions = build_definitions(load_config(config_path))
    return definitions.resolve_job_def("ingest_orders").execute_in_process(
        instance=instance, raise_on_error=False
    )


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("where", ["s3", "azure"])
def test_lakes_on_every_cloud_sync_into_one_lakehouse_exactly_once(
    tmp_path: Path, servers: dict[str, Server], where: str
) -> None:
    _, lakehouse = new_lakehouse(where, servers[where])
    config_path, _ = four_lakes(tmp_path, servers, lakehouse)
    with dg.instance_for_test() as instance:
        first = run_job(config_path, instance)
        assert first.success, [e.message for e in first.all_events if e.is_failure]
        again = run_job(config_path, instance)
        assert again.success
        assert not again.get_asset_materialization_events()
    config = load_config(config_path)
    table = open_lakehouse(config).open(open_lakehouse(config).table_uri("orders"))
    assert table is not None
    rows = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(rows, pl.DataFrame)
    assert rows.height == 5 + 4 + 3 + 2
    by_lake = (
        rows.group_by(pl.col("_lakesync_file").str.split("/").list.first().alias("lake")).len().sort("lake")
    )
    assert by_lake.rows() == [("apac_events", 3), ("eu_sales", 5), ("onprem", 2), ("us_crm", 4)]
    assert "eu_sales/orders/2026/a.parquet" in rows["_lakesync_file"].to_list()


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("where", ["s3", "azure"])
def test_a_stale_writer_never_overwrites_a_commit_on_a_cloud_lakehouse(
    tmp_path: Path, servers: dict[str, Server], where: str
) -> None:
    """Two writers holding the same table version both commit: the store's put-if-absent makes
    the second see version 1 taken and commit as 2, never overwrite it (a lost batch)."""
    from deltalake import DeltaTable, write_deltalake

    _, lakehouse = new_lakehouse(where, servers[where])
    config_path, _ = four_lakes(tmp_path, servers, lakehouse)
    target = open_lakehouse(load_config(config_path))
    uri, options = target.table_uri("race"), dict(target.storage_options)
    write_deltalake(uri, pa.table({"writer": ["create"]}), storage_options=options)
    first, second = (DeltaTable(uri, storage_options=options) for _ in range(2))
    write_deltalake(first, pa.table({"writer": ["first"]}), mode="append")
    write_deltalake(second, pa.table({"writer": ["second"]}), mode="append")  # still at version 0
    final = DeltaTable(uri, storage_options=options)
    assert final.version() == 2
    assert sorted(final.to_pyarrow_table()["writer"].to_pylist()) == ["create", "first", "second"]


@pytest.mark.usefixtures("env")
def test_a_lake_whose_server_stops_fails_alone_and_clearly(
    tmp_path: Path, servers: dict[str, Server]
) -> None:
    own = start_s3(tmp_path / "own-moto")
    try:
        config_path, _ = four_lakes(tmp_path, servers, {"uri": str(tmp_path / "lakehouse")})
        config = yaml.safe_load(config_path.read_text())
        doomed = new_bucket("s3", own)
        doomed.put("orders/z.parquet", parquet_bytes(orders_rows(900, 2)))
        config["lakes"]["doomed"] = doomed.lake(
            {"orders": {"pattern": "orders/*.parquet", "format": "parquet", "table": "orders"}}
        )
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    finally:
        own.stop()  # the lake's endpoint is gone before the sync
    with dg.instance_for_test() as instance:
        result = run_job(config_path, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "doomed.orders: lake 'doomed': s3://" in message
    assert f"at {own.url} is unreachable while listing after 5 attempts" in message
    rows = pl.read_delta(str(tmp_path / "lakehouse" / "orders"))
    assert rows.height == 14  # the four other lakes were committed


@pytest.mark.usefixtures("env")
def test_refused_credentials_name_the_lake_and_the_variable(
    tmp_path: Path, servers: dict[str, Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, _ = four_lakes(tmp_path, servers, {"uri": str(tmp_path / "lakehouse")})
    monkeypatch.setenv("LAKE_AZURE_KEY", PLANTED_AZURE)  # a well-formed, wrong key
    with dg.instance_for_test() as instance:
        result = run_job(config_path, instance)
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message  # type: ignore[union-attr]
    assert "lake 'us_crm': container " in message
    assert "refused the credentials while listing (from $LAKE_AZURE_KEY); check those variables" in message
    assert PLANTED_AZURE not in message


def test_no_secret_is_written_anywhere(
    tmp_path: Path,
    servers: dict[str, Server],
    env: dict[str, str],
    cli_env: dict[str, str],
    dagster_home: Path,
) -> None:
    """Run a sync (one lake with a wrong key) through the command line, then search every byte
    it left: its output, the Dagster instance (event log, run config, logs) and the lakehouse."""
    house = unique("lakehouse")
    s3_client(servers["s3"]).create_bucket(Bucket=house)
    config_path, _ = four_lakes(tmp_path, servers, s3_lakehouse(servers["s3"], house))
    run_env = {**cli_env, **env, "LAKE_AZURE_KEY": PLANTED_AZURE}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lakesync"), "sync", "--config", str(config_path), "-v"],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # us_crm was refused
    assert "refused the credentials" in done.stdout + done.stderr
    planted = [PLANTED_S3, PLANTED_AZURE]
    for secret in planted:
        assert secret not in done.stdout and secret not in done.stderr
    for path in dagster_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in planted:
                assert secret.encode() not in data, path
    client = s3_client(servers["s3"])
    objects = client.list_objects_v2(Bucket=house).get("Contents", [])
    assert any(o["Key"].endswith(".json") for o in objects)  # the Delta logs are there
    for obj in objects:
        data = client.get_object(Bucket=house, Key=obj["Key"])["Body"].read()
        for secret in planted:
            assert secret.encode() not in data, obj["Key"]


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("policy", ["reingest", "ignore"])
def test_a_changed_object_is_reingested_or_reported_by_policy(
    tmp_path: Path, servers: dict[str, Server], policy: str
) -> None:
    bucket = new_bucket("s3", servers["s3"])
    bucket.put("orders/a.parquet", parquet_bytes(orders_rows(1, 2, amount=1.0)))
    dataset = {"pattern": "orders/*.parquet", "format": "parquet", "table": "orders", "changed": policy}
    table = {"mode": "merge", "keys": ["order_id"], "contract": ORDERS_CONTRACT}
    config_path = tmp_path / "lakesync.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "lakehouse": {"uri": str(tmp_path / "lh")},
                "lakes": {"eu": bucket.lake({"orders": dataset})},
                "tables": {"orders": table},
            }
        )
    )
    with dg.instance_for_test() as instance:
        assert run_job(config_path, instance).success
        bucket.put("orders/a.parquet", parquet_bytes(orders_rows(1, 2, amount=9.0)))  # same key, new content
        assert run_job(config_path, instance).success
        observed = instance.fetch_observations(dg.AssetKey(["lakes", "eu", "orders"]), limit=1).records[0]
        metadata = observed.asset_observation.metadata  # type: ignore[union-attr]
    amounts = pl.read_delta(str(tmp_path / "lh" / "orders"))["amount"].to_list()
    if policy == "reingest":
        assert amounts == [9.0, 9.0]
    else:
        assert amounts == [1.0, 1.0]
        assert metadata["files_changed_after_ingestion"].value == 1


@pytest.mark.usefixtures("env")
def test_a_sensor_watches_a_cloud_lake_through_its_resource(
    tmp_path: Path, servers: dict[str, Server]
) -> None:
    config_path, _ = four_lakes(tmp_path, servers, {"uri": str(tmp_path / "lakehouse")})
    definitions = build_definitions(load_config(config_path))
    repo = definitions.get_repository_def()
    with dg.instance_for_test() as instance:
        sensor = repo.get_sensor_def("watch_eu_sales__orders")
        with dg.build_sensor_context(
            instance=instance, resources=repo.get_top_level_resources(), repository_def=repo
        ) as context:
            result = sensor.evaluate_tick(context)
    assert len(result.run_requests or []) == 1
    observation = result.asset_events[0]
    assert observation.metadata["files_new"].value == 1  # type: ignore[union-attr]


def _objects(where: str, server: Server, house: str, prefix: str) -> dict[str, bytes]:
    """Every object of the lakehouse bucket/container under ``prefix``, with its bytes."""
    if where == "s3":
        client = s3_client(server)
        listed = client.list_objects_v2(Bucket=house, Prefix=prefix).get("Contents", [])
        return {o["Key"]: client.get_object(Bucket=house, Key=o["Key"])["Body"].read() for o in listed}
    container = azure_service(server).get_container_client(house)
    return {
        b.name: container.download_blob(b.name).readall()
        for b in container.list_blobs(name_starts_with=prefix)
    }


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("where", ["s3", "azure"])
def test_an_erasure_purged_on_a_cloud_lakehouse_leaves_no_trace_of_the_subject(
    tmp_path: Path, servers: dict[str, Server], where: str
) -> None:
    from lakesync.governance.erase import erase_subject
    from lakesync.governance.rewrite import Rewrite

    house, lakehouse = new_lakehouse(where, servers[where])
    config_path, _ = four_lakes(tmp_path, servers, lakehouse)
    document = yaml.safe_load(config_path.read_text())
    columns = document["tables"]["orders"]["contract"]["columns"]
    columns["customer_id"]["subject_key"] = "customer"
    document["tables"]["orders"]["mode"] = "merge"  # change data files too
    document["tables"]["orders"]["keys"] = ["order_id"]
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    with dg.instance_for_test() as instance:
        assert run_job(config_path, instance).success
    config = load_config(config_path)
    target = open_lakehouse(config)
    subject = orders_rows(1, 1)[0]["customer_id"]  # the first customer of every lake: each file's min
    before = _objects(where, servers[where], house, "warehouse/orders/")
    marker = f'\\"customer_id\\":{subject}'.encode()  # in a commit's file statistics
    assert any(marker in data for key, data in before.items() if key.endswith(".json"))
    receipt = erase_subject(config, target, "customer", str(subject), Rewrite(purge=True))
    assert receipt.purged and {t.table: t.rows for t in receipt.tables}["orders"] == 4
    after = _objects(where, servers[where], house, "warehouse/orders/")
    assert not any(marker in data for key, data in after.items() if key.endswith(".json"))
    for key, data in after.items():
        if key.endswith(".parquet") and "_delta_log" not in key:
            rows = pq.read_table(io.BytesIO(data))
            assert subject not in rows.column("customer_id").to_pylist(), key
    assert not [k for k in after if "/_change_data/" in k and k in before]  # the old change data is gone
    remaining = pl.from_arrow(target.open(target.table_uri("orders")).to_pyarrow_table())  # type: ignore[union-attr]
    assert isinstance(remaining, pl.DataFrame) and remaining.height == 5 + 4 + 3 + 2 - 4


def test_validate_online_lists_each_lake_once_and_names_the_one_refused(
    tmp_path: Path, servers: dict[str, Server], env: dict[str, str], cli_env: dict[str, str]
) -> None:
    config_path, _ = four_lakes(tmp_path, servers, {"uri": str(tmp_path / "lakehouse")})

    def validate(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "lakesync"),
                "validate",
                "--online",
                "--config",
                str(config_path),
            ],
            env={**cli_env, **env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    good = validate()
    assert good.returncode == 0, good.stderr
    lines = [line for line in good.stdout.splitlines() if line.startswith("lake ")]
    assert [line.split()[1] for line in lines] == ["eu_sales", "us_crm", "apac_events", "onprem"]
    assert all("reachable, listed; orders 1 file(s)" in line for line in lines), lines
    refused = validate(LAKE_AZURE_KEY=PLANTED_AZURE)  # a well-formed, wrong key
    assert refused.returncode == 1
    assert "lake us_crm: FAILED: lake 'us_crm': container " in refused.stderr
    assert "refused the credentials while listing (from $LAKE_AZURE_KEY)" in refused.stderr
    assert "lake eu_sales (" in refused.stdout and "OK" not in refused.stdout  # the others still said
    assert "Traceback" not in refused.stderr
    for secret in (PLANTED_AZURE, PLANTED_S3):
        assert secret not in refused.stdout + refused.stderr + good.stdout + good.stderr

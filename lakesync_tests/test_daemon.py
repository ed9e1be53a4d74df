"""Autonomous sync: the real Dagster daemon ticks the sensors, which launch ingestion runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from lakesync.config import load_config
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.conftest import PROJECT
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_config, write_orders_parquet

BIN = Path(sys.executable).parent


def rows_in(config: Path) -> int:
    uri = lakehouse_for(load_config(config)).table_uri("orders")
    try:
        return pl.read_delta(uri).height
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return 0


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the daemon and everything it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def test_the_daemon_ingests_files_as_they_land(
    tmp_path: Path, cli_env: dict[str, str], dagster_home: Path
) -> None:
    lake = tmp_path / "eu"
    write_orders_parquet(lake / "a.parquet", orders_rows(1, 10), mtime=T0)
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders", "sensor": {"interval": "1s"}}
    config = write_config(
        tmp_path, lakes={"eu": local_lake(lake, {"orders": dataset})}, tables={"orders": orders_table()}
    )
    env = {**cli_env, "LAKESYNC_CONFIG": str(config)}
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT / "workspace.yaml")],
        cwd=PROJECT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while rows_in(config) < 10:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(1)
        write_orders_parquet(lake / "b.parquet", orders_rows(11, 5), mtime=T0 + timedelta(hours=1))
        write_orders_parquet(lake / "c.parquet", orders_rows(16, 5), mtime=T0 + timedelta(hours=2))
        while rows_in(config) < 20:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(1)
        time.sleep(3)  # further ticks must not ingest anything twice
    finally:
        stop(daemon)
        log.close()
    assert rows_in(config) == 20
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name") == "watch_eu__orders"]
        assert runs
        assert all(r.tags["lakesync/dataset"] == "eu.orders" for r in runs)
        assert all(r.tags["dagster/run_key"].startswith("eu.orders:") for r in runs)
        assert {r.status for r in runs} <= {dg.DagsterRunStatus.SUCCESS}

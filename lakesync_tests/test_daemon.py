"""Autonomous sync: the real Dagster daemon ticks the sensors, which launch ingestion runs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from lakesync.config import load_config
from lakesync.defs.pools import table_pool
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_config, write_orders_parquet
from lakesync_tests.processes import lakesync_sync, start_daemon, stop

POOL = table_pool("orders")


def rows_in(config: Path) -> int:
    uri = lakehouse_for(load_config(config)).table_uri("orders")
    try:
        return pl.read_delta(uri).height
    except Exception:  # noqa: BLE001 - the table does not exist yet
        return 0


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
    daemon = start_daemon(env, log)
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


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(proc.name))
    return tree


def _kill_host(worker: int) -> None:
    """SIGKILL what a dead machine takes with it: the run's worker, its step processes and the
    code server that launched it (which would otherwise report the run failed)."""
    parent = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
    tree = _children()
    doomed, todo = [], [parent]
    while todo:
        pid = todo.pop()
        doomed.append(pid)
        todo.extend(tree.get(pid, []))
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of a run's worker process, as its launch event says (``pid: N``)."""
    for entry in instance.all_logs(run_id):
        found = re.search(r"pid: (\d+)", entry.user_message or "")
        if found:
            return int(found.group(1))
    return None


def test_a_run_whose_worker_died_is_canceled_after_its_max_runtime_and_the_next_run_finishes_its_batch(
    tmp_path: Path, cli_env: dict[str, str], dagster_home: Path
) -> None:
    """SIGKILL a run's worker with the code server that launched it (a machine that died):
    nothing tells Dagster, so the run would stay STARTED and hold the table's one-run slot;
    run monitoring cancels it at the table's ``max_runtime``, and the next sync finishes the
    killed batch, every row once."""
    settings = (dagster_home / "dagster.yaml").read_text(encoding="utf-8")
    (dagster_home / "dagster.yaml").write_text(
        settings.replace(
            "  start_timeout_seconds: 180", "  start_timeout_seconds: 180\n  poll_interval_seconds: 1"
        ).replace("free_slots_after_run_end_seconds: 10", "free_slots_after_run_end_seconds: 1"),
        encoding="utf-8",
    )
    lake = tmp_path / "eu"
    for n in range(40):
        write_orders_parquet(lake / f"part-{n:03d}.parquet", orders_rows(1 + n * 2000, 2000), mtime=T0)
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders", "sensor": {"interval": "1s"}}
    config = write_config(
        tmp_path,
        lakes={"eu": local_lake(lake, {"orders": dataset})},
        tables={"orders": orders_table(max_runtime="6s")},
    )
    env = {**cli_env, "LAKESYNC_CONFIG": str(config)}
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()  # its schema, before the daemon starts
    log_path = tmp_path / "daemon.log"
    log = log_path.open("wb")
    daemon = start_daemon(env, log)
    killed: str | None = None
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            deadline = time.monotonic() + 240
            while killed is None:  # the first run, as soon as its worker runs
                assert daemon.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                    pid = _worker_pid(instance, run.run_id)
                    if pid is not None:
                        _kill_host(pid)
                        killed = run.run_id
                time.sleep(0.05)
            ended = (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
            while instance.get_run_by_id(killed).status not in ended:  # type: ignore[union-attr]
                assert daemon.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
            dead = instance.get_run_by_id(killed)
            assert dead is not None
            # The table's pool slot the dead step held is given back by the daemon.
            while killed in {
                s.run_id for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
            }:
                assert daemon.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the dead run's slot was not freed"
                time.sleep(0.5)
            types = [e.dagster_event.event_type_value for e in instance.all_logs(killed) if e.dagster_event]
    finally:
        stop(daemon)
        log.close()
    assert dead.tags.get("dagster/max_runtime") == "6"
    assert dg.DagsterEventType.RUN_CANCELING.value in types  # by run monitoring, at the max runtime
    # The table's one-run slot is free: a sync takes the killed run's planned batch.
    synced = lakesync_sync(config, env)
    assert synced.returncode == 0, synced.stderr
    orders = pl.read_delta(lakehouse_for(load_config(config)).table_uri("orders"))
    assert orders.height == 80_000
    assert orders.select("_lakesync_file", "_lakesync_row").unique().height == 80_000

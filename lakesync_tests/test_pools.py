"""One sync of a table at a time across every run (its concurrency pool), and a slot a killed
run held given back: ``lakesync sync`` in its own process on the embedded instance, no daemon."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import dagster as dg
import polars as pl

from lakesync.config import load_config
from lakesync.defs.pools import HOST_TAG, PID_TAG, table_pool
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_config, write_orders_parquet
from lakesync_tests.processes import BIN, lakesync_sync

POOL = table_pool("orders")


def _lake(tmp_path: Path, files: range) -> Path:
    lake = tmp_path / "eu"
    for n in files:
        write_orders_parquet(lake / f"part-{n:03d}.parquet", orders_rows(1 + n * 2000, 2000), mtime=T0)
    return lake


def _sync(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "lakesync"), "sync", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _holder(instance: dg.DagsterInstance, deadline: float) -> str:
    """The run holding the table's slot, as soon as one does."""
    while True:
        claimed = instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
        if claimed:
            return claimed[0].run_id
        assert time.monotonic() < deadline, "no run claimed the table's slot"
        time.sleep(0.05)


def _step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    """When the run's sync step started and ended."""
    times = {
        e.dagster_event.event_type_value: e.timestamp
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.step_key == "sync_orders"
    }
    end = times.get(dg.DagsterEventType.STEP_SUCCESS.value) or times[dg.DagsterEventType.STEP_FAILURE.value]
    return times[dg.DagsterEventType.STEP_START.value], end


def test_a_sync_waits_for_the_run_holding_its_tables_slot_and_frees_the_slot_of_a_dead_run(
    tmp_path: Path, cli_env: dict[str, str], dagster_home: Path
) -> None:
    lake = _lake(tmp_path, range(30))
    config = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                lake, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table()},
    )
    env = {**cli_env, "LAKESYNC_CONFIG": str(config)}
    dg.DagsterInstance.from_config(str(dagster_home)).dispose()  # its schema, before two commands race
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # A sync killed while its step holds the table's slot: nothing tells Dagster.
        killed = _sync(config, env)
        try:
            holder = _holder(instance, time.monotonic() + 120)
            run = instance.get_run_by_id(holder)
            assert run is not None and run.tags[PID_TAG] == str(killed.pid)
            os.kill(killed.pid, signal.SIGKILL)
        finally:
            killed.kill()
            killed.communicate()
        assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]

        # The next sync frees it (the run is marked failed, saying why) and finishes its batch.
        _lake(tmp_path, range(30, 40))
        freeing = lakesync_sync(config, env)
        assert freeing.returncode == 0, freeing.stderr
        assert f"{POOL}: freed the slot of run {holder[:8]}: its process (pid {killed.pid}" in freeing.stderr
        assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert _rows(config) == 40 * 2000

        # A run of a live process holds the slot (as the daemon's runs do): a sync waits for it,
        # ingesting nothing, and goes on when that process is gone.
        sleeper = subprocess.Popen(["sleep", "600"])
        live = dg.DagsterRun(
            job_name="ingest_orders",
            status=dg.DagsterRunStatus.STARTED,
            tags={HOST_TAG: socket.gethostname(), PID_TAG: str(sleeper.pid)},
        )
        try:
            instance.add_run(live)
            assert instance.event_log_storage.claim_concurrency_slot(
                POOL, live.run_id, "sync_orders"
            ).is_claimed
            _lake(tmp_path, range(40, 45))
            waiting = _sync(config, env)
            deadline = time.monotonic() + 120
            while not instance.event_log_storage.get_concurrency_info(POOL).pending_steps:
                assert waiting.poll() is None and time.monotonic() < deadline, waiting.communicate()
                time.sleep(0.05)
            time.sleep(3)  # it keeps waiting
            assert waiting.poll() is None and _rows(config) == 40 * 2000
            sleeper.kill()
            sleeper.wait()
            released = time.time()
            _, err = waiting.communicate(timeout=180)
        finally:
            sleeper.kill()
            if "waiting" in locals():
                waiting.kill()
        assert waiting.returncode == 0, err
        assert f"{POOL}: waiting for run {live.run_id[:8]} (started) to finish with it" in err
        assert f"{POOL}: freed the slot of run {live.run_id[:8]}: its process (pid {sleeper.pid}" in err
        succeeded = dg.RunsFilter(job_name="ingest_orders", statuses=[dg.DagsterRunStatus.SUCCESS])
        own = instance.get_runs(filters=succeeded, limit=1)[0]  # the newest: the waiting sync's
        started, _ = _step_window(instance, own.run_id)
        assert started >= released
        assert not instance.event_log_storage.get_concurrency_info(POOL).claimed_slots

        # A run the daemon's code server started (no lakesync tags; its launch event names its
        # process) left STARTED when the daemon stopped with it: the next sync frees its slot.
        worker = subprocess.Popen(["sleep", "600"])
        launched = dg.DagsterRun(job_name="ingest_orders", status=dg.DagsterRunStatus.STARTED)
        instance.add_run(launched)
        instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", launched)
        assert instance.event_log_storage.claim_concurrency_slot(
            POOL, launched.run_id, "sync_orders"
        ).is_claimed
        # ... and a run that failed while its step was queued for the slot: every later step
        # would queue behind it.
        queued = dg.DagsterRun(job_name="ingest_orders", status=dg.DagsterRunStatus.FAILURE)
        instance.add_run(queued)
        assert not instance.event_log_storage.claim_concurrency_slot(
            POOL, queued.run_id, "sync_orders"
        ).is_claimed
        assert instance.event_log_storage.get_concurrency_info(POOL).pending_steps
        worker.kill()
        worker.wait()
        _lake(tmp_path, range(45, 48))
        after = lakesync_sync(config, env)
        assert after.returncode == 0, after.stderr
        freed = f"{POOL}: freed the slot of run {launched.run_id[:8]}: its process (pid {worker.pid}"
        assert freed in after.stderr, after.stderr
        assert f"freed the place in the queue of run {queued.run_id[:8]}: it has ended" in after.stderr
        assert instance.get_run_by_id(launched.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
    orders = pl.read_delta(lakehouse_for(load_config(config)).table_uri("orders"))
    assert orders.height == 48 * 2000  # the killed batch finished once, every file once
    assert orders.select("_lakesync_file", "_lakesync_row").unique().height == 48 * 2000


def _rows(config: Path) -> int:
    return pl.read_delta(lakehouse_for(load_config(config)).table_uri("orders")).height

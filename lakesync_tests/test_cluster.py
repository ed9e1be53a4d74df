"""lakesync on Dagster's own scale-out, on one machine: a Dagster instance in a private PostgreSQL
cluster, a private Redis as Celery's broker, one dagster-daemon, and three Celery workers
(``dagster-celery worker start ... --pool=solo``) that share nothing local with each other or
with the command: each has its own ``$DAGSTER_HOME`` and working folder. Every process is
started here and stopped by its own pid (one test SIGKILLs a worker; another has the step's
process on a worker kill itself at each point of a sync).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import yaml

from lakesync.defs.queue import daemon_running
from lakesync.demo.databases import Postgres, start_postgres, start_redis
from lakesync.demo.generate import generate
from lakesync.demo.servers import Server
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_orders_parquet
from lakesync_tests.processes import PROJECT, stop

BIN = Path(sys.executable).parent
PASSWORD_ENV = "LAKESYNC_TEST_PG_PASSWORD"
BULK = 10_000
"""Rows of each file of the ``bulk`` lake: 40 of them make a sync step long enough to kill."""
WORKERS = ("worker-1", "worker-2", "worker-3")
MANY_TABLES, MANY_DATASETS, MANY_FILES, MANY_ROWS = 3, 30, 111, 20
"""Tables ``many_<t>``, each fed by a lake of 30 datasets of 111 files: 9,990 files."""
KILL_POINTS = ("after_plan", "during_delta_commit", "before_ledger_write")
KILL_FILE = "kill-at"
"""``kill-at.<point>``, when it exists, arms the workers' hook below: the first process on a
worker that reaches that point renames it to ``kill-at.<point>.fired`` and SIGKILLs itself."""
KILL_HOOK = """
import os, signal

_FILE = os.environ["LAKESYNC_TEST_KILL_FILE"]


def _die(point):
    try:
        os.rename(f"{_FILE}.{point}", f"{_FILE}.{point}.fired")  # one process takes it
    except OSError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


import pyarrow as pa
import lakesync.commit.delta as delta
import lakesync.pipeline.sync as sync
from lakesync.state.ledger import Ledger

_commit_round = sync.commit_round


def commit_round(*a, **k):
    _die("after_plan")
    return _commit_round(*a, **k)


def _killing(original):
    def patched(target, reader, stamp, *a, **k):
        def batches():  # delta-rs asks for the rows while it writes: die after the first
            for n, batch in enumerate(reader):
                yield batch
                if n == 0:
                    _die("during_delta_commit")
        return original(target, pa.RecordBatchReader.from_batches(reader.schema, batches()), stamp, *a, **k)
    return patched


_record_many = Ledger.record_many


def record_many(self, *a, **k):
    _die("before_ledger_write")
    return _record_many(self, *a, **k)


sync.commit_round = commit_round
delta.append = _killing(delta.append)
Ledger.record_many = record_many
"""
"""The workers' ``sitecustomize``: every Python process of a worker (the run's and its steps')
can die at three points of a sync, at most once per arming, and runs as usual otherwise."""


@dataclass
class Cluster:
    home: Path
    """The command's ``$DAGSTER_HOME``."""
    config: Path
    env: dict[str, str]
    postgres: Postgres
    redis: Server
    workers: list[Path]
    """Each worker's log."""
    worker_pids: list[int]
    bulk: Path
    """The lake of table ``bulk``, its runs long enough to kill one (40 files a sync)."""
    root: Path
    """The fixture's folder: the lakes ``many_<t>`` and ``crash_<n>``, the workers' kill files."""

    def instance(self) -> dg.DagsterInstance:
        os.environ[PASSWORD_ENV] = self.postgres.password
        return dg.DagsterInstance.from_config(str(self.home))


def _instance_yaml(postgres: Postgres, broker: str) -> str:
    """The project's dagster.yaml (queue, one run per table, retries, monitoring) on Postgres,
    launching runs as Celery tasks (its SQLite event log replaced by the storage, as deploy.md says)."""
    settings = yaml.safe_load((PROJECT / "dagster.yaml").read_text(encoding="utf-8"))
    del settings["event_log_storage"]
    settings.update(yaml.safe_load(postgres.dagster_yaml(PASSWORD_ENV, "cluster")))
    monitoring = settings["run_monitoring"]  # a dead worker's run found and let go of quickly
    monitoring.update(poll_interval_seconds=1, cancel_timeout_seconds=5, free_slots_after_run_end_seconds=1)
    settings["run_launcher"] = {
        "module": "dagster_celery.launcher",
        "class": "CeleryRunLauncher",
        "config": {"broker": f"{broker}/0", "backend": f"{broker}/1"},
    }
    return yaml.safe_dump(settings, sort_keys=False)


def _bulk_files(lake: Path, files: range) -> None:
    for n in files:
        write_orders_parquet(lake / f"part-{n:03d}.parquet", orders_rows(1 + n * BULK, BULK), mtime=T0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    postgres = start_postgres(root / "postgres", database="cluster")
    broker = start_redis(root / "redis")
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[BinaryIO] = []
    try:
        config = generate(root / "demo").config
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
        bulk = root / "bulk"
        _bulk_files(bulk, range(40))
        dataset = {"pattern": "*.parquet", "format": "parquet", "table": "bulk"}
        document["lakes"]["bulk"] = local_lake(bulk, {"orders": dataset})
        document["tables"]["bulk"] = orders_table(max_runtime="20s")
        for t in range(MANY_TABLES):
            (root / f"many_{t}").mkdir()
            sets = {
                f"set_{d:02d}": {
                    "pattern": f"set_{d:02d}/*.parquet",
                    "format": "parquet",
                    "table": f"many_{t}",
                }
                for d in range(MANY_DATASETS)
            }
            document["lakes"][f"many_{t}"] = local_lake(root / f"many_{t}", sets)
            document["tables"][f"many_{t}"] = orders_table()
        for n in range(len(KILL_POINTS)):
            (root / f"crash_{n}").mkdir()
            crash = {"pattern": "*.parquet", "format": "parquet", "table": f"crash_{n}"}
            document["lakes"][f"crash_{n}"] = local_lake(root / f"crash_{n}", {"orders": crash})
            document["tables"][f"crash_{n}"] = orders_table()
        for lake in document["lakes"].values():  # only `lakesync sync` starts runs here
            for dataset in lake["datasets"].values():
                dataset.setdefault("sensor", {})["enabled"] = False
        config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        settings = _instance_yaml(postgres, broker.url)
        homes = {name: root / name for name in ("command", "daemon", *WORKERS)}
        for home in homes.values():
            home.mkdir()
            (home / "dagster.yaml").write_text(settings, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "LAKESYNC_CONFIG"}
        env = {
            **env,
            PASSWORD_ENV: postgres.password,
            "LAKESYNC_CONFIG": str(config),
            "PYTHONWARNINGS": "ignore",
        }
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # celery, as dagster-celery calls it
        os.environ[PASSWORD_ENV] = postgres.password
        dg.DagsterInstance.from_config(str(homes["command"])).dispose()  # the schema, created once

        hooks = root / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(KILL_HOOK, encoding="utf-8")
        on_workers = {"PYTHONPATH": str(hooks), "LAKESYNC_TEST_KILL_FILE": str(root / KILL_FILE)}

        def start(name: str, command: list[str], cwd: Path) -> None:
            log = (root / f"{name}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=cwd,
                    env={**env, "DAGSTER_HOME": str(homes[name]), **(on_workers if name in WORKERS else {})},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT / "workspace.yaml")], PROJECT)
        celery = root / "celery.yaml"
        celery.write_text(
            yaml.safe_dump(
                {"execution": {"config": {"broker": f"{broker.url}/0", "backend": f"{broker.url}/1"}}}
            )
        )
        for name in WORKERS:
            command = [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(celery),
            ]
            start(name, [*command, "-n", f"{name}@%h", "--", "--pool=solo"], homes[name])
        home = homes["command"]
        pids = [p.pid for p in processes[1:]]
        workers = [root / f"{name}.log" for name in WORKERS]
        ready = Cluster(
            home, config, {**env, "DAGSTER_HOME": str(home)}, postgres, broker, workers, pids, bulk, root
        )
        deadline = time.monotonic() + 120
        with ready.instance() as instance:
            while not daemon_running(instance) or not all("ready." in w.read_text() for w in ready.workers):
                for process in processes:
                    assert process.poll() is None, [p.read_text()[-2000:] for p in root.glob("*.log")]
                assert time.monotonic() < deadline, [p.read_text()[-2000:] for p in root.glob("*.log")]
                time.sleep(0.5)
        yield ready
    finally:
        for process in processes:
            stop(process)
        for log in logs:
            log.close()
        broker.stop()
        postgres.stop()


def _sync_and_wait(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """``lakesync sync`` on the cluster's instance (runs through the queue, on the workers)."""
    command = [str(BIN / "lakesync"), "sync", "--config", str(cluster.config)]
    return subprocess.run(command, env=cluster.env, capture_output=True, text=True, check=False, timeout=600)


def test_celery_workers_run_the_syncs_runs_from_the_queue_each_row_once_and_no_password_anywhere(
    cluster: Cluster,
) -> None:
    """One ``lakesync sync`` of the demo's lakes and of three tables fed by 90 datasets, 9,996
    small files (some rows bad, some files broken), its runs through the queue on the three
    workers."""
    written = _write_many(cluster.root)
    done = _sync_and_wait(cluster)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"orders: run \w{8} success", done.stderr), done.stderr
    assert "customer_spend" in done.stdout

    with cluster.instance() as instance:
        ours = [r for r in instance.get_runs() if r.tags.get("lakesync/trigger") == "cli"]
        assert {r.tags.get("lakesync/table") for r in ours} >= {"orders", "customers"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in ours)
        tasks = {r.tags["dagster-celery/task_id"] for r in ours}  # launched as Celery tasks
    worked = "\n".join(w.read_text() for w in cluster.workers)
    for task in tasks:  # ... and run by the workers, several of them
        assert re.search(rf"Task execute_job\[{task}\] succeeded", worked), task
    ran_on = {
        w.stem for w in cluster.workers for t in tasks if f"Task execute_job[{t}] succeeded" in w.read_text()
    }
    assert len(ran_on) >= 2, ran_on
    _check_many(cluster, written, ours)

    orders = pl.read_delta(str(cluster.config.parent / "data" / "lakehouse" / "orders"))
    assert orders.height == 3770
    assert orders.select("_lakesync_file", "_lakesync_row").unique().height == orders.height

    stored = []  # what the broker and the result backend hold
    for db in (0, 1):
        client = redis.Redis.from_url(f"{cluster.redis.url}/{db}")
        stored += [str(client.dump(key)) for key in client.scan_iter()]
        client.close()
    assert stored  # the backend keeps the tasks' results
    secrets = [done.stdout, done.stderr, worked, *stored]
    secrets += [p.read_text() for p in cluster.home.parent.rglob("*.py") if "dagster_celery" in str(p)]
    assert all(cluster.postgres.password not in text for text in secrets)


def _sync(cluster: Cluster) -> subprocess.Popen[str]:
    command = [str(BIN / "lakesync"), "sync", "--config", str(cluster.config)]
    return subprocess.Popen(
        command, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _in_worker(pid: int, cluster: Cluster) -> bool:
    """Whether ``pid`` is a process of one of the workers (each its own process group)."""
    try:
        return os.getpgid(pid) in cluster.worker_pids
    except ProcessLookupError:
        return False


def _bulk_rows(cluster: Cluster) -> pl.DataFrame:
    return pl.read_delta(str(cluster.config.parent / "data" / "lakehouse" / "bulk"))


def test_a_celery_worker_killed_mid_run_leaves_no_run_started_and_the_next_sync_finishes_its_batch(
    cluster: Cluster,
) -> None:
    """SIGKILL the worker running a sync (the machine died): the run stays STARTED with nothing
    to say so; run monitoring cancels it at the table's max_runtime (20 s here), the daemon frees
    the table's pool slot, and the next ``lakesync sync`` (on the worker left) finishes the
    killed batch: every row once."""
    _bulk_files(cluster.bulk, range(40, 80))
    started = time.time()
    first = _sync(cluster)
    killed: tuple[str, int] | None = None
    try:
        with cluster.instance() as instance:
            deadline = time.monotonic() + 240
            while killed is None:
                assert first.poll() is None and time.monotonic() < deadline, first.communicate()
                for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                    if run.tags.get("lakesync/table") != "bulk":
                        continue
                    logs = instance.all_logs(run.run_id)
                    if not any(
                        e.dagster_event and e.dagster_event.event_type_value == "STEP_START" for e in logs
                    ):
                        continue  # killed once its step runs: the batch is planned or being written
                    said = " ".join(
                        e.user_message or (e.dagster_event.message or "") for e in logs if e.dagster_event
                    )
                    found = [int(p) for p in re.findall(r"pid: (\d+)", said) if _in_worker(int(p), cluster)]
                    if found:
                        os.killpg(os.getpgid(found[0]), signal.SIGKILL)  # the worker and its step's process
                        killed = (run.run_id, found[0])
                        break
                time.sleep(0.1)
            run_id, _ = killed
            ended = (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
            while (dead := instance.get_run_by_id(run_id)) is None or dead.status not in ended:
                assert time.monotonic() < deadline, dead
                time.sleep(0.5)
            while run_id in {
                s.run_id
                for s in instance.event_log_storage.get_concurrency_info("lakesync/table/bulk").claimed_slots
            }:
                assert time.monotonic() < deadline, "the dead run's slot was not freed"
                time.sleep(0.5)
        _, err = first.communicate(timeout=240)
    finally:
        first.kill()
    assert killed is not None
    assert re.search(rf"bulk: run {run_id[:8]} (canceled|failure)", err), err  # the first sync says so
    second = _sync_and_wait(cluster)
    assert second.returncode == 0, second.stderr
    bulk = _bulk_rows(cluster)
    assert bulk.height == 80 * BULK
    assert bulk.select("_lakesync_file", "_lakesync_row").unique().height == bulk.height
    with cluster.instance() as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"lakesync/table": "bulk"}))
        runs = [r.dagster_run for r in records if r.create_timestamp.timestamp() >= started]
        killed_events = {
            e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event
        }
        assert "STEP_SUCCESS" not in killed_events  # killed while its step ran
        assert not [
            r.run_id for r in runs if r.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)
        ]
        assert any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)


def _lakehouse(cluster: Cluster) -> Path:
    return cluster.config.parent / "data" / "lakehouse"


def _done_events(cluster: Cluster, lakes: set[str]) -> pl.DataFrame:
    """The ledger's ``ingested`` / ``quarantined`` events of the datasets of ``lakes``."""
    ledger = pl.read_delta(str(_lakehouse(cluster) / "_ledger"))
    return ledger.filter(
        pl.col("dataset").str.split(".").list.first().is_in(list(lakes))
        & pl.col("event").is_in(["ingested", "quarantined"])
    )


def _write_many(root: Path) -> tuple[int, int, int]:
    """~10k small parquet files (20 rows, every order id its own) into the ``many_<t>`` lakes; in
    one file of every tenth dataset two rows with a negative amount, and in every fifteenth
    dataset a file that is not parquet. Returns (files, good rows, bad rows)."""
    total = MANY_TABLES * MANY_DATASETS * MANY_FILES
    rows = pa.table(
        {
            "order_id": pa.array(range(1_000_000, 1_000_000 + total * MANY_ROWS), pa.int64()),
            "customer_id": pa.array([7] * (total * MANY_ROWS), pa.int64()),
            "amount": pa.array([12.5] * (total * MANY_ROWS), pa.float64()),
            "currency": pa.array(["EUR"] * (total * MANY_ROWS)),
            "ordered_at": pa.array([T0] * (total * MANY_ROWS), pa.timestamp("us", tz="UTC")),
        }
    )
    bad = pa.array([-1.0, -2.0] + [12.5] * (MANY_ROWS - 2), pa.float64())
    n = bad_rows = broken = 0
    for t in range(MANY_TABLES):
        for d in range(MANY_DATASETS):
            folder = root / f"many_{t}" / f"set_{d:02d}"
            folder.mkdir()
            for f in range(MANY_FILES):
                part = rows.slice(n * MANY_ROWS, MANY_ROWS)
                if d % 10 == 0 and f == 7:
                    part = part.set_column(2, "amount", bad)
                    bad_rows += 2
                pq.write_table(part, folder / f"part-{f:03d}.parquet")
                n += 1
            if d % 15 == 0:
                (folder / "part-broken.parquet").write_bytes(b"not a parquet file")
                broken += 1
    return n + broken, n * MANY_ROWS - bad_rows, bad_rows


def _check_many(cluster: Cluster, written: tuple[int, int, int], ours: list[dg.DagsterRun]) -> None:
    """The ``many_<t>`` tables after a sync: every row once, one done event per path, rows read
    = committed + quarantined, one successful run per table."""
    files, good, bad = written
    for t in range(MANY_TABLES):
        table = pl.read_delta(str(_lakehouse(cluster) / f"many_{t}"))
        assert table.height == good // MANY_TABLES
        assert table.select("_lakesync_file", "_lakesync_row").unique().height == table.height
        assert table["order_id"].n_unique() == table.height
    events = _done_events(cluster, {f"many_{t}" for t in range(MANY_TABLES)})
    assert events.height == files  # one done event per path ...
    assert events.select("dataset", "path").unique().height == files  # ... and never two
    assert events["rows_read"].sum() == events["rows_committed"].sum() + events["rows_quarantined"].sum()
    assert (events["rows_committed"].sum(), events["rows_quarantined"].sum()) == (good, bad)
    assert events.filter(pl.col("event") == "quarantined").height == MANY_TABLES * 2  # the broken files
    many = [r for r in ours if r.tags.get("lakesync/table", "").startswith("many_")]
    assert sorted(r.tags["lakesync/table"] for r in many) == [f"many_{t}" for t in range(MANY_TABLES)]


def _in_flight(instance: dg.DagsterInstance, table: str) -> list[str]:
    going = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=going, tags={"lakesync/table": table}))
    return [r.run_id for r in runs]


def test_sync_steps_killed_on_workers_after_the_plan_in_the_commit_and_before_the_ledger_write_every_row_once(
    cluster: Cluster,
) -> None:
    """Three tables sync at once on the workers; the step process that first reaches each point
    SIGKILLs itself there: after its batch is planned, while delta-rs writes the rows, after the
    Delta commit and before the ledger records it. Each run fails, the daemon retries it
    (run_retries) or the next ``lakesync sync`` takes its batch over; no run stays in flight,
    each table holds each row once, the ledger one event per path."""
    tables = [f"crash_{n}" for n in range(len(KILL_POINTS))]
    for t, table in enumerate(tables):
        for n in range(4):
            rows = orders_rows(2_000_000 + t * 1000 + n * 50, 50)
            if n == 3:  # two bad rows of 200: quarantined, within the table's max_failed_rows
                rows[0]["amount"] = rows[1]["amount"] = -5.0
            write_orders_parquet(cluster.root / table / f"part-{n}.parquet", rows, mtime=T0)
    kill = cluster.root / KILL_FILE
    for point in KILL_POINTS:
        Path(f"{kill}.{point}").write_text("", encoding="utf-8")
    first = _sync_and_wait(cluster)
    fired = [p for p in KILL_POINTS if Path(f"{kill}.{p}.fired").exists()]
    assert fired == list(KILL_POINTS), (first.stdout, first.stderr)  # a process died at each
    assert first.returncode != 0, first.stderr
    failed = re.findall(r"(crash_\d): run \w{8} failure", first.stderr)
    assert sorted(failed) == tables, first.stderr
    with cluster.instance() as instance:
        deadline = time.monotonic() + 180
        while going := [r for t in tables for r in _in_flight(instance, t)]:  # the daemon's retries
            assert time.monotonic() < deadline, going
            time.sleep(0.5)
    second = _sync_and_wait(cluster)
    assert second.returncode == 0, second.stderr[-3000:]
    for table in tables:
        rows = pl.read_delta(str(_lakehouse(cluster) / table))
        assert rows.height == 198
        assert rows.select("_lakesync_file", "_lakesync_row").unique().height == rows.height
        assert rows["order_id"].n_unique() == rows.height
        events = _done_events(cluster, {table})
        assert events.height == 4 and events.select("dataset", "path").unique().height == 4
        assert events["rows_quarantined"].sum() == 2
    with cluster.instance() as instance:
        assert not [r for t in tables for r in _in_flight(instance, t)]

"""lakesync on Dagster's own scale-out, on one machine: a Dagster instance in a private PostgreSQL
cluster, a private Redis as Celery's broker, one dagster-daemon, and two Celery workers
(``dagster-celery worker start ... --pool=solo``) that share nothing local with each other or
with the command: each has its own ``$DAGSTER_HOME`` and working folder. Every process is
started here and stopped by its own pid.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import polars as pl
import pytest
import redis
import yaml

from lakesync.defs.queue import daemon_running
from lakesync.demo.databases import Postgres, start_postgres, start_redis
from lakesync.demo.generate import generate
from lakesync.demo.servers import Server
from lakesync_tests.processes import PROJECT, stop

BIN = Path(sys.executable).parent
PASSWORD_ENV = "LAKESYNC_TEST_PG_PASSWORD"


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

    def instance(self) -> dg.DagsterInstance:
        os.environ[PASSWORD_ENV] = self.postgres.password
        return dg.DagsterInstance.from_config(str(self.home))


def _instance_yaml(postgres: Postgres, broker: str) -> str:
    """The project's dagster.yaml (queue, one run per table, retries, monitoring) on Postgres,
    launching runs as Celery tasks."""
    settings = yaml.safe_load((PROJECT / "dagster.yaml").read_text(encoding="utf-8"))
    settings.update(yaml.safe_load(postgres.dagster_yaml(PASSWORD_ENV, "cluster")))
    settings["run_launcher"] = {
        "module": "dagster_celery.launcher",
        "class": "CeleryRunLauncher",
        "config": {"broker": f"{broker}/0", "backend": f"{broker}/1"},
    }
    return yaml.safe_dump(settings, sort_keys=False)


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
        for lake in document["lakes"].values():  # only `lakesync sync` starts runs here
            for dataset in lake["datasets"].values():
                dataset.setdefault("sensor", {})["enabled"] = False
        config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        settings = _instance_yaml(postgres, broker.url)
        homes = {name: root / name for name in ("command", "daemon", "worker-1", "worker-2")}
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

        def start(name: str, command: list[str], cwd: Path) -> None:
            log = (root / f"{name}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=cwd,
                    env={**env, "DAGSTER_HOME": str(homes[name])},
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
        for name in ("worker-1", "worker-2"):
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
        ready = Cluster(home, config, {**env, "DAGSTER_HOME": str(home)}, postgres, broker, [])
        ready.workers = [root / "worker-1.log", root / "worker-2.log"]
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


def test_celery_workers_run_the_syncs_runs_from_the_queue_each_row_once_and_no_password_anywhere(
    cluster: Cluster,
) -> None:
    done = subprocess.run(
        [str(BIN / "lakesync"), "sync", "--config", str(cluster.config)],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"orders: run \w{8} success", done.stderr), done.stderr
    assert "customer_spend" in done.stdout

    with cluster.instance() as instance:
        ours = [r for r in instance.get_runs() if r.tags.get("lakesync/trigger") == "cli"]
        assert {r.tags.get("lakesync/table") for r in ours} >= {"orders", "customers"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in ours)
        tasks = {r.tags["dagster-celery/task_id"] for r in ours}  # launched as Celery tasks
    worked = "\n".join(w.read_text() for w in cluster.workers)
    for task in tasks:  # ... and run by the workers
        assert re.search(rf"Task execute_job\[{task}\] succeeded", worked), task

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

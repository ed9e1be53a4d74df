"""lakesync on a Dagster instance whose storage is Postgres (a private cluster on 127.0.0.1).

The instance is opened as its ``dagster.yaml`` says: lakesync writes nothing into it and takes no
host-local lock, the password comes from an environment variable and is never recorded, and an
instance that cannot be opened is a sentence naming the server, not a traceback. Its runs go
through the instance's queue (a real dagster-daemon dequeues and launches them), or, asked,
run in the command's process.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import dagster as dg
import polars as pl
import pytest
import yaml

from lakesync.defs.queue import daemon_running
from lakesync.demo.databases import Postgres, start_postgres
from lakesync.demo.servers import free_port
from lakesync_tests.commands import cli
from lakesync_tests.processes import start_daemon, stop

BIN = Path(sys.executable).parent
PASSWORD_ENV = "LAKESYNC_TEST_PG_PASSWORD"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    cluster = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield cluster
    cluster.stop()


def _home(folder: Path, postgres: Postgres, database: str) -> Path:
    """A ``$DAGSTER_HOME`` whose instance keeps everything in ``database`` of the cluster."""
    return postgres.dagster_home(folder / "dagster_home", database, PASSWORD_ENV)


def _env(home: Path, postgres: Postgres) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LAKESYNC_CONFIG"}
    return {**env, "DAGSTER_HOME": str(home), PASSWORD_ENV: postgres.password, "PYTHONWARNINGS": "ignore"}


def _sync(config: Path, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "lakesync"), "sync", "--config", str(config), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _recorded_text(postgres: Postgres, database: str) -> str:
    """Everything the instance stored about runs and events, as text."""
    connection = postgres.connect(database)
    with connection.cursor() as cursor:
        cursor.execute("SELECT run_body FROM runs")
        runs = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT event FROM event_logs")
        events = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT key, value FROM run_tags")
        tags = [f"{k}={v}" for k, v in cursor.fetchall()]
    connection.close()
    assert runs and events
    return "\n".join([*runs, *events, *tags])


def _quiet(config: Path) -> Path:
    """The demo with its sensors off: only `lakesync sync` starts runs."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    for lake in document["lakes"].values():
        for dataset in lake["datasets"].values():
            dataset.setdefault("sensor", {})["enabled"] = False
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config


def _daemon(home: Path, config: Path, env: dict[str, str], log: BinaryIO) -> subprocess.Popen[bytes]:
    """A dagster-daemon on the instance, serving lakesync's code location with ``config``;
    returns once its heartbeat says it dequeues runs."""
    daemon = start_daemon({**env, "LAKESYNC_CONFIG": str(config)}, log)
    deadline = time.monotonic() + 120
    with _instance(home, env) as instance:
        while not daemon_running(instance):
            assert daemon.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(0.5)
    return daemon


def _command_lines() -> str:
    """Every process's command line on this machine."""
    lines = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return "\n".join(lines)


def test_lakesync_sync_on_a_shared_instance_goes_through_its_run_queue_and_never_records_its_password(
    demo: Path, tmp_path: Path, postgres: Postgres
) -> None:
    home = _home(tmp_path, postgres, "sync_runs")
    written = (home / "dagster.yaml").read_bytes()
    env = _env(home, postgres)
    config = _quiet(demo)
    log = (tmp_path / "daemon.log").open("wb")
    daemon = _daemon(home, config, env, log)
    try:
        first = _sync(config, env)
        out, err = first.communicate(timeout=300)
        command_lines = _command_lines()  # the daemon and its code server are still running
        again = _sync(config, env)
        out_again, err_again = again.communicate(timeout=300)
    finally:
        stop(daemon)
        log.close()
    assert first.returncode == 0, err
    assert (
        f"Runs recorded in the Dagster instance: Postgres database sync_runs on 127.0.0.1:{postgres.port}."
        in out
    )
    assert re.search(r"orders: run \w{8} queued", err) and re.search(r"orders: run \w{8} success", err), err
    assert "dagster.code_server" not in out + err  # the code server it starts keeps to warnings
    assert not (home / ".lakesync-instance.lock").exists()  # no host-local lock for a shared instance
    assert (home / "dagster.yaml").read_bytes() == written  # and nothing written into its config

    with _instance(home, env) as instance:
        # The daemon's own runs (the feature's automation) may come and go beside them.
        runs = [r for r in instance.get_runs() if r.tags.get("lakesync/trigger") == "cli"]
        assert {r.tags.get("lakesync/table") for r in runs} >= {"orders", "customers"}
        for run in runs:  # submitted from lakesync's code location, dequeued and launched by the daemon
            assert run.tags.get("lakesync/trigger") == "cli"
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert run.remote_job_origin is not None
            types = {
                e.dagster_event.event_type_value for e in instance.all_logs(run.run_id) if e.dagster_event
            }
            queued = (
                dg.DagsterEventType.RUN_ENQUEUED,
                dg.DagsterEventType.RUN_STARTING,
                dg.DagsterEventType.RUN_SUCCESS,
            )
            assert {t.value for t in queued} <= types
        orders = instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "orders"]))
        assert orders is not None
        assert orders.asset_materialization is not None
        assert orders.asset_materialization.metadata["dagster/row_count"].value == 3770
        count = len(runs)
    assert "orders" in out and "3770" in out  # the summary read back from the runs' events

    recorded = _recorded_text(postgres, "sync_runs")
    assert "lakesync/table" in recorded  # what was read is the runs' record
    for text in (recorded, out, err, command_lines, (tmp_path / "daemon.log").read_text()):
        assert postgres.password not in text

    assert again.returncode == 0, err_again
    with _instance(home, env) as instance:
        cli_runs = [r for r in instance.get_runs() if r.tags.get("lakesync/trigger") == "cli"]
        assert len(cli_runs) == count, out_again  # nothing new: no run


def test_without_a_daemon_nothing_is_submitted_and_the_command_says_why(
    demo: Path, tmp_path: Path, postgres: Postgres
) -> None:
    home = _home(tmp_path, postgres, "no_daemon")
    env = _env(home, postgres)
    started = time.monotonic()
    refused = _sync(demo, env)
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 1
    assert time.monotonic() - started < 60  # at once, not after waiting for a run
    assert err.count("no dagster-daemon is running to start them") == 1, err
    assert "orders: not synced: this instance queues its runs" in err
    assert "customers: not synced: the same reason" in err
    assert "`lakesync sync --in-process`" in err
    with _instance(home, env) as instance:
        assert instance.get_runs() == []

    # --in-process runs them here, and the planned batches are ingested once
    here = subprocess.run(
        [str(BIN / "lakesync"), "sync", "--config", str(demo), "--in-process"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert here.returncode == 0, here.stderr
    orders = pl.read_delta(str(demo.parent / "data" / "lakehouse" / "orders"))
    assert orders.height == 3770


def _instance(home: Path, env: dict[str, str]) -> dg.DagsterInstance:
    os.environ[PASSWORD_ENV] = env[PASSWORD_ENV]
    return dg.DagsterInstance.from_config(str(home))


def test_two_syncs_racing_on_a_postgres_instance_commit_each_row_once(
    demo: Path, tmp_path: Path, postgres: Postgres
) -> None:
    home = _home(tmp_path, postgres, "racing")
    env = _env(home, postgres)
    racers = [_sync(demo, env, "--in-process"), _sync(demo, env, "--in-process")]
    outputs = [r.communicate(timeout=300) for r in racers]
    assert all(r.returncode == 0 for r in racers), outputs
    orders = pl.read_delta(str(demo.parent / "data" / "lakehouse" / "orders"))
    assert orders.height == 3770
    assert orders.select("_lakesync_file", "_lakesync_row").unique().height == orders.height
    with _instance(home, env) as instance:
        assert all(r.status != dg.DagsterRunStatus.STARTED for r in instance.get_runs())


def test_an_instance_that_cannot_be_opened_is_a_sentence_naming_its_server(
    demo: Path,
    tmp_path: Path,
    postgres: Postgres,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = _home(tmp_path, postgres, "unreachable")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    unset = cli(capsys, "sync", "--config", str(demo))
    assert unset.returncode == 1
    assert (
        f"names environment variable(s) that are not set: {PASSWORD_ENV} (storage.postgres.postgres_db.password)"
        in unset.stderr
    )
    assert "Traceback" not in unset.stderr

    monkeypatch.setenv(PASSWORD_ENV, postgres.password)
    port = free_port()  # nobody listens there
    settings = (
        (home / "dagster.yaml").read_text(encoding="utf-8").replace(f"port: {postgres.port}", f"port: {port}")
    )
    (home / "dagster.yaml").write_text(settings, encoding="utf-8")
    down = cli(capsys, "sync", "--config", str(demo))
    assert down.returncode == 1
    assert "(postgres storage) cannot be opened" in down.stderr
    assert f"port {port} failed: Connection refused" in down.stderr
    assert "Start its database, or correct `storage:`" in down.stderr
    assert postgres.password not in down.stderr + down.stdout
    assert "Retrying failed database connection" not in down.stderr  # said once, not six times

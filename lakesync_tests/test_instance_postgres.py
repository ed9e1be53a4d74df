"""lakesync on a Dagster instance whose storage is Postgres (a private cluster on 127.0.0.1).

The instance is opened as its ``dagster.yaml`` says: lakesync writes nothing into it and takes no
host-local lock, the password comes from an environment variable and is never recorded, and an
instance that cannot be opened is a sentence naming the server, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakesync.demo.servers import Postgres, free_port, start_postgres
from lakesync_tests.commands import cli

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


def _sync(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "lakesync"), "sync", "--config", str(config)],
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


def test_lakesync_sync_records_its_runs_in_a_postgres_instance_and_never_its_password(
    demo: Path, tmp_path: Path, postgres: Postgres
) -> None:
    home = _home(tmp_path, postgres, "sync_runs")
    written = (home / "dagster.yaml").read_bytes()
    env = _env(home, postgres)

    first = _sync(demo, env)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert (
        f"Runs recorded in the Dagster instance: Postgres database sync_runs on 127.0.0.1:{postgres.port}."
        in out
    )
    assert not (home / ".lakesync-instance.lock").exists()  # no host-local lock for a shared instance
    assert (home / "dagster.yaml").read_bytes() == written  # and nothing written into its config

    with _instance(home, env) as instance:
        runs = instance.get_runs()
        assert {r.tags.get("lakesync/table") for r in runs} >= {"orders", "customers"}
        orders = instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "orders"]))
        assert orders is not None
        assert orders.asset_materialization is not None
        assert orders.asset_materialization.metadata["dagster/row_count"].value == 3770
        count = len(runs)

    recorded = _recorded_text(postgres, "sync_runs")
    assert "lakesync/table" in recorded  # what was read is the runs' record
    for text in (recorded, out, err):
        assert postgres.password not in text

    again = _sync(demo, env)
    out, err = again.communicate(timeout=300)
    with _instance(home, env) as instance:
        assert len(instance.get_runs()) == count, out  # nothing new: no run


def _instance(home: Path, env: dict[str, str]) -> dg.DagsterInstance:
    os.environ[PASSWORD_ENV] = env[PASSWORD_ENV]
    return dg.DagsterInstance.from_config(str(home))


def test_two_syncs_racing_on_a_postgres_instance_commit_each_row_once(
    demo: Path, tmp_path: Path, postgres: Postgres
) -> None:
    home = _home(tmp_path, postgres, "racing")
    env = _env(home, postgres)
    racers = [_sync(demo, env), _sync(demo, env)]
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

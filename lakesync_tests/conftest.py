"""Shared fixtures: real folders, real Delta tables, a real (temporary) Dagster instance."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakesync.demo.databases import start_redis
from lakesync.demo.generate import generate
from lakesync.demo.servers import Server, start_azure, start_gcs, start_s3

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The demo lakes and their lakesync.yaml in a temporary folder; returns the config path."""
    return generate(tmp_path / "demo").config


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster instance configured by the project's dagster.yaml, in a temporary folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def cli_env(dagster_home: Path) -> dict[str, str]:
    """Environment for running the installed commands in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "LAKESYNC_CONFIG"}  # each test says which config
    env["DAGSTER_HOME"] = str(dagster_home)
    env["PYTHONWARNINGS"] = "ignore"
    return env


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_s3(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_azure(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_gcs(tmp_path_factory.mktemp("gcs"))
    yield server
    server.stop()


@pytest.fixture
def servers(s3_server: Server, azure_server: Server, gcs_server: Server) -> dict[str, Server]:
    return {"s3": s3_server, "azure": azure_server, "gcs": gcs_server}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    """A private Redis server on a free port (Debian's redis-server, installed by make setup-test)."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()

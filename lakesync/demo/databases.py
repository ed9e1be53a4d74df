"""Database servers for the tests and benchmarks, each on a free port of 127.0.0.1, stopped by
its own pid (the protocol emulators are in :mod:`lakesync.demo.servers`).

- PostgreSQL: a private cluster (Debian's ``postgresql``: ``initdb`` in a temporary folder), for a
  Dagster instance on Postgres
- Redis (Debian's ``redis-server``, nothing saved to disk): the broker of Celery workers, and an
  online store
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakesync.demo.servers import Server, free_port


@dataclass
class Postgres:
    """A private PostgreSQL cluster on 127.0.0.1: its server, and how to reach its database."""

    server: Server
    port: int
    user: str
    password: str
    """A throwaway password made for this cluster (it protects nothing but the test's data)."""
    database: str
    data: Path

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg2 connection to ``database`` of the cluster."""
        import psycopg2  # type: ignore[import-untyped]  # noqa: PLC0415 -- only the Postgres tests need it

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=database
        )

    def create_database(self, name: str) -> None:
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()

    def dagster_yaml(self, password_env: str, database: str | None = None) -> str:
        """A ``dagster.yaml`` whose instance keeps everything in ``database`` of this cluster,
        the password read from ``$password_env`` (dagster-postgres needs the
        ``postgresql+psycopg2`` scheme with the locked SQLAlchemy 2.1, which would otherwise look
        for psycopg 3)."""
        return (
            "telemetry: {enabled: false}\n"
            "storage:\n"
            "  postgres:\n"
            "    postgres_db:\n"
            f"      username: {self.user}\n"
            f"      password: {{env: {password_env}}}\n"
            "      hostname: 127.0.0.1\n"
            f"      port: {self.port}\n"
            f"      db_name: {database or self.database}\n"
            "      scheme: postgresql+psycopg2\n"
        )

    def dagster_home(self, home: Path, database: str, password_env: str) -> Path:
        """``home`` made a ``$DAGSTER_HOME`` on a new ``database`` of the cluster."""
        self.create_database(database)
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(self.dagster_yaml(password_env, database), encoding="utf-8")
        return home


def postgres_bin(program: str) -> Path:
    """A PostgreSQL server program (Debian installs them under /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}")) or (
        [found] if (found := shutil.which(program)) else []
    )
    if not found:
        msg = f"PostgreSQL's {program} is not installed: run `make setup-test` (apt-get install postgresql)"
        raise RuntimeError(msg)
    return Path(found[-1])


def start_postgres(
    folder: Path, port: int | None = None, database: str = "dagster", *, durable: bool = False
) -> Postgres:
    """``initdb`` a new cluster, start its ``postgres`` on a free port of 127.0.0.1 (password
    authentication) and create ``database``. PostgreSQL refuses to run as root: as root, the
    cluster belongs to Debian's ``postgres`` user. ``durable``: fsync as a real server does
    (benchmarks); the tests' cluster skips it."""
    port = port or free_port()
    as_root = os.geteuid() == 0
    owner = pwd.getpwnam("postgres") if as_root else None
    # Outside the caller's folder: the postgres user must be able to reach it.
    data = Path(tempfile.mkdtemp(prefix="lakesync-pg-"))
    user, password = "lakesync", os.urandom(12).hex()
    (data / "pw").write_text(password, encoding="utf-8")
    cluster = data / "cluster"
    if owner is not None:
        os.chown(data, owner.pw_uid, owner.pw_gid)
        os.chown(data / "pw", owner.pw_uid, owner.pw_gid)
    uid, gid = (owner.pw_uid, owner.pw_gid) if owner is not None else (None, None)
    folder.mkdir(parents=True, exist_ok=True)
    init = subprocess.run(  # noqa: S603 -- our own command line
        [
            str(postgres_bin("initdb")),
            "-D", str(cluster), "-U", user, "--pwfile", str(data / "pw"),
            "--auth=scram-sha-256", "-E", "UTF8", "--no-sync",
        ],
        capture_output=True, text=True, check=False, cwd=data, user=uid, group=gid,
    )  # fmt: skip
    (data / "pw").unlink()
    if init.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        msg = f"initdb failed: {init.stderr[-2000:]}"
        raise RuntimeError(msg)
    log = folder / "postgres.log"
    log_file = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 -- our own command line
        [
            str(postgres_bin("postgres")), "-D", str(cluster), "-p", str(port),
            "-h", "127.0.0.1", "-k", str(data), "-c", f"fsync={'on' if durable else 'off'}",
            "-c", "max_connections=200",
        ],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=data, start_new_session=True, user=uid, group=gid,
    )  # fmt: skip
    # SIGINT is PostgreSQL's fast shutdown.
    server = Server("postgres", f"postgresql://127.0.0.1:{port}", process, log, log_file, signal.SIGINT)
    cluster_ = Postgres(server, port, user, password, database, data)
    import psycopg2  # noqa: PLC0415 -- only the Postgres tests need it

    def ready() -> bool:
        try:
            cluster_.connect().close()
        except psycopg2.OperationalError:
            return False
        return True

    _wait_ready(server, ready, timeout=60, stop=cluster_.stop)
    cluster_.create_database(database)
    return cluster_


def _wait_ready(
    server: Server, ready: Callable[[], bool], *, timeout: float, stop: Callable[[], None]
) -> None:
    """Wait until ``ready()`` says a server that is not HTTP answers; if it exits or the time is
    up first, ``stop()`` and fail with the end of its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if server.process.poll() is not None or time.monotonic() > deadline:
            stop()
            msg = f"{server.name} did not start on {server.url}: {server.log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        time.sleep(0.1)


def start_redis(folder: Path, port: int | None = None) -> Server:
    """A Redis server on a free port of 127.0.0.1 that keeps nothing on disk."""
    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(program).exists():
        msg = "redis-server is not installed: run `make setup-test` (apt-get install redis-server)"
        raise RuntimeError(msg)
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    log_file = log.open("wb")
    command = [program, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    command += ["--dir", str(folder)]
    process = subprocess.Popen(  # noqa: S603 -- our own command line
        command, stdout=log_file, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
    )
    server = Server("redis", f"redis://127.0.0.1:{port}", process, log, log_file)

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    _wait_ready(server, ready, timeout=30, stop=server.stop)
    return server

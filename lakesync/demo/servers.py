"""Protocol servers for the tests and `make demo-cloud`, each on a free port of 127.0.0.1,
stopped by its own pid.

- S3: moto_server (PyPI moto[server])
- Azure Blob: azurite (npm; installed into node_modules by `make setup`)
- GCS: gcp-storage-emulator (PyPI)
- PostgreSQL: a private cluster (Debian's ``postgresql``: ``initdb`` in a temporary folder), for a
  Dagster instance on Postgres
- Redis (Debian's ``redis-server``, nothing saved to disk): the broker of Celery workers
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AZURITE = PROJECT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server; ``stop()`` ends it (and only it) by its pid."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    log_file: BinaryIO | None = None
    stop_signal: int = signal.SIGTERM
    """``dagster dev`` ignores SIGTERM when not started from a terminal: it is stopped with SIGKILL."""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@dataclass(frozen=True)
class Launch:
    """How to start a server, and how to know it is up."""

    command: list[str]
    url: str
    probe: str
    """A URL that answers (any HTTP status) once the server is up."""
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60
    stop_signal: int = signal.SIGTERM


def start_server(name: str, launch: Launch, folder: Path) -> Server:
    """Start ``launch.command`` in its own process group, logging to ``folder``; wait until its
    probe answers or fail with the end of its log."""
    command, url, probe, env, timeout = launch.command, launch.url, launch.probe, launch.env, launch.timeout
    stop_signal = launch.stop_signal
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    log_file = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 -- our own emulator command lines, no user input
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=folder,
        env={**os.environ, **env},
        start_new_session=True,  # its own process group: stop() reaches its children too
    )
    server = Server(name, url, process, log, log_file, stop_signal)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            msg = f"{name} exited at start: {log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        try:
            urllib.request.urlopen(probe, timeout=2)  # noqa: S310 -- an http://127.0.0.1 probe we built
        except urllib.error.HTTPError:
            return server  # it answers (403, 400...): it is up
        except OSError:
            time.sleep(0.2)
        else:
            return server
    server.stop()
    msg = f"{name} did not answer on {url} within {timeout:.0f} s: {log.read_text()[-2000:]}"
    raise RuntimeError(msg)


def start_s3(folder: Path, port: int | None = None) -> Server:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    return start_server("moto", Launch(command, url, probe=url + "/moto-api/"), folder)


def start_azure(folder: Path, port: int | None = None) -> Server:
    """Azurite's blob service (lakes and lakehouses on Azure)."""
    return _azurite("blob", folder, port)


def start_azure_queue(folder: Path, port: int | None = None) -> Server:
    """Azurite's queue service (for lakes whose Event Grid events land in a Storage queue)."""
    return _azurite("queue", folder, port)


def _azurite(service: str, folder: Path, port: int | None) -> Server:
    program = AZURITE.with_name(f"azurite-{service}")
    if not program.exists():
        msg = f"azurite is not installed at {program}: run `make setup` (npm ci)"
        raise RuntimeError(msg)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    command = [
        str(program),
        f"--{service}Host",
        "127.0.0.1",
        f"--{service}Port",
        str(port),
        "--location",
        str(folder / ("azurite" if service == "blob" else f"azurite-{service}")),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        "--loose",
    ]
    name = "azurite" if service == "blob" else f"azurite-{service}"
    return start_server(name, Launch(command, url, probe=url + "?comp=list"), folder)


def start_gcs(folder: Path, port: int | None = None) -> Server:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "gcp-storage-emulator"),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
    ]
    return start_server("gcs", Launch(command, url, probe=url + "/storage/v1/b"), folder)


PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
"""Google's Pub/Sub emulator (Java 17), where the machine image has the Google Cloud SDK: it is
not installable from the package registries this project uses."""


def start_pubsub(folder: Path, port: int | None = None) -> Server:
    """Google's Pub/Sub emulator on a free port of 127.0.0.1 (clients find it through
    ``$PUBSUB_EMULATOR_HOST`` = the server's ``url`` without ``http://``)."""
    if not PUBSUB_EMULATOR.exists():
        msg = f"Google's Pub/Sub emulator is not on this machine ({PUBSUB_EMULATOR})"
        raise RuntimeError(msg)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}", f"--dir={folder / 'data'}"]
    return start_server("pubsub", Launch(command, url, url + "/", timeout=90), folder)


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

"""Protocol servers for the tests and `make demo-cloud`, each on a free port of 127.0.0.1,
stopped by its own pid.

- S3: moto_server (PyPI moto[server])
- Azure Blob: azurite (npm; installed into node_modules by `make setup`)
- GCS: gcp-storage-emulator (PyPI); Pub/Sub: Google's emulator, where the machine image has it

The database servers (PostgreSQL, Redis) are in :mod:`lakesync.demo.databases`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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

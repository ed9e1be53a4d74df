"""The tests' own long-running processes (a dagster-daemon, Celery workers): started in their own
process group, stopped by their pid with everything they started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parent.parent


def start_daemon(env: Mapping[str, str], log: BinaryIO) -> subprocess.Popen[bytes]:
    """``dagster-daemon run`` on the project's workspace (lakesync's code location, configured by
    ``$LAKESYNC_CONFIG`` in ``env``), logging to ``log``."""
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(PROJECT / "workspace.yaml")],
        cwd=PROJECT,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process and everything it started (its own process group)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def lakesync_sync(config: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``lakesync sync --config config`` in a process of its own, its output captured."""
    return subprocess.run(
        [str(BIN / "lakesync"), "sync", "--config", str(config)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )

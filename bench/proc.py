"""One bench case in its own process: its peak RSS and CPU are its own (from ``wait4``)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def run_child(command: list[str], name: str) -> dict[str, Any]:
    """Run ``command`` (which prints one JSON object last); add its peak RSS and CPU."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child_process = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT.parent)
        _, status, usage = os.wait4(child_process.pid, 0)
        child_process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child_process.returncode != 0:
            raise SystemExit(f"{name} failed:\n{err.read()[-4000:]}")
        outcome: dict[str, Any] = json.loads(out.read().strip().splitlines()[-1])
    # ru_maxrss carries the parent's high-water mark over fork + exec: a child reports its own
    # (VmHWM belongs to the memory it has after exec) when it can.
    outcome["peak_rss_mb"] = outcome.pop("own_peak_rss_mb", None) or usage.ru_maxrss / 1024
    outcome["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    return outcome


def own_peak_mb() -> float | None:
    """This process's peak resident memory since exec (Linux ``VmHWM``), in MB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) / 1024 if line else None

"""How fast the `lakesync` command answers: `--help`, `--version` and `validate` on the demo.

Each is run in a fresh process (cold imports, warm disk cache), interleaved with
``python -c pass`` (the interpreter's own start-up, the floor), median of the runs.
Target: `lakesync --help` under 1 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def _time(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def measure(repeat: int = 5) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-cli-") as tmp:
        root = Path(tmp)
        subprocess.run([BIN / "lakesync", "demo", "--dir", str(root)], check=True, capture_output=True)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "lakesync --help": [str(BIN / "lakesync"), "--help"],
            "lakesync --version": [str(BIN / "lakesync"), "--version"],
            "lakesync validate": [str(BIN / "lakesync"), "validate"],
        }
        runs: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):  # interleaved: every case sees the same machine load
            for name, command in cases.items():
                runs[name].append(_time(command, root))
    return [
        {"command": name, "median_s": statistics.median(times), "runs_s": [round(t, 3) for t in times]}
        for name, times in runs.items()
    ]


def report(results: list[dict[str, Any]]) -> None:
    floor = next(r["median_s"] for r in results if r["command"] == "python -c pass")
    print(f"\n{'command':20} {'median s':>8} {'x python':>8}")
    for r in results:
        print(f"{r['command']:20} {r['median_s']:>8.2f} {r['median_s'] / floor:>8.1f}")
    print("Target: lakesync --help < 1 s (commands import their stages only when they run).")

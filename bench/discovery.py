"""The sensor tick on a large lake: list 100,000 files, diff them against the ledger, plan.

The lake and its ledger are built once (the ledger through the real plan/record path, in
batches of 1,000 files), then 100 new files land and a tick is timed: listing, reading the
dataset's ledger, the diff, the decision, and planning the new batch in the ledger (on a copy
of it). Dagster's sensor limit is 60 s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lakesync.config import parse_config
from lakesync.config.datasets import SensorSettings
from lakesync.defs.ticks import Tick, decide
from lakesync.discover import discover, take_batch
from lakesync.pipeline.plan import plan_batch
from lakesync.pipeline.runtime import DatasetRuntime, dataset_runtimes
from lakesync.pipeline.scan import scan_dataset
from lakesync.state.lakehouse import Lakehouse, lakehouse_for
from lakesync.state.ledger import Ledger
from lakesync.state.values import FileOutcome


def _config(root: Path) -> Any:
    text = json.dumps(
        {
            "lakehouse": {"uri": str(root / "lakehouse")},
            "lakes": {
                "big": {
                    "provider": "local",
                    "root": str(root / "lake"),
                    "datasets": {
                        "events": {"pattern": "events/**/*.csv", "format": "csv", "table": "events"}
                    },
                }
            },
            "tables": {"events": {"contract": {"columns": {"id": {"type": "int64"}}}}},
        }
    )
    return parse_config(text, source="bench", base_dir=root)


def _write_files(folder: Path, start: int, count: int) -> None:
    for i in range(start, start + count):
        day = folder / f"day={i // 1000:03d}"
        day.mkdir(parents=True, exist_ok=True)
        (day / f"part-{i:06d}.csv").write_text("id\n1\n")


def record_all(runtime: DatasetRuntime, ledger: Ledger) -> None:
    """Make the ledger know every file listed now, through the real plan/record path."""
    listing = list(runtime.store.list(runtime.config.pattern))
    while True:
        plan = ledger.plan(
            runtime.key,
            "events",
            lambda s: take_batch(discover(listing, s.known_tags()).new, max_files=1000, max_bytes=10**12),
            run_id="bench",
        )
        if plan is None:
            break
        ledger.record(
            plan,
            [FileOutcome(f, "ingested", 1, 1, 0) for f in plan.files],
            table_version=plan.version,
            run_id="bench",
        )


def build(root: Path, files: int) -> None:
    root = root.resolve()
    marker = root / f".complete-{files}"
    if marker.exists():
        return
    _write_files(root / "lake" / "events", 0, files)
    config = _config(root)
    record_all(dataset_runtimes(config)[0], Ledger(lakehouse_for(config)))
    marker.write_text("")


def tick(root: Path, *, files: int, new: int) -> dict[str, Any]:
    root = root.resolve()
    build(root, files)
    _write_files(root / "lake" / "events", 10_000_000, new)  # files the ledger does not know
    config = _config(root)
    runtime = dataset_runtimes(config)[0]
    started = time.perf_counter()
    scan = scan_dataset(runtime, Ledger(lakehouse_for(config)).read(runtime.key))
    listed = time.perf_counter()
    decision = decide(Tick(scan, "c", time.time()), lake="big", limits=SensorSettings())
    decided = time.perf_counter()
    # The tick plans its batches in the ledger: on a copy, so the ledger built once stays as it is.
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-tick-") as tmp:
        house = Path(tmp) / "lakehouse"
        shutil.copytree(root / "lakehouse", house)
        ledger = Ledger(Lakehouse(str(house)))
        planning = time.perf_counter()
        plans = [plan_batch(runtime, ledger, files, run_id="bench-tick") for files in decision.new]
        planned = time.perf_counter()
    for path in (root / "lake" / "events").glob("day=10000/*.csv"):
        path.unlink()
    return {
        "files": scan.discovery.files,
        "new": len(scan.discovery.new),
        "runs_requested": len([p for p in plans if p is not None]),
        "tick_s": (decided - started) + (planned - planning),
        "scan_s": listed - started,
        "plan_s": planned - planning,
    }

"""What `unique: true` across files costs: 200 new files into a 10M-row append table.

The table is built once from the parquet lake of `bench.run` (10M rows, order ids 0..10M-1).
Then 200 new parquet files of 5,000 rows land, in two shapes:

- ``growing``: new order ids only (10M and up) — the usual case for keys that only grow: every
  value is outside the table's range in the Delta log's file statistics, nothing is read;
- ``resent``: 1% of the rows re-send an old order id from anywhere in the table (a source that
  delivers some records twice) — the table's key column is read once, each batch looked up in it.

Each shape is synced with the contract's ``unique: true`` on ``order_id`` and without it, on a
fresh copy of the table each time, each run in its own process, interleaved; the ratio is the
check's cost.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent
NEW_FILES, ROWS_PER_FILE = 200, 5_000


def _contract(unique: bool) -> dict[str, Any]:
    from bench.run import CONTRACT

    contract = {name: dict(spec) for name, spec in CONTRACT.items()}
    contract["order_id"]["unique"] = unique
    return contract


def _config(lakehouse: Path, lake: Path, *, unique: bool) -> Any:
    from lakesync.config import parse_config

    text = json.dumps(
        {
            "lakehouse": {"uri": str(lakehouse)},
            "lakes": {
                "bench": {
                    "provider": "local",
                    "root": str(lake),
                    "datasets": {
                        "orders": {
                            "pattern": "*.parquet",
                            "format": "parquet",
                            "table": "orders",
                            "sensor": {"max_files": 100_000, "max_bytes": "1TB"},
                        }
                    },
                }
            },
            "tables": {"orders": {"mode": "append", "contract": {"columns": _contract(unique)}}},
        }
    )
    return parse_config(text, source="bench", base_dir=lakehouse.parent)


def _sync(lakehouse: Path, lake: Path, *, unique: bool) -> dict[str, Any]:
    return _run(_config(lakehouse, lake, unique=unique))


def _run(config: Any) -> dict[str, Any]:
    from lakesync.pipeline import sync_table
    from lakesync.state.lakehouse import lakehouse_for

    result = sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="bench-unique")
    (dataset,) = result.datasets
    assert dataset.conserved and dataset.error is None, dataset
    return {"rows_committed": result.rows_committed, "rows_quarantined": result.rows_quarantined}


def build(data: Path, base_lake: Path) -> Path:
    """The 10M-row table (once) and the two shapes of new files."""
    from bench.run import _frame

    folder = (data / "unique").resolve()
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "lake").mkdir(parents=True)
    for path in sorted(base_lake.glob("*.parquet")):
        (folder / "lake" / path.name).symlink_to(path.resolve())
    _sync(folder / "lakehouse", folder / "lake", unique=False)
    total = (
        len(list(base_lake.glob("*.parquet")))
        * pl.scan_parquet(next(base_lake.glob("*.parquet"))).select(pl.len()).collect().item()
    )
    for shape in ("growing", "resent"):
        target = folder / shape
        target.mkdir()
        for n in range(NEW_FILES):
            frame = _frame(total + n * ROWS_PER_FILE, ROWS_PER_FILE)
            if shape == "resent":  # every 100th row: an old id, spread over the whole table
                old = (pl.int_range(0, ROWS_PER_FILE, eager=True) * 7_919 + n * 104_729) % total
                frame = frame.with_columns(
                    order_id=pl.when(pl.int_range(0, ROWS_PER_FILE) % 100 == 0)
                    .then(old)
                    .otherwise(pl.col("order_id"))
                )
            frame.write_parquet(target / f"new-{n:04d}.parquet")
    (folder / ".complete").write_text("")
    return folder


def child(folder: Path, shape: str, unique: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-unique-") as tmp:
        lakehouse = Path(tmp) / "lakehouse"
        shutil.copytree(folder / "lakehouse", lakehouse, symlinks=True)
        # the new files join the base lake, so the ledger sees only them as new
        lake = Path(tmp) / "lake"
        shutil.copytree(folder / "lake", lake, symlinks=True)
        for path in (folder / shape).glob("*.parquet"):
            (lake / path.name).symlink_to(path)
        import lakesync.pipeline  # noqa: F401 - imported before the clock starts

        config = _config(lakehouse, lake, unique=unique)
        started = time.perf_counter()
        outcome = _run(config)
        outcome["wall_s"] = time.perf_counter() - started
    print(json.dumps(outcome))


def measure(folder: Path, *, repeat: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(repeat):
        for shape in ("growing", "resent"):
            for unique in (False, True):
                command = [sys.executable, "-m", "bench.unique", str(folder), shape, "1" if unique else "0"]
                done = subprocess.run(command, cwd=ROOT.parent, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"unique/{shape} failed:\n{done.stderr[-4000:]}")
                runs.append(
                    {"shape": shape, "unique": unique, **json.loads(done.stdout.strip().splitlines()[-1])}
                )
    return runs


def report(runs: list[dict[str, Any]]) -> None:
    print(f"\nunique: true across files: {NEW_FILES} new files x {ROWS_PER_FILE:,} rows into a 10M-row table")
    print(f"  {'new keys':10} {'without s':>10} {'with s':>8} {'cost':>7} {'quarantined':>12}")
    for shape in ("growing", "resent"):
        ratios = []
        plain = [r for r in runs if r["shape"] == shape and not r["unique"]]
        checked = [r for r in runs if r["shape"] == shape and r["unique"]]
        for a, b in zip(plain, checked, strict=True):
            ratios.append(b["wall_s"] / a["wall_s"])
        ratios.sort()
        median = ratios[len(ratios) // 2]
        without = sorted(r["wall_s"] for r in plain)[len(plain) // 2]
        with_check = sorted(r["wall_s"] for r in checked)[len(checked) // 2]
        quarantined = checked[0]["rows_quarantined"]
        print(f"  {shape:10} {without:>10.2f} {with_check:>8.2f} {median - 1:>+7.1%} {quarantined:>12,}")


if __name__ == "__main__":
    child(Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1")

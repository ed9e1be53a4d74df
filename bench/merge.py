"""Merge tables at scale, on text-heavy nullable orders (``bench/shapes.py``), side by side.

- ``floor``: polars streams the lake into one ``write_deltalake`` append (what ingestion
  cannot beat);
- ``append``: lakesync's engine (``sync_table``) into an append table;
- ``merge-first``: the same lake as the first load of a merge table keyed by ``order_id``
  (keys still deduplicated by the winner rule);
- ``upsert``: ``changes`` (90% new versions of existing keys, 10% new keys) synced into a copy
  of the loaded merge table;
- ``delta-merge``: delta-rs's own ``merge`` of the same rows into a copy of the same table
  (update all / insert all on ``order_id``): the floor of an upsert.

    python -m bench.merge [--rows 10000000] [--files 200] [--changes 1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from bench.proc import own_peak_mb, run_child
from bench.shapes import CONTRACT, orders_text, write_lake

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
CASES = ("floor", "append", "merge-first", "delta-merge", "upsert")


def _parts(rows: int, files: int, *, start: int = 0, revision: int = 0) -> Iterator[pl.DataFrame]:
    per_file = rows // files
    for n in range(files):
        yield orders_text(start + n * per_file, per_file, revision=revision)


def build(rows: int, files: int, changes: int, data: Path = DATA) -> Path:
    """The lake (``base/``), the changes (``changes/``) and the loaded merge table, built once."""
    root = data.resolve() / f"merge-{rows}-{files}-{changes}"
    write_lake(root / "lake" / "base", _parts(rows, files))
    existing = changes - changes // 10  # the rest are new keys, after the table's greatest
    frames = [
        orders_text(rows // 2 - existing // 2, existing, revision=1),
        orders_text(rows, changes - existing, revision=1),
    ]
    write_lake(root / "changes", frames)
    loaded = root / "loaded"
    if not (loaded / ".complete").exists():
        shutil.rmtree(loaded, ignore_errors=True)
        _sync(root / "lake", loaded / "lakehouse", mode="merge")
        (loaded / ".complete").write_text("")
    return root


def _config(lake: Path, lakehouse: Path, mode: str) -> Any:
    from lakesync.config import parse_config

    table: dict[str, Any] = {"mode": mode, "contract": {"columns": CONTRACT}}
    if mode == "merge":
        table["keys"] = ["order_id"]
    dataset = {"format": "parquet", "table": "orders", "sensor": {"max_files": 100_000, "max_bytes": "1TB"}}
    text = json.dumps(
        {
            "lakehouse": {"uri": str(lakehouse)},
            "lakes": {
                "bench": {
                    "provider": "local",
                    "root": str(lake),
                    "datasets": {
                        "orders": {**dataset, "pattern": "base/*.parquet"},
                        "changes": {**dataset, "pattern": "changes/*.parquet"},
                    },
                }
            },
            "tables": {"orders": table},
        }
    )
    return parse_config(text, source="bench", base_dir=lakehouse.parent)


def _sync(lake: Path, lakehouse: Path, *, mode: str) -> dict[str, Any]:
    from lakesync.pipeline import sync_table
    from lakesync.state.lakehouse import lakehouse_for

    config = _config(lake, lakehouse, mode)
    result = sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="bench")
    for dataset in result.datasets:
        assert dataset.conserved and dataset.error is None, dataset
    return {"rows_committed": result.rows_committed, "rows_superseded": result.rows_superseded}


def _floor(lake: Path, target: Path) -> dict[str, Any]:
    from bench.run import floor  # the same floor as the main table's (bench.run imports this module)

    return floor(lake / "base", "parquet", target)


def _delta_merge(root: Path, tmp: Path) -> dict[str, Any]:
    from deltalake import DeltaTable

    table_dir = tmp / "lakehouse" / "orders"
    changes = pl.read_parquet(sorted(str(p) for p in (root / "changes").glob("*.parquet")))
    target = DeltaTable(str(table_dir))
    columns = [f.name for f in target.schema().fields]
    source = changes.select([c for c in columns if c in changes.columns])
    result = (
        target.merge(
            source.to_arrow(compat_level=pl.CompatLevel.newest()),
            "t.order_id = s.order_id",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update({c: f"s.{c}" for c in source.columns})
        .when_not_matched_insert({c: f"s.{c}" for c in source.columns})
        .execute()
    )
    return {
        "rows_committed": int(result["num_target_rows_inserted"]) + int(result["num_target_rows_updated"])
    }


def child(case: str, root: Path) -> None:
    for module in ("deltalake", "pyarrow", "lakesync.pipeline"):
        __import__(module)
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-merge-") as name:
        tmp = Path(name)
        if case in ("upsert", "delta-merge"):
            shutil.copytree(root / "loaded" / "lakehouse", tmp / "lakehouse")
            lake = tmp / "lake"
            lake.mkdir()
            (lake / "base").symlink_to(root / "lake" / "base")
            (lake / "changes").symlink_to(root / "changes")
        started = time.perf_counter()
        if case == "floor":
            outcome = _floor(root / "lake", tmp / "table")
        elif case == "append":
            outcome = _sync(root / "lake", tmp / "lakehouse", mode="append")
        elif case == "merge-first":
            outcome = _sync(root / "lake", tmp / "lakehouse", mode="merge")
        elif case == "upsert":
            outcome = _sync(tmp / "lake", tmp / "lakehouse", mode="merge")
        else:
            outcome = _delta_merge(root, tmp)
        outcome["wall_s"] = time.perf_counter() - started
    outcome["own_peak_rss_mb"] = own_peak_mb()
    print(json.dumps(outcome))


def measure(rows: int, files: int, changes: int, repeat: int, data: Path = DATA) -> list[dict[str, Any]]:
    """Every case ``repeat`` times, interleaved; the median run of each."""
    print(f"merge tables: {rows:,} text-heavy rows in {files} files, {changes:,} changes (built once) ...")
    root = build(rows, files, changes, data)
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    for attempt in range(repeat):
        for case, outcomes in runs.items():
            print(f"  {case} {attempt + 1}/{repeat} ...", flush=True)
            command = [sys.executable, "-m", "bench.merge", "--child", case, "--root", str(root)]
            outcomes.append(run_child(command, f"merge/{case}"))
    results = []
    for case, outcomes in runs.items():
        walls = sorted(o["wall_s"] for o in outcomes)
        median = next(o for o in outcomes if o["wall_s"] == walls[len(walls) // 2])
        results.append(
            {
                **median,
                "case": case,
                "rows": changes if case in ("upsert", "delta-merge") else rows,
                "into_rows": rows if case in ("upsert", "delta-merge") else 0,
                "wall_s_all": [round(w, 3) for w in walls],
                "peak_rss_mb": max(o["peak_rss_mb"] for o in outcomes),
            }
        )
    return results


def report(results: list[dict[str, Any]]) -> None:
    by_case = {r["case"]: r for r in results}
    base = {
        "floor": "floor",
        "append": "floor",
        "merge-first": "append",
        "delta-merge": "delta-merge",
        "upsert": "delta-merge",
    }
    header = (
        f"  {'case':12} {'rows':>11} {'into':>11} {'wall s':>7} {'peak RSS MB':>11} {'vs':>12} {'ratio':>6}"
    )
    print("\nMerge tables (text-heavy nullable orders, merge keyed by order_id):")
    print(header)
    for r in results:
        against = by_case[base[r["case"]]]
        r["ratio"] = r["wall_s"] / against["wall_s"]
        r["ratio_to"] = against["case"]
        print(
            f"  {r['case']:12} {r['rows']:>11,} {r['into_rows']:>11,} {r['wall_s']:>7.2f} "
            f"{r['peak_rss_mb']:>11.0f} {against['case']:>12} {r['ratio']:>6.2f}"
        )
    print(
        "  Targets: merge-first <= 1.2x append, peak <= 1 GB; upsert <= 1.3x delta-rs's merge, peak <= 2 GB."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=CASES)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--data", type=Path, default=DATA, help="where the lakes are built")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.root)
        return 0
    report(measure(args.rows, args.files, args.changes, args.repeat, args.data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

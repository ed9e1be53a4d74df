"""`make bench`: lakesync against the floor, measured side by side in one run.

The floor is what ingestion cannot beat: polars reading the same files and one streaming
``write_deltalake`` append. lakesync does discover + read + conform + validate + commit
(with its ledger, quarantine, audit and provenance columns). ``lakesync-min`` is the same with
only the provenance columns trace needs (file, row): the difference is what the optional ones
(lake, batch, ingested_at) cost. Each case runs in its own process so
its peak RSS is its own; ratios compare cases of the same run on the same machine.

    python -m bench.run [--rows 10000000] [--files 200] [--csv-rows 2000000] [--csv-files 40]
                        [--json-rows 2000000] [--json-files 40] [--repeat 3]
                        [--discovery-files 100000] [--cloud-files 100000] [--unique 1] [--cli 1]
                        [--ledger-files 100000,1000000,5000000] [--query-rows 10000000]
                        [--online-entities 1000000] [--feature-rows 10000000]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bench import (
    cli,
    cloud_discovery,
    contention,
    events,
    events_scale,
    features,
    fixed,
    ledger,
    matching,
    merge,
    online,
    query,
    unique,
)
from bench.discovery import tick
from bench.proc import own_peak_mb, run_child
from bench.shapes import write_lake

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
RESULTS = ROOT / "results"
CURRENCIES = ["EUR", "USD", "GBP", "JPY"]
SCHEMA = {
    "order_id": pl.Int64,
    "customer_id": pl.Int64,
    "sku": pl.String,
    "quantity": pl.Int32,
    "amount": pl.Float64,
    "currency": pl.String,
    "ordered_at": pl.Datetime("us", "UTC"),
}
CONTRACT = {
    "order_id": {"type": "int64", "nullable": False},
    "customer_id": {"type": "int64", "nullable": False},
    "sku": {"type": "string", "checks": {"str_length": {"min": 3, "max": 12}}},
    "quantity": {"type": "int32", "checks": {"gt": 0}},
    "amount": {"type": "float64", "checks": {"ge": 0}},
    "currency": {"type": "string", "checks": {"isin": CURRENCIES}},
    "ordered_at": {"type": "datetime"},
}


def _frame(start: int, rows: int) -> pl.DataFrame:
    """Deterministic orders (no randomness: every run writes the same bytes)."""
    i = pl.int_range(start, start + rows, dtype=pl.Int64, eager=True)
    return pl.DataFrame({"i": i}).select(
        order_id=pl.col("i"),
        customer_id=(pl.col("i") * 7919) % 100_003,
        sku=pl.lit("SKU-") + ((pl.col("i") * 31) % 5000).cast(pl.String),
        quantity=((pl.col("i") % 9) + 1).cast(pl.Int32),
        amount=((pl.col("i") * 37) % 100_000).cast(pl.Float64) / 100,
        currency=pl.lit(pl.Series(CURRENCIES)).get(pl.col("i") % 4),
        ordered_at=(pl.lit(1_780_000_000_000_000) + pl.col("i") * 1_000_000).cast(pl.Datetime("us", "UTC")),
    )


def generate(rows: int, files: int, fmt: str) -> Path:
    """The lake for one format, written once and reused while its size is unchanged."""
    per_file = rows // files
    frames = (_frame(n * per_file, per_file) for n in range(files))
    return write_lake(DATA / f"{fmt}-{rows}-{files}", frames, fmt)


# -- the cases (each runs in a child process) -------------------------------------------------
CASES = ("floor", "lakesync", "lakesync-min")


def floor(folder: Path, fmt: str, target: Path) -> dict[str, Any]:
    import pyarrow as pa
    from deltalake import write_deltalake

    paths = sorted(str(p) for p in folder.glob(f"*.{fmt}"))
    if fmt == "parquet":
        scan = pl.scan_parquet(paths)
    elif fmt == "csv":
        scan = pl.scan_csv(paths, schema=SCHEMA)
    else:
        scan = pl.scan_ndjson(paths, schema=SCHEMA)
    batches = (b.to_arrow(compat_level=pl.CompatLevel.newest()) for b in scan.collect_batches())
    first = next(batches)
    rows = 0

    def stream() -> Any:
        nonlocal rows
        for table in (first, *batches):
            rows += table.num_rows
            yield from table.to_batches()

    write_deltalake(str(target), pa.RecordBatchReader.from_batches(first.schema, stream()), mode="append")
    return {"rows_committed": rows}


def lakesync(folder: Path, fmt: str, target: Path, *, all_provenance: bool = True) -> dict[str, Any]:
    from lakesync.config import parse_config
    from lakesync.pipeline import sync_table
    from lakesync.state.lakehouse import lakehouse_for

    provenance = {} if all_provenance else {"lake": False, "batch": False, "ingested_at": False}
    config_text = json.dumps(
        {
            "lakehouse": {"uri": str(target), "provenance": provenance},
            "lakes": {
                "bench": {
                    "provider": "local",
                    "root": str(folder),
                    "datasets": {
                        "orders": {
                            "pattern": f"*.{fmt}",
                            "format": fmt,
                            "table": "orders",
                            "sensor": {"max_files": 100_000, "max_bytes": "1TB"},
                        }
                    },
                }
            },
            "tables": {"orders": {"mode": "append", "contract": {"columns": CONTRACT}}},
        }
    )
    config = parse_config(config_text, source="bench", base_dir=target.parent)
    result = sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="bench")
    dataset = result.datasets[0]
    assert dataset.conserved and dataset.error is None, dataset
    return {"rows_committed": result.rows_committed, "rows_quarantined": result.rows_quarantined}


def child(case: str, folder: Path, fmt: str) -> None:
    # Import before the clock starts, for both cases: the bench measures ingestion, not
    # interpreter start-up (a Dagster run worker imports once per run).
    for module in ("deltalake", "pyarrow", *(("lakesync.pipeline",) if case != "floor" else ())):
        importlib.import_module(module)
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-") as tmp:
        target = Path(tmp) / "table"
        started = time.perf_counter()
        cpu = time.process_time()
        if case == "floor":
            outcome = floor(folder, fmt, target)
        else:
            outcome = lakesync(folder, fmt, target, all_provenance=case == "lakesync")
        outcome["wall_s"] = time.perf_counter() - started
        outcome["cpu_s"] = time.process_time() - cpu
        outcome["table_mb"] = sum(f.stat().st_size for f in target.rglob("*.parquet")) / 1e6
    outcome["own_peak_rss_mb"] = own_peak_mb()
    print(json.dumps(outcome))


# -- the parent --------------------------------------------------------------------------------
def measure(case: str, folder: Path, fmt: str) -> dict[str, Any]:
    """Run one case in a child process; its own peak RSS and CPU come from wait4."""
    command = [sys.executable, "-m", "bench.run", "--child", case, "--folder", str(folder), "--format", fmt]
    return run_child(command, f"{case}/{fmt}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--csv-rows", type=int, default=2_000_000)
    parser.add_argument("--csv-files", type=int, default=40)
    parser.add_argument("--json-rows", type=int, default=2_000_000, help="JSON-lines rows (0: skip)")
    parser.add_argument("--json-files", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument(
        "--discovery-files", type=int, default=100_000, help="files in the sensor-tick case (0: skip)"
    )
    parser.add_argument(
        "--cloud-files", type=int, default=100_000, help="objects in the S3 (moto) tick case (0: skip)"
    )
    parser.add_argument(
        "--unique",
        type=int,
        default=1,
        help="1: time `unique: true` across files on a 10M-row table (0: skip)",
    )
    parser.add_argument(
        "--ledger-files",
        default="100000,1000000,5000000",
        help="known files of the ledger-tick cases, comma-separated ('': skip)",
    )
    parser.add_argument("--cli", type=int, default=1, help="1: time `lakesync --help` and friends (0: skip)")
    parser.add_argument(
        "--merge-rows",
        type=int,
        default=10_000_000,
        help="rows of the merge-table cases (first load, 1M-row upsert vs delta-rs's merge; 0: skip)",
    )
    parser.add_argument(
        "--fixed-lakes", type=int, default=50, help="lakes (x 4 datasets) of the many-datasets case (0: skip)"
    )
    parser.add_argument(
        "--small-files", type=int, default=2000, help="1,000-row files of the small-files case (0: skip)"
    )
    parser.add_argument(
        "--events-files",
        type=int,
        default=100,
        help="files of the live-sync latency case (S3 -> SQS; 0: skip)",
    )
    parser.add_argument(
        "--events-objects",
        default="1000,1000000",
        help="objects in the bucket of the events-mode tick cases (comma-separated; empty: skip)",
    )
    parser.add_argument(
        "--query-rows", type=int, default=10_000_000, help="rows of the query-in-place table (0: skip)"
    )
    parser.add_argument(
        "--online-entities", type=int, default=1_000_000, help="entities of the online-store case (0: skip)"
    )
    parser.add_argument(
        "--contention-datasets",
        type=int,
        default=20,
        help="datasets committing at once into a lakehouse on moto S3 (0: skip)",
    )
    parser.add_argument(
        "--feature-rows",
        type=int,
        default=10_000_000,
        help="input rows of the incremental-feature case (0: skip)",
    )
    parser.add_argument("--child", choices=CASES)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--format", choices=["parquet", "csv", "ndjson"])
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.folder, args.format)
        return 0
    plan = [("parquet", args.rows, args.files), ("csv", args.csv_rows, args.csv_files)]
    if args.json_rows:
        plan.append(("ndjson", args.json_rows, args.json_files))
    results: list[dict[str, Any]] = []
    for fmt, rows, files in plan:
        print(f"generating {rows:,} rows of {fmt} in {files} files ...", flush=True)
        folder = generate(rows, files, fmt)
        size = sum(p.stat().st_size for p in folder.glob(f"*.{fmt}"))
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        for attempt in range(args.repeat):  # interleaved, so both see the same machine load
            for case, outcomes in runs.items():
                print(f"  {case} {attempt + 1}/{args.repeat} ...", flush=True)
                outcomes.append(measure(case, folder, fmt))
        for case, outcomes in runs.items():
            walls = sorted(o["wall_s"] for o in outcomes)
            median = next(o for o in outcomes if o["wall_s"] == walls[len(walls) // 2])
            results.append(
                {
                    **median,
                    "runs": outcomes,
                    "wall_s_all": [round(w, 3) for w in walls],
                    "peak_rss_mb": max(o["peak_rss_mb"] for o in outcomes),
                    "case": case,
                    "format": fmt,
                    "rows": rows,
                    "files": files,
                    "input_mb": size / 1e6,
                }
            )
    ticks = []
    if args.discovery_files:
        print(f"sensor tick over {args.discovery_files:,} known files + 100 new (built once) ...", flush=True)
        ticks = [tick(DATA / "discovery", files=args.discovery_files, new=100) for _ in range(args.repeat)]
    cloud: dict[str, Any] = {}
    if args.cloud_files:
        print(
            f"S3 (moto) tick over {args.cloud_files:,} objects + 100 new: seeding, teaching the ledger ...",
            flush=True,
        )
        cloud = cloud_discovery.ticks(files=args.cloud_files, new=100, repeat=args.repeat)
    uniques: list[dict[str, Any]] = []
    if args.unique:
        print("unique keys across files: 200 new files into a 10M-row table (built once) ...", flush=True)
        folder = unique.build(DATA, generate(10_000_000, 200, "parquet"))
        uniques = unique.measure(folder, repeat=args.repeat)
    commands = cli.measure(repeat=max(5, args.repeat)) if args.cli else []
    merges = (
        merge.measure(args.merge_rows, 200, args.merge_rows // 10, min(args.repeat, 2))
        if args.merge_rows
        else []
    )
    many = fixed.measure(args.fixed_lakes, 4, 10, min(args.repeat, 2)) if args.fixed_lakes else {}
    if args.small_files:
        many["small_files"] = fixed.small_files(args.small_files, repeat=min(args.repeat, 2))
    live = events.measure(args.events_files, seconds=30.0, interval=2.0) if args.events_files else {}
    buckets = [int(n) for n in args.events_objects.split(",") if n.strip()]
    scaled = events_scale.measure(buckets) if buckets else []
    sizes = [int(n) for n in args.ledger_files.split(",") if n.strip()]
    ledgers = ledger.measure(sizes, repeat=min(args.repeat, 2)) if sizes else []
    queries = query.measure(args.query_rows, 20, args.repeat) if args.query_rows else {}
    matches = matching.measure()
    served = online.measure(args.online_entities) if args.online_entities else {}
    updates = features.measure(args.feature_rows, args.repeat) if args.feature_rows else {}
    racing = contention.measure(args.contention_datasets) if args.contention_datasets else {}
    report(
        results,
        ticks,
        cloud,
        uniques=uniques,
        commands=commands,
        merges=merges,
        many=many,
        live=live,
        scaled=scaled,
        ledgers=ledgers,
        queries=queries,
        matches=matches,
        served=served,
        updates=updates,
        racing=racing,
    )
    return 0


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report(
    results: list[dict[str, Any]],
    ticks: list[dict[str, Any]],
    cloud: dict[str, Any],
    *,
    uniques: list[dict[str, Any]] | None = None,
    commands: list[dict[str, Any]] | None = None,
    merges: list[dict[str, Any]] | None = None,
    many: dict[str, Any] | None = None,
    live: dict[str, Any] | None = None,
    scaled: list[dict[str, Any]] | None = None,
    ledgers: list[dict[str, Any]] | None = None,
    queries: dict[str, Any] | None = None,
    matches: dict[str, Any] | None = None,
    served: dict[str, Any] | None = None,
    updates: dict[str, Any] | None = None,
    racing: dict[str, Any] | None = None,
) -> None:
    header = (
        f"{'format':8} {'case':12} {'rows':>11} {'files':>5} {'wall s':>7} {'cpu s':>7} "
        f"{'rows/s':>11} {'MB/s':>7} {'peak RSS MB':>11} {'table MB':>8} {'x floor':>7}"
    )
    lines = [header, "-" * len(header)]
    floors = {r["format"]: r for r in results if r["case"] == "floor"}
    for r in results:
        ratio = r["wall_s"] / floors[r["format"]]["wall_s"]
        r["ratio_to_floor"] = ratio
        lines.append(
            f"{r['format']:8} {r['case']:12} {r['rows']:>11,} {r['files']:>5} {r['wall_s']:>7.2f} "
            f"{r['process_cpu_s']:>7.2f} {r['rows'] / r['wall_s']:>11,.0f} "
            f"{r['input_mb'] / r['wall_s']:>7.1f} {r['peak_rss_mb']:>11.0f} "
            f"{r['table_mb']:>8.1f} {ratio:>7.2f}"
        )
    print()
    print("\n".join(lines))
    print("\nMedian of the runs (wall s of every run in the JSON); peak RSS is the largest run's.")
    print("Targets: lakesync wall <= 1.5x the floor; lakesync peak RSS <= 1 GB.")
    by_case = {(r["format"], r["case"]): r for r in results}
    for fmt in dict.fromkeys(r["format"] for r in results):
        full, minimal = by_case.get((fmt, "lakesync")), by_case.get((fmt, "lakesync-min"))
        if full and minimal:
            # Runs alternate, so run i of both cases saw the same machine: compare them in pairs.
            pairs = list(zip(full["runs"], minimal["runs"], strict=True))
            cost = _median([a["wall_s"] / b["wall_s"] - 1 for a, b in pairs])
            cpu = _median([a["process_cpu_s"] / b["process_cpu_s"] - 1 for a, b in pairs])
            size = full["table_mb"] / minimal["table_mb"] - 1
            full["provenance_cost"] = {"wall": cost, "cpu": cpu, "table_size": size}
            print(
                f"Provenance columns lake + batch + ingested_at ({fmt}): {cost:+.1%} wall, {cpu:+.1%} CPU, "
                f"{size:+.1%} table size (lakesync vs lakesync-min, median of paired runs; target < 5%)"
            )
    if ticks:
        median = sorted(t["tick_s"] for t in ticks)[len(ticks) // 2]
        plan = sorted(t["plan_s"] for t in ticks)[len(ticks) // 2]
        print(
            f"\nSensor tick: {ticks[0]['files']:,} files listed, {ticks[0]['new']} new, "
            f"{ticks[0]['runs_requested']} batch(es) planned and run(s) requested in {median:.2f} s "
            f"(median, of which planning {plan:.2f} s; Dagster's limit is 60 s)"
        )
    if cloud:
        print(
            f"\nS3 lake (moto on 127.0.0.1), {cloud['files']:,} objects known + {cloud['new']} new, one tick:"
        )
        print(f"  {'listing':14} {'list calls':>10} {'objects listed':>14} {'new':>5} {'tick s':>7}")
        for mode, runs in (("full", cloud["full"]), ("ordered_keys", cloud["ordered"])):
            tick_run = cloud_discovery.median(runs)
            print(
                f"  {mode:14} {tick_run['list_calls']:>10} {tick_run['objects_listed']:>14,} "
                f"{tick_run['new']:>5} {tick_run['tick_s']:>7.2f}"
            )
        print("  (moto serves a page in ~1 s at this size, S3 in tens of ms: compare the list calls)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
        "sensor_ticks": ticks,
        "s3_sensor_ticks": cloud,
        "unique_keys": uniques or [],
        "cli": commands or [],
        "merge": merges or [],
        "many_datasets": many or {},
        "live_sync": live or {},
        "events_mode_ticks": scaled or [],
        "ledger_ticks": ledgers or [],
        "query_in_place": queries or {},
        "column_matching": {k: v for k, v in (matches or {}).items() if k != "pairs"},
        "online_store": served or {},
        "incremental_features": updates or {},
        "concurrent_commits": racing or {},
    }
    if uniques:
        unique.report(uniques)
    if commands:
        cli.report(commands)
    if merges:
        merge.report(merges)
    many = many or {}
    if many.get("lakes"):
        fixed.report(many)
    if many.get("small_files"):
        fixed.report_small(many["small_files"])
    if live:
        events.report(live)
    if scaled:
        events_scale.report(scaled)
    if ledgers:
        ledger.report(ledgers)
    if queries:
        query.report(queries)
    if matches:
        matching.report(matches)
    if served:
        online.report(served)
    if updates:
        features.report(updates)
    if racing:
        contention.report(racing)
    for name in (f"bench-{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(payload, indent=2))
    print(f"Wrote {RESULTS / f'bench-{stamp}.json'}")


if __name__ == "__main__":
    raise SystemExit(main())

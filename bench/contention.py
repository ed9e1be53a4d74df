"""Many datasets committing at once into one lakehouse on S3 (moto): what they contend for.

Each of ``--datasets`` datasets feeds its own table, so no two syncs claim the same table's
pool and they all run at once, each in its own process (as runs on several workers would),
released together by a barrier; what they share is the lakehouse's bookkeeping tables (the
ledger, its compacted state, the audit trail, the quarantine, the drift log). Counted: the
commits each process lost to a concurrent writer and tried again (``append.lost_races``),
failures (none expected), rows committed once each; timed beside the same syncs one after
another in one process, on a fresh lakehouse prefix.

    python -m bench.contention [--datasets 20] [--files 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cloud_discovery import moto_s3

ENV = {"BENCH_AWS_KEY_ID": "bench", "BENCH_AWS_SECRET": "bench"}
ROWS = 2_000


def _config(root: Path, url: str, prefix: str, datasets: int) -> Any:
    from lakesync.config import parse_config

    contract = {"order_id": {"type": "int64", "nullable": False}, "amount": {"type": "float64"}}
    document = {
        "lakehouse": {"uri": f"s3://lakehouse/{prefix}", **moto_s3(url)},
        "lakes": {
            "shop": {
                "provider": "local",
                "root": str(root / "lake"),
                "datasets": {
                    f"d{n:02d}": {"pattern": f"d{n:02d}/*.parquet", "format": "parquet", "table": f"t{n:02d}"}
                    for n in range(datasets)
                },
            }
        },
        "tables": {f"t{n:02d}": {"contract": {"columns": contract}} for n in range(datasets)},
    }
    return parse_config(json.dumps(document), source="bench", base_dir=root)


def _sync_one(args: tuple[str, str, str, int, str, Any]) -> dict[str, Any]:
    """One table's sync in this process, started when every process is ready."""
    root, url, prefix, datasets, table, barrier = args
    os.environ.update(ENV)
    from lakesync.defs.providers import open_lakehouse
    from lakesync.pipeline import sync_table
    from lakesync.state import append

    config = _config(Path(root), url, prefix, datasets)
    lakehouse = open_lakehouse(config)
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    error = None
    try:
        done = sync_table(config, table, lakehouse=lakehouse, run_id=f"bench-{table}")
        committed, failed = done.rows_committed, [d.error for d in done.datasets if d.error]
    except Exception as exc:  # noqa: BLE001 - a failure is what this counts
        committed, failed, error = 0, [], f"{type(exc).__name__}: {exc}"
    return {
        "table": table,
        "seconds": time.perf_counter() - started,
        "committed": committed,
        "errors": [*failed, *([error] if error else [])],
        "lost_races": {uri.rsplit("/", 1)[-1]: n for uri, n in append.lost_races.items()},
    }


def _check(config: Any, datasets: int, files: int) -> dict[str, Any]:
    """Every table holds each of its files' rows once; the ledger one done event per file."""
    import polars as pl

    from lakesync.defs.providers import open_lakehouse

    lakehouse = open_lakehouse(config)
    options = dict(lakehouse.storage_options)
    duplicates = missing = 0
    for n in range(datasets):
        frame = pl.read_delta(lakehouse.table_uri(f"t{n:02d}"), storage_options=options)
        distinct = frame.select("_lakesync_file", "_lakesync_row").unique().height
        duplicates += frame.height - distinct
        missing += files * ROWS - distinct
    ledger = pl.read_delta(lakehouse.ledger_uri, storage_options=options)
    done = ledger.filter(pl.col("event").is_in(["ingested", "quarantined"]))
    per_path = done.group_by("dataset", "path").len()
    return {
        "duplicate_rows": duplicates,
        "missing_rows": missing,
        "done_events": done.height,
        "paths_done_twice": int((per_path["len"] > 1).sum()),
    }


def measure(datasets: int = 20, files: int = 3) -> dict[str, Any]:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakesync.demo.servers import start_s3

    print(f"contention: {datasets} datasets committing at once into a lakehouse on moto S3 ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-contention-") as tmp:
        root = Path(tmp)
        for n in range(datasets):
            for f in range(files):
                first = (n * files + f) * ROWS
                table = pa.table({"order_id": range(first, first + ROWS), "amount": [1.5] * ROWS})
                (root / "lake" / f"d{n:02d}").mkdir(parents=True, exist_ok=True)
                pq.write_table(table, root / "lake" / f"d{n:02d}" / f"part-{f}.parquet")
        server = start_s3(root / "moto")
        try:
            boto3.client(
                "s3",
                endpoint_url=server.url,
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                region_name="us-east-1",
            ).create_bucket(Bucket="lakehouse")
            tables = [f"t{n:02d}" for n in range(datasets)]
            context = mp.get_context("spawn")
            manager = context.Manager()
            barrier = manager.Barrier(datasets)
            started = time.perf_counter()
            with context.Pool(datasets) as pool:
                jobs = [(str(root), server.url, "together", datasets, t, barrier) for t in tables]
                together = pool.map(_sync_one, jobs)
            together_wall = time.perf_counter() - started  # the processes' start included
            manager.shutdown()
            with context.Pool(1) as pool:  # one after another in one process, a fresh prefix
                alone = pool.map(
                    _sync_one, [(str(root), server.url, "alone", datasets, t, None) for t in tables]
                )
            os.environ.update(ENV)
            checked = _check(_config(root, server.url, "together", datasets), datasets, files)
        finally:
            server.stop()
    lost: Counter[str] = Counter()
    for one in together:
        lost.update(one["lost_races"])
    return {
        "datasets": datasets,
        "files_per_dataset": files,
        "rows": datasets * files * ROWS,
        "errors": [e for one in together for e in one["errors"]],
        "committed": sum(one["committed"] for one in together),
        "lost_races": dict(lost.most_common()),
        "lost_races_total": sum(lost.values()),
        "lost_races_max_per_sync": max(sum(one["lost_races"].values()) for one in together),
        "sync_s_median_together": statistics.median(one["seconds"] for one in together),
        "sync_s_max_together": max(one["seconds"] for one in together),
        "together_wall_s": together_wall,
        "alone_total_s": sum(one["seconds"] for one in alone),
        "sync_s_median_alone": statistics.median(one["seconds"] for one in alone),
        **checked,
    }


def report(result: dict[str, Any]) -> None:
    races = ", ".join(f"{k} {v}" for k, v in result["lost_races"].items()) or "none"
    print(
        f"\n{result['datasets']} datasets ({result['files_per_dataset']} files each, "
        f"{result['rows']:,} rows) "
        f"committing at once into one lakehouse on moto S3, each in its own process:\n"
        f"  errors {len(result['errors'])}, rows committed {result['committed']:,} "
        f"(duplicates {result['duplicate_rows']}, missing {result['missing_rows']}, "
        f"paths done twice {result['paths_done_twice']})\n"
        f"  commits lost to a concurrent writer and tried again: {result['lost_races_total']} "
        f"(most in one sync {result['lost_races_max_per_sync']}): {races}\n"
        f"  a sync: median {result['sync_s_median_together']:.2f} s, "
        f"slowest {result['sync_s_max_together']:.2f} s "
        f"at once; {result['sync_s_median_alone']:.2f} s alone "
        f"({result['alone_total_s']:.1f} s one after another)"
    )
    for error in result["errors"][:5]:
        print(f"  error: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--files", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(args.datasets, args.files)
    report(result)
    return 1 if result["errors"] or result["duplicate_rows"] or result["missing_rows"] else 0


if __name__ == "__main__":
    sys.exit(main())

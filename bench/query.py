"""`lakesync query` beside polars reading the same Delta table directly, on a table of text-heavy
nullable orders written in ``files`` appends (as a sync's batches write it: each batch's keys in
their own files).

Each case runs in one process, the two sides alternated (A B A B) so both see the same machine;
bytes read are the process's ``rchar`` (every byte read through a system call, page cache
included) around each call, so pruning shows as bytes, not only as time:

- ``key range``: 10,000 consecutive order ids (one file's statistics allow them);
- ``aggregate``: every row (count, sum, group by country): the whole table is read.

    python -m bench.query [--rows 10000000] [--files 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from bench.proc import run_child
from bench.shapes import orders_text

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
CASES = {
    "key range": (
        "select order_id, amount, note from orders where order_id between {low} and {high}",
        lambda t, low, high: t.filter(pl.col("order_id").is_between(low, high)).select(
            "order_id", "amount", "note"
        ),
    ),
    "aggregate": (
        "select country, count(*) as n, sum(amount) as total from orders group by country",
        lambda t, low, high: t.group_by("country").agg(n=pl.len(), total=pl.col("amount").sum()),
    ),
}


def build(rows: int, files: int, data: Path = DATA) -> Path:
    """The table and its lakesync.yaml, written once and reused while its size is unchanged."""
    from deltalake import write_deltalake

    folder = data / f"query-{rows}-{files}"
    if (folder / ".complete").exists():
        return folder / "lakesync.yaml"
    uri = folder / "lakehouse" / "orders"
    per_file = rows // files
    for n in range(files):
        write_deltalake(str(uri), orders_text(n * per_file, per_file).to_arrow(), mode="append")
    (folder / "lake").mkdir(exist_ok=True)
    contract = {"order_id": {"type": "int64", "nullable": False}}
    config = {
        "lakehouse": {"uri": str(folder / "lakehouse")},
        "lakes": {"shop": {"provider": "local", "root": str(folder / "lake"), "datasets": {}}},
        "tables": {"orders": {"contract": {"columns": contract}}},
    }
    (folder / "lakesync.yaml").write_text(json.dumps(config))
    (folder / ".complete").write_text("")
    return folder / "lakesync.yaml"


def _rchar() -> int:
    line = next(x for x in Path("/proc/self/io").read_text().splitlines() if x.startswith("rchar:"))
    return int(line.split()[1])


def child(config_path: str, rows: int, files: int, repeat: int) -> dict[str, Any]:
    from deltalake import DeltaTable
    from polars.testing import assert_frame_equal

    from lakesync.config import load_config
    from lakesync.sql import run_query
    from lakesync.state.lakehouse import lakehouse_for

    config = load_config(Path(config_path))
    lakehouse = lakehouse_for(config)
    uri = lakehouse.table_uri("orders")
    table_bytes = int(pl.DataFrame(DeltaTable(uri).get_add_actions(flatten=True))["size_bytes"].sum())
    low = (files // 2) * (rows // files) + 100
    high = low + 9_999
    out: dict[str, Any] = {"rows": rows, "files": files, "table_mb": table_bytes / 1e6, "cases": {}}
    for name, (sql, direct) in CASES.items():
        timings: dict[str, list[float]] = {"lakesync query": [], "polars scan_delta": []}
        read: dict[str, list[int]] = {k: [] for k in timings}
        answers: dict[str, pl.DataFrame] = {}
        for _ in range(repeat):
            for side, times in timings.items():
                before, started = _rchar(), time.perf_counter()
                if side == "lakesync query":
                    frame = run_query(config, sql.format(low=low, high=high), lakehouse=lakehouse).frame
                else:
                    frame = direct(pl.scan_delta(DeltaTable(uri)), low, high).collect()
                times.append(time.perf_counter() - started)
                read[side].append(_rchar() - before)
                answers[side] = frame.sort(frame.columns[0])
        # (sums of floats may differ in their last bits with the order polars adds them in)
        assert_frame_equal(
            answers["lakesync query"], answers["polars scan_delta"], check_exact=False, check_dtypes=False
        )
        out["cases"][name] = {
            "rows_out": answers["lakesync query"].height,
            **{f"{side} s": statistics.median(v) for side, v in timings.items()},
            **{f"{side} MB read": statistics.median(v) / 1e6 for side, v in read.items()},
        }
    return out


def measure(rows: int, files: int, repeat: int, data: Path = DATA) -> dict[str, Any]:
    print(f"query in place: a {rows:,}-row table in {files} appends (built once) ...", flush=True)
    config = build(rows, files, data)
    command = [
        sys.executable,
        "-m",
        "bench.query",
        "--child",
        str(config),
        str(rows),
        str(files),
        str(repeat),
    ]
    return run_child(command, "query")


def report(result: dict[str, Any]) -> None:
    print(
        f"\n`lakesync query` beside polars on the same Delta table ({result['rows']:,} rows, "
        f"{result['files']} files, {result['table_mb']:.0f} MB), medians, A B alternated:"
    )
    print(
        f"  {'case':<10} {'rows':>9} {'lakesync s':>10} {'polars s':>9} {'ratio':>6} "
        f"{'lakesync MB read':>16} {'polars MB read':>14}"
    )
    for name, r in result["cases"].items():
        ours, theirs = r["lakesync query s"], r["polars scan_delta s"]
        print(
            f"  {name:<10} {r['rows_out']:>9,} {ours:>10.3f} {theirs:>9.3f} {ours / theirs:>5.2f}x "
            f"{r['lakesync query MB read']:>16.1f} {r['polars scan_delta MB read']:>14.1f}"
        )
    print("  (MB read: bytes read by the process during the query, page cache included)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "ROWS", "FILES", "REPEAT"))
    args = parser.parse_args(argv)
    if args.child:
        config, rows, files, repeat = args.child
        print(json.dumps(child(config, int(rows), int(files), int(repeat))))
        return 0
    report(measure(args.rows, args.files, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

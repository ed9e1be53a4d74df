"""A feature table kept up to date after 100 new rows land in a large input, beside computing it
whole: ``count()``, ``sum(amount)`` and ``max(ordered_at)`` per customer (about 1M customers)
over a table of text-heavy orders written in 20 appends.

In one child process, alternated: append 100 new orders and bring the feature up to date
(incremental: the touched entities' new values appended to the feature's history), then build
it from the whole input (``force``: computed whole, compared with the stored values, the
changed ones appended), then only the aggregation over the whole input (what any full
recompute costs at least); peak memory of each side is not separated (one process), their
times are. Then, each in a process of its own, the feature built once from the whole input and
one incremental build after 100 new rows: that process's peak is what an update costs in memory.

    python -m bench.features [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.proc import run_child
from bench.shapes import orders_text

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
FILES = 20


def build(rows: int, data: Path = DATA) -> Path:
    """The input table, written once and reused while its size is unchanged."""
    from deltalake import write_deltalake

    folder = data / f"features-{rows}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        per_file = rows // FILES
        for n in range(FILES):
            write_deltalake(
                str(folder / "orders"), orders_text(n * per_file, per_file).to_arrow(), mode="append"
            )
        (folder / ".complete").write_text("")
    return folder


def _config(lakehouse: Path) -> Path:
    contract = {
        "order_id": {"type": "int64", "nullable": False},
        "customer_id": {"type": "int64"},
        "amount": {"type": "float64"},
        "ordered_at": {"type": "datetime"},
    }
    document = {
        "lakehouse": {"uri": str(lakehouse)},
        "lakes": {"shop": {"provider": "local", "root": str(lakehouse), "datasets": {}}},
        "tables": {"orders": {"contract": {"columns": contract}}},
        "features": {
            "spend": {
                "inputs": ["orders"],
                "group_by": ["customer_id"],
                "aggregations": {"orders": "count()", "total": "sum(amount)", "last_at": "max(ordered_at)"},
                "online": False,
            }
        },
    }
    path = lakehouse.parent / "lakesync.yaml"
    path.write_text(json.dumps(document))
    return path


def child(folder: str, rows: int, repeat: int) -> dict[str, Any]:
    import polars as pl
    from deltalake import write_deltalake

    from lakesync.config import load_config
    from lakesync.features import build_feature, feature_frame
    from lakesync.state.lakehouse import Lakehouse

    with tempfile.TemporaryDirectory(prefix="lakesync-bench-features-") as tmp:
        lakehouse = Path(tmp) / "lakehouse"
        shutil.copytree(Path(folder) / "orders", lakehouse / "orders")
        config = load_config(_config(lakehouse))
        house = Lakehouse(str(lakehouse))
        started = time.perf_counter()
        first = build_feature(config, "spend", house, run_id="bench", force=True)
        first_s = time.perf_counter() - started
        incremental, full, aggregation, appended = [], [], [], []
        for n in range(repeat):
            new = orders_text(rows + n * 100, 100)
            write_deltalake(str(lakehouse / "orders"), new.to_arrow(), mode="append")
            started = time.perf_counter()
            built = build_feature(config, "spend", house, run_id="bench")
            incremental.append(time.perf_counter() - started)
            assert built.how == "incremental", built.how
            assert built.change is not None
            appended.append(built.change.rows.height + built.change.gone.height)
            started = time.perf_counter()
            build_feature(config, "spend", house, run_id="bench", force=True)
            full.append(time.perf_counter() - started)
            started = time.perf_counter()
            feature_frame(
                config.features["spend"], {"orders": pl.scan_delta(str(lakehouse / "orders"))}
            ).collect()
            aggregation.append(time.perf_counter() - started)
        history_rows = pl.scan_delta(str(lakehouse / "_features" / "spend")).select(pl.len()).collect().item()
    return {
        "rows": rows,
        "entities": first.rows,
        "first_build_s": first_s,
        "incremental_s": statistics.median(incremental),
        "full_s": statistics.median(full),
        "aggregation_s": statistics.median(aggregation),
        "rows_appended": statistics.median(appended),
        "history_rows": history_rows,
        "runs_incremental_s": [round(x, 2) for x in incremental],
        "runs_full_s": [round(x, 2) for x in full],
    }


def prepare(folder: str, out: str) -> dict[str, Any]:
    """A lakehouse holding the input and the feature built from it, for :func:`incremental`."""
    from lakesync.config import load_config
    from lakesync.features import build_feature
    from lakesync.state.lakehouse import Lakehouse

    lakehouse = Path(out) / "lakehouse"
    shutil.copytree(Path(folder) / "orders", lakehouse / "orders")
    built = build_feature(load_config(_config(lakehouse)), "spend", Lakehouse(str(lakehouse)), run_id="bench")
    return {"entities": built.rows}


def incremental(out: str, rows: int) -> dict[str, Any]:
    """100 new rows and one incremental build, in a process doing nothing else."""
    from deltalake import write_deltalake

    from bench.proc import own_peak_mb
    from lakesync.config import load_config
    from lakesync.features import build_feature
    from lakesync.state.lakehouse import Lakehouse

    lakehouse = Path(out) / "lakehouse"
    config = load_config(_config(lakehouse))
    write_deltalake(str(lakehouse / "orders"), orders_text(rows, 100).to_arrow(), mode="append")
    before = own_peak_mb()
    started = time.perf_counter()
    built = build_feature(config, "spend", Lakehouse(str(lakehouse)), run_id="bench")
    assert built.how == "incremental", built.how
    return {"s": time.perf_counter() - started, "before_build_mb": before, "own_peak_rss_mb": own_peak_mb()}


def measure(rows: int, repeat: int, data: Path = DATA) -> dict[str, Any]:
    print(
        f"features: {rows:,}-row input, 100 new rows, incremental beside whole (built once) ...", flush=True
    )
    folder = build(rows, data)
    result = run_child(
        [sys.executable, "-m", "bench.features", "--child", str(folder), str(rows), str(repeat)], "features"
    )
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-features-") as tmp:
        command = [sys.executable, "-m", "bench.features"]
        built = run_child([*command, "--prepare", str(folder), tmp], "features (built whole)")
        alone = run_child([*command, "--incremental", tmp, str(rows)], "features (incremental alone)")
    result["incremental_alone"] = {
        "s": alone["s"],
        "peak_rss_mb": alone["peak_rss_mb"],
        "before_build_mb": alone["before_build_mb"],
        "whole_build_peak_rss_mb": built["peak_rss_mb"],
    }
    return result


def report(result: dict[str, Any]) -> None:
    ratio = result["incremental_s"] / result["full_s"]
    bare = result["incremental_s"] / result["aggregation_s"]
    print(
        f"\nFeature spend (count, sum, max by customer: {result['entities']:,} entities) over "
        f"{result['rows']:,} rows, 100 new rows each time, medians:\n"
        f"  incremental {result['incremental_s']:.3f} s ({result['rows_appended']:.0f} rows appended), "
        f"whole {result['full_s']:.2f} s: {ratio:.0%}; the aggregation alone "
        f"{result['aggregation_s']:.2f} s: {bare:.0%}\n"
        f"  history after the builds: {result['history_rows']:,} rows "
        f"(peak RSS of the process {result['peak_rss_mb']:.0f} MB)"
    )
    alone = result.get("incremental_alone")
    if alone:
        before = alone["before_build_mb"]
        print(
            f"  in processes of their own: an incremental build {alone['s']:.3f} s, peak RSS "
            f"{alone['peak_rss_mb']:.0f} MB ({before:.0f} MB before the build); "
            f"the build from the whole input: peak {alone['whole_build_peak_rss_mb']:.0f} MB"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "ROWS", "REPEAT"))
    parser.add_argument("--prepare", nargs=2, metavar=("FOLDER", "OUT"))
    parser.add_argument("--incremental", nargs=2, metavar=("OUT", "ROWS"))
    args = parser.parse_args(argv)
    if args.prepare:
        print(json.dumps(prepare(*args.prepare)))
        return 0
    if args.incremental:
        print(json.dumps(incremental(args.incremental[0], int(args.incremental[1]))))
        return 0
    if args.child:
        folder, rows, repeat = args.child
        print(json.dumps(child(folder, int(rows), int(repeat))))
        return 0
    report(measure(args.rows, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a `lakesync sync` costs beyond the rows: many small lakes, and a sync with nothing new.

A project of ``lakes`` local lakes x ``datasets`` datasets feeding ``tables`` tables, one
1,000-row parquet file per dataset; ``lakesync sync`` (the CLI, a fresh process, a Dagster
instance under a temporary ``$DAGSTER_HOME``) runs once with everything new, then again with
nothing new. The floor is polars reading the same files and one append per table.

    python -m bench.fixed [--lakes 50] [--datasets 4] [--tables 10] [--repeat 2] [--no-postgres]

The many-datasets case also runs on a Dagster instance in a private PostgreSQL cluster (fsync
on), beside the embedded SQLite one: Dagster's event log is most of what is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from bench.shapes import CONTRACT, orders_text
from lakesync.demo.databases import Postgres, start_postgres

BIN = Path(sys.executable).parent
PG_PASSWORD = "LAKESYNC_BENCH_PG_PASSWORD"


def project(root: Path, lakes: int, datasets: int, tables: int) -> Path:
    """The lakes, their files and the lakesync.yaml that names them."""
    config: dict[str, Any] = {"lakehouse": {"uri": str(root / "lakehouse")}, "lakes": {}, "tables": {}}
    for t in range(tables):
        config["tables"][f"orders_{t:02d}"] = {"mode": "append", "contract": {"columns": CONTRACT}}
    n = 0
    for lake in range(lakes):
        folder = root / "lakes" / f"lake_{lake:02d}"
        sets = {}
        for d in range(datasets):
            (folder / f"set_{d}").mkdir(parents=True)
            orders_text(n * 1000, 1000).write_parquet(folder / f"set_{d}" / "part-00000.parquet")
            sets[f"set_{d}"] = {
                "pattern": f"set_{d}/*.parquet",
                "format": "parquet",
                "table": f"orders_{n % tables:02d}",
            }
            n += 1
        config["lakes"][f"lake_{lake:02d}"] = {"provider": "local", "root": str(folder), "datasets": sets}
    path = root / "lakesync.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def _lakesync_sync(config: Path, home: Path, extra: dict[str, str] | None = None, *options: str) -> float:
    env = {**os.environ, **(extra or {}), "DAGSTER_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "lakesync"), "sync", "--config", str(config), *options],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lakesync sync failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall


def _engine(config: Path, table: str) -> float:
    """The engine alone (``sync_table`` in a fresh process, imports before the clock), every
    file in one batch."""
    code = (
        "import json, sys, time; from pathlib import Path; import lakesync.pipeline\n"
        "from lakesync.config import load_config; from lakesync.pipeline import sync_table\n"
        "from lakesync.state.lakehouse import lakehouse_for\n"
        "config = load_config(Path(sys.argv[1])); started = time.perf_counter()\n"
        "sync_table(config, sys.argv[2], lakehouse=lakehouse_for(config), run_id='bench')\n"
        "print(time.perf_counter() - started)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(config), table], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the engine failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _floor(root: Path, config: Path) -> float:
    from deltalake import write_deltalake

    spec = json.loads(config.read_text())
    started = time.perf_counter()
    by_table: dict[str, list[str]] = {}
    for lake in spec["lakes"].values():
        for ds in lake["datasets"].values():
            by_table.setdefault(ds["table"], []).extend(
                str(p) for p in Path(lake["root"]).glob(ds["pattern"])
            )
    for table, files in by_table.items():
        frame = pl.read_parquet(files)
        write_deltalake(str(root / "floor" / table), frame.to_arrow(compat_level=pl.CompatLevel.newest()))
    return time.perf_counter() - started


def _postgres_home(home: Path, postgres: Postgres, database: str) -> dict[str, str]:
    """``home`` as a Dagster instance on ``database`` of the cluster (its schema created before
    the clock starts, as a deployed instance has it); the environment that opens it."""
    import dagster as dg

    postgres.dagster_home(home, database, PG_PASSWORD)
    env = {PG_PASSWORD: postgres.password}
    os.environ.update(env)
    dg.DagsterInstance.from_config(str(home)).dispose()
    return env


def measure(
    lakes: int = 50, datasets: int = 4, tables: int = 10, repeat: int = 2, *, postgres: bool = True
) -> dict[str, Any]:
    """The many-datasets case on the embedded SQLite instance and (``postgres``) on a Dagster
    instance in a private, durable PostgreSQL cluster, run by run side by side."""
    print(f"many datasets: {lakes} lakes x {datasets} datasets into {tables} tables, 1,000 rows each ...")
    names = ["floor", "first sync", "nothing new"]
    if postgres:
        names += ["first sync (Postgres)", "nothing new (Postgres)"]
    runs: dict[str, list[float]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        cluster = None
        if postgres:
            cluster = start_postgres(Path(stack.enter_context(tempfile.TemporaryDirectory())), durable=True)
            stack.callback(cluster.stop)
        for attempt in range(repeat):
            with tempfile.TemporaryDirectory(prefix="lakesync-bench-fixed-") as tmp:
                root = Path(tmp)
                config = project(root, lakes, datasets, tables)
                (root / "home").mkdir()
                runs["floor"].append(_floor(root, config))
                runs["first sync"].append(_lakesync_sync(config, root / "home"))
                runs["nothing new"].append(_lakesync_sync(config, root / "home"))
                if cluster is not None:
                    shutil.rmtree(root / "lakehouse")
                    (root / "pg_home").mkdir()
                    env = _postgres_home(root / "pg_home", cluster, f"bench_{attempt}")
                    # In this process, as on SQLite: the same work, another event log.
                    runs["first sync (Postgres)"].append(
                        _lakesync_sync(config, root / "pg_home", env, "--in-process")
                    )
                    runs["nothing new (Postgres)"].append(
                        _lakesync_sync(config, root / "pg_home", env, "--in-process")
                    )
    return {
        "lakes": lakes,
        "datasets": lakes * datasets,
        "tables": tables,
        "rows": lakes * datasets * 1000,
        **{name: statistics.median(times) for name, times in runs.items()},
        "runs_s": {name: [round(t, 2) for t in times] for name, times in runs.items()},
    }


def small_files(files: int = 2000, rows: int = 1000, repeat: int = 2) -> dict[str, Any]:
    """One dataset of ``files`` small parquet files: the floor, the engine (one batch) and
    `lakesync sync` (one run, batches of 1,000 files) side by side."""
    print(f"small files: {files:,} parquet files x {rows:,} rows through `lakesync sync` ...")
    runs: dict[str, list[float]] = {"floor": [], "engine": [], "lakesync sync": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="lakesync-bench-small-") as tmp:
            root = Path(tmp)
            config = project(root, 1, 1, 1)
            folder = root / "lakes" / "lake_00" / "set_0"
            for n in range(1, files):
                orders_text(n * rows, rows).write_parquet(folder / f"part-{n:05d}.parquet")
            (root / "home").mkdir()
            runs["floor"].append(_floor(root, config))
            spec = json.loads(config.read_text())
            spec["lakehouse"]["uri"] = str(root / "engine")
            spec["lakes"]["lake_00"]["datasets"]["set_0"]["sensor"] = {"max_files": files}
            engine_config = root / "engine.yaml"
            engine_config.write_text(json.dumps(spec))
            runs["engine"].append(_engine(engine_config, "orders_00"))
            runs["lakesync sync"].append(_lakesync_sync(config, root / "home"))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    return {
        "files": files,
        "rows": files * rows,
        **medians,
        "engine ratio": medians["engine"] / medians["floor"],
        "ratio": medians["lakesync sync"] / medians["floor"],
    }


def report_small(result: dict[str, Any]) -> None:
    print(
        f"\nSmall files ({result['files']:,} parquet files, {result['rows']:,} rows, one dataset): "
        f"floor {result['floor']:.2f} s, engine {result['engine']:.2f} s ({result['engine ratio']:.1f}x), "
        f"`lakesync sync` {result['lakesync sync']:.2f} s ({result['ratio']:.1f}x; target <= 2x)"
    )


def report(result: dict[str, Any]) -> None:
    print(
        f"\nMany datasets ({result['lakes']} lakes, {result['datasets']} datasets, "
        f"{result['tables']} tables, {result['rows']:,} rows; `lakesync sync` in a fresh process):"
    )
    for name in ("floor", "first sync", "nothing new", "first sync (Postgres)", "nothing new (Postgres)"):
        if name in result:
            print(f"  {name:24} {result[name]:>7.2f} s")
    print("  Targets: first sync <= 10 s, nothing new <= 3 s.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lakes", type=int, default=50)
    parser.add_argument("--datasets", type=int, default=4)
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true", help="only the embedded SQLite instance")
    args = parser.parse_args(argv)
    report(measure(args.lakes, args.datasets, args.tables, args.repeat, postgres=not args.no_postgres))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ledger's share of a tick at millions of files: read a dataset's ledger, diff a listing
against it, check the new batch against the snapshot it is planned on.

The ledger of ``known`` files (a planned and an ingested event each, in batches of 1,000, as
the real plan/record path writes them) is written straight into a Delta table with the ledger's
schema and application transactions: the real path would take hours at a million files. The
listing is the known files plus 100 new ones, yielded one ``FileEntry`` at a time as a store does
(what making them costs is measured apart and left out). Each size
runs in its own process (its peak RSS its own) and reports the peak of the listing alone too.

    python -m bench.ledger [--files 100000,1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bench.proc import own_peak_mb, run_child

DATASET = "big.events"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _path(i: int) -> str:
    return f"events/day={i // 1000:04d}/part-{i:07d}.csv"


def build(
    uri: str, known: int, *, dataset: str = DATASET, path: pl.Expr | None = None, batched: bool = True
) -> None:
    """A ledger that knows ``known`` files, each planned and ingested, 1,000 to a batch
    (``path``: the i-th file's path, an expression of ``i``; ``batched=False``: all in a batch
    0 that no table holds, so a real sync can follow with batch 1)."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    from lakesync.state.ledger_state import LEDGER_SCHEMA

    at = pl.lit(BASE) + pl.duration(seconds=pl.col("i"))
    default = pl.format(
        "events/day={}/part-{}.csv",
        (pl.col("i") // 1000).cast(pl.String).str.zfill(4),
        pl.col("i").cast(pl.String).str.zfill(7),
    )
    files = pl.DataFrame({"i": pl.int_range(0, known, eager=True)}).with_columns(
        path=path if path is not None else default,
        batch=(pl.col("i") // 1000 + 1).cast(pl.Int64) if batched else pl.lit(0, pl.Int64),
        modified=at.dt.cast_time_unit("us"),
    )

    def events(kind: str) -> pl.DataFrame:
        outcome = kind == "ingested"
        return files.select(
            dataset=pl.lit(dataset),
            table=pl.lit("events"),
            batch="batch",
            event=pl.lit(kind),
            path="path",
            size=pl.lit(4, pl.Int64),
            modified="modified",
            etag=pl.lit(None, pl.String),
            rows_read=pl.lit(1 if outcome else None, pl.Int64),
            rows_committed=pl.lit(1 if outcome else None, pl.Int64),
            rows_quarantined=pl.lit(0 if outcome else None, pl.Int64),
            table_version=pl.col("batch") if outcome else pl.lit(None, pl.Int64),
            reason=pl.lit(None, pl.String),
            drift=pl.lit(None, pl.String),
            run_id=pl.lit("3f2a9c1e-7b2d-4c1a-9e8f-0a1b2c3d4e5f"),
            recorded_at="modified",
            rows=pl.lit(None, pl.List(pl.Int64)),
            replay_of=pl.lit(None, pl.Int64),
            rows_erased=pl.lit(None, pl.Int64),
            rows_rescued=pl.lit(None, pl.Int64),
            discovered_by=pl.lit(None, pl.String),
            event_time=pl.lit(None, pl.Datetime("us", "UTC")),
        )

    table = pl.concat([events("planned"), events("ingested")]).to_arrow().cast(LEDGER_SCHEMA)
    batches = -(-known // 1000)
    write_deltalake(uri, table, partition_by=["dataset"], mode="overwrite")
    if not batched:
        return
    done = [Transaction(f"plan:{dataset}", batches), Transaction(f"done:{dataset}", batches)]
    write_deltalake(
        uri,
        table.slice(0, 0),
        partition_by=["dataset"],
        mode="append",
        commit_properties=CommitProperties(app_transactions=done),
    )


def child(uri: str, known: int, new: int, page: int = 0) -> dict[str, Any]:
    """One tick's ledger work, timed in this process. ``page``: a sensor's listing resumed
    across ticks (``sensor.max_listed``): the tick lists that many files, the pass's last page
    (where the new files are), after the path before them."""
    from deltalake import DeltaTable

    from lakesync.discover import discover
    from lakesync.discover.sources.listing import Page
    from lakesync.state.lakehouse import Lakehouse
    from lakesync.state.ledger_state import ledger_state
    from lakesync.state.values import FileEntry

    first = max(0, known + new - page) if page else 0

    def listing() -> Iterator[FileEntry]:  # what a store yields, one entry at a time
        entries = (FileEntry(_path(i), 4, BASE + timedelta(seconds=i)) for i in range(first, known + new))
        return iter(Page(entries, page)) if page else entries

    started = time.perf_counter()
    for _ in listing():  # the store's own share: making the entries, nothing kept
        pass
    yield_s = time.perf_counter() - started
    before_mb = own_peak_mb()
    started = time.perf_counter()
    state = ledger_state(Lakehouse(str(Path(uri).parent)), DeltaTable(uri), DATASET)
    state.known  # noqa: B018 - read here, timed as the read
    read = time.perf_counter()
    found = discover(listing(), state.known)
    diffed = time.perf_counter()
    batch = state.untaken(list(found.new))
    checked = time.perf_counter()
    assert len(found.new) == len(batch) == new and not found.changed, (len(found.new), len(batch))
    assert found.files == known + new - first
    diff = max(0.0, diffed - read - yield_s)  # the ledger's share of going through the listing
    return {
        "known": known,
        "new": new,
        "listed": found.files,
        "read_s": read - started,
        "diff_s": diff,
        "yield_s": yield_s,
        "check_s": checked - diffed,
        "tick_s": (read - started) + diff + (checked - diffed),
        "listing_peak_mb": before_mb,
        "own_peak_rss_mb": own_peak_mb(),
    }


def measure(
    sizes: list[int], *, new: int = 100, repeat: int = 2, page: int | None = None
) -> list[dict[str, Any]]:
    """Each size's tick listing the whole lake and (where the lake is larger than a page, by
    default ``sensor.max_listed``) a tick listing one page of a pass, each in its own process."""
    from lakesync.config.datasets import SensorSettings
    from lakesync.state.lakehouse import Lakehouse
    from lakesync.state.ledger_files import compact

    page = page or SensorSettings().max_listed or 0
    results = []
    for known in sizes:
        print(f"ledger: {known:,} known files + {new} new (built once) ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="lakesync-bench-ledger-") as tmp:
            uri = str(Path(tmp) / "_ledger")
            build(uri, known)
            compact(Lakehouse(tmp), DATASET)  # what the ledger's maintenance does every 25 batches
            for size in [0, *([page] if known + new > page else [])]:
                runs = [
                    run_child(
                        [
                            sys.executable,
                            "-m",
                            "bench.ledger",
                            "--child",
                            uri,
                            str(known),
                            str(new),
                            str(size),
                        ],
                        "ledger tick",
                    )
                    for _ in range(repeat)
                ]
                results.append(_summary(runs, known=known, new=new, page=size))
    return results


def _summary(runs: list[dict[str, Any]], **fields: int) -> dict[str, Any]:
    return {
        **{
            k: statistics.median(r[k] for r in runs)
            for k in ("read_s", "diff_s", "yield_s", "check_s", "tick_s")
        },
        **fields,
        "listed": runs[0]["listed"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "listing_peak_mb": max(r["listing_peak_mb"] or 0 for r in runs),
        "runs_tick_s": [round(r["tick_s"], 2) for r in runs],
    }


def report(results: list[dict[str, Any]]) -> None:
    print("\nThe ledger's share of a tick (read + diff + check), each size in its own process:")
    print(
        f"  {'known files':>12} {'listed':>10} {'read s':>7} {'diff s':>7} {'check s':>7} {'tick s':>7} "
        f"{'peak MB':>8} {'before MB':>10} {'store s':>8}"
    )
    for r in results:
        listed = f"{r['listed']:,}" if r.get("page") else "all"
        print(
            f"  {r['known']:>12,} {listed:>10} {r['read_s']:>7.2f} {r['diff_s']:>7.2f} {r['check_s']:>7.2f} "
            f"{r['tick_s']:>7.2f} {r['peak_rss_mb']:>8.0f} {r['listing_peak_mb']:>10.0f} {r['yield_s']:>8.2f}"
        )
    print(
        "  (the listing is read as a store yields it; store s: making its entries alone, left out of\n"
        "   the diff; before MB: the process before the tick; listed: all, or one page of a listing\n"
        "   resumed across ticks, sensor.max_listed, the pass's last page with the new files)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", default="100000,1000000", help="known files, comma-separated")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--page", type=int, default=None, help="files a tick lists (default: sensor.max_listed)"
    )
    parser.add_argument("--child", nargs=4, metavar=("URI", "KNOWN", "NEW", "PAGE"))
    args = parser.parse_args(argv)
    if args.child:
        uri, known, new, page = args.child
        print(json.dumps(child(uri, int(known), int(new), int(page))))
        return 0
    report(measure([int(n) for n in args.files.split(",")], repeat=args.repeat, page=args.page))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

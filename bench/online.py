"""The online stores (SQLite, and Redis where redis-server is installed): publishing a feature
of ``entities`` rows whole, applying an incremental build's 100 touched entities, then looking
entities up one at a time through the store ``lakesync.get_online_features`` uses, in this
process. Reports publish and update times and the lookup latency percentiles per store.

    python -m bench.online [--entities 1000000] [--lookups 2000] [--stores sqlite,redis]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.config.storage import RedisOnlineStore
from lakesync.demo.databases import start_redis
from lakesync.features.incremental import Change
from lakesync.features.serving import OnlineStore, Release
from lakesync.features.store_sqlite import SQLiteStore

CHANGED = 100


def _feature(entities: int) -> pl.DataFrame:
    i = pl.int_range(0, entities, dtype=pl.Int64, eager=True)
    return pl.DataFrame({"customer_id": i}).with_columns(
        orders=(pl.col("customer_id") % 17 + 1).cast(pl.UInt32),
        total_amount=(pl.col("customer_id") * 37 % 100_000).cast(pl.Float64) / 100,
        last_order_at=pl.lit(datetime(2026, 11, 1, tzinfo=UTC)).dt.offset_by(
            pl.format("{}s", pl.col("customer_id") % 86_400)
        ),
    )


def _run(store: OnlineStore, frame: pl.DataFrame, lookups: int) -> dict[str, Any]:
    entities = frame.height
    started = time.perf_counter()
    store.publish(Release("customer_spend", ("customer_id",), 1, {"orders": 1}), frame)
    published_s = time.perf_counter() - started
    rng = random.Random(7)
    touched = frame.sample(min(CHANGED, entities), seed=3).with_columns(orders=pl.col("orders") + 1000)
    change = Change(since=1, rows=touched, gone=touched.clear().select("customer_id"), total=entities)
    started = time.perf_counter()
    done = store.apply(Release("customer_spend", ("customer_id",), 2, {"orders": 2}), change)
    applied_s = time.perf_counter() - started
    assert done is not None and done.how == "incremental"
    changed = set(touched["customer_id"].to_list())
    latencies = []
    for _ in range(lookups):
        key = rng.randrange(entities)
        started = time.perf_counter()
        found = store.get("customer_spend", {"customer_id": [key]})
        latencies.append((time.perf_counter() - started) * 1000)
        assert found["orders"][0] == key % 17 + 1 + (1000 if key in changed else 0)
    latencies.sort()
    return {
        "entities": entities,
        "lookups": lookups,
        "publish_s": published_s,
        "update_100_s": applied_s,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
    }


def measure(
    entities: int = 1_000_000, lookups: int = 2000, stores: tuple[str, ...] = ("sqlite", "redis")
) -> dict[str, Any]:
    frame = _feature(entities)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-online-") as tmp:
        if "sqlite" in stores:
            print(f"online store (SQLite): {entities:,} entities, {lookups:,} lookups ...", flush=True)
            path = Path(tmp) / "features.sqlite"
            results["sqlite"] = _run(SQLiteStore(path), frame, lookups)
            results["sqlite"]["store_mb"] = path.stat().st_size / 1e6
        if "redis" in stores and shutil.which("redis-server"):
            from lakesync.features.store_redis import RedisStore

            print(f"online store (Redis): {entities:,} entities, {lookups:,} lookups ...", flush=True)
            server = start_redis(Path(tmp) / "redis")
            try:
                results["redis"] = _run(RedisStore(RedisOnlineStore(redis=f"{server.url}/0")), frame, lookups)
            finally:
                server.stop()
    return results


def report(results: dict[str, Any]) -> None:
    print("\n| store | entities | publish whole | update 100 | lookup p50 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        print(
            f"| {kind} | {r['entities']:,} | {r['publish_s']:.2f} s | {r['update_100_s'] * 1000:.1f} ms "
            f"| {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['max_ms']:.2f} ms |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.entities, args.lookups, tuple(args.stores.split(",")))
    print(json.dumps(result)) if args.json else report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The online store (SQLite): publishing a feature of ``entities`` rows, then looking entities up
one at a time through ``lakesync.features.online.lookup`` (what ``lakesync.get_online_features``
calls), in this process. Reports the publish time and the lookup latency percentiles.

    python -m bench.online [--entities 1000000] [--lookups 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.features.online import Release, lookup, publish


def _feature(entities: int) -> pl.DataFrame:
    i = pl.int_range(0, entities, dtype=pl.Int64, eager=True)
    return pl.DataFrame({"customer_id": i}).with_columns(
        orders=(pl.col("customer_id") % 17 + 1).cast(pl.UInt32),
        total_amount=(pl.col("customer_id") * 37 % 100_000).cast(pl.Float64) / 100,
        last_order_at=pl.lit(datetime(2026, 11, 1, tzinfo=UTC)).dt.offset_by(
            pl.format("{}s", pl.col("customer_id") % 86_400)
        ),
    )


def measure(entities: int = 1_000_000, lookups: int = 2000) -> dict[str, Any]:
    print(f"online store: publish {entities:,} entities, then {lookups:,} lookups ...", flush=True)
    frame = _feature(entities)
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-online-") as tmp:
        path = Path(tmp) / "features.sqlite"
        started = time.perf_counter()
        publish(path, Release("customer_spend", ("customer_id",), 1, {"orders": 1}), frame)
        published_s = time.perf_counter() - started
        rng = random.Random(7)
        latencies = []
        for _ in range(lookups):
            key = rng.randrange(entities)
            started = time.perf_counter()
            found = lookup(path, "customer_spend", {"customer_id": [key]})
            latencies.append((time.perf_counter() - started) * 1000)
            assert found["orders"][0] == key % 17 + 1
        size_mb = path.stat().st_size / 1e6
    latencies.sort()
    return {
        "entities": entities,
        "lookups": lookups,
        "publish_s": published_s,
        "store_mb": size_mb,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\nOnline store (SQLite), {result['entities']:,} entities: published in {result['publish_s']:.1f} s "
        f"({result['store_mb']:.0f} MB); {result['lookups']:,} lookups of one entity: "
        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.entities, args.lookups)
    print(json.dumps(result)) if args.json else report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Events mode does not list: a tick's cost with 1,000 and with 1,000,000 objects in the bucket.

For each size, in its own process: a moto server on 127.0.0.1 seeded with ``objects`` objects
through its backend (``bench/moto_seeded.py``), a ledger that knows every one of them (written
straight into its Delta schema, as ``bench/ledger.py`` does: the lake was synced by listing
before it switched to events), S3 notifications to an SQS queue, and an events-mode lake with
``ordered_keys: true`` (its first reconciliation, due on the switch, lists after the greatest
known key). Then ``new`` objects land over the S3 protocol and `lakesync sync` runs: the intake
receives their events, checks each file, announces it, acknowledges; the dataset plans from the
inbox and ingests. Counted: list calls to the store, the tick's seconds, peak RSS.

    python -m bench.events_scale [--objects 1000,1000000] [--new 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import polars as pl

from bench.cloud_discovery import BUCKET, PREFIX, big_config, big_lake
from bench.cloud_discovery import ENV as DISCOVERY_ENV
from bench.ledger import build as build_ledger
from bench.moto_seeded import key
from bench.proc import own_peak_mb, run_child
from lakesync.state.ledger_files import compact

ENV = {**DISCOVERY_ENV, "LAKESYNC_TELEMETRY": "0"}


def _config(root: Path, url: str, queue: str) -> Any:
    discovery = {"mode": "events", "source": {"kind": "sqs", "queue_url": queue}, "reconcile_every": "24h"}
    return big_config(root, big_lake(url, ordered=True, discovery=discovery))


def child(objects: int, new: int) -> dict[str, Any]:
    from lakesync.defs.launch import sync
    from lakesync.demo.servers import PROJECT, Launch, free_port, start_server
    from lakesync.discover.stores.objectstore import ObjectStore
    from lakesync.state.lakehouse import lakehouse_for

    calls = {"list": 0}
    listing = ObjectStore.list

    def counted(self: ObjectStore, pattern: str, **options: Any) -> Any:
        calls["list"] += 1
        return listing(self, pattern, **options)

    ObjectStore.list = counted  # type: ignore[method-assign]
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-events-scale-") as tmp:
        root = Path(tmp)
        os.environ["DAGSTER_HOME"] = str(root / "home")
        (root / "home").mkdir()
        port = free_port()
        command = [sys.executable, "-m", "bench.moto_seeded", f"--port={port}", f"--bucket={BUCKET}",
                   f"--prefix={PREFIX}events/", f"--files={objects}"]  # fmt: skip
        launch = Launch(command, f"http://127.0.0.1:{port}", probe=f"http://127.0.0.1:{port}/moto-api/",
                        env={"PYTHONPATH": str(PROJECT)}, timeout=900)  # fmt: skip
        server = start_server("moto-seeded", launch, root)
        try:
            kw = {"endpoint_url": server.url, "aws_access_key_id": "bench", "aws_secret_access_key": "bench",
                  "region_name": "us-east-1"}  # fmt: skip
            s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
            queue = sqs.create_queue(QueueName="big-lake-events")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            s3.put_bucket_notification_configuration(
                Bucket=BUCKET,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            config = _config(root, server.url, queue)
            path = pl.format(
                "events/day={}/part-{}.csv",
                (pl.col("i") // 1000).cast(pl.String).str.zfill(3),
                pl.col("i").cast(pl.String).str.zfill(6),
            )  # moto_seeded's keys, relative to the lake's prefix
            lakehouse = lakehouse_for(config)
            build_ledger(lakehouse.ledger_uri, objects, dataset="big.events", path=path, batched=False)
            compact(lakehouse, "big.events")  # as the ledger's maintenance leaves it
            started = time.perf_counter()
            first = sync(config)  # the switch to events mode: its reconciliation (ordered keys)
            first_s = time.perf_counter() - started
            assert first.ok, first.failures
            for i in range(objects, objects + new):
                s3.put_object(Bucket=BUCKET, Key=key(f"{PREFIX}events/", i), Body=b"id\n2\n")
            calls["list"] = 0
            started = time.perf_counter()
            outcome = sync(config)
            tick_s = time.perf_counter() - started
            assert outcome.ok, outcome.failures
            ingested = sum(d.files_ingested for d in outcome.datasets)
        finally:
            server.stop()
    return {
        "objects": objects,
        "new": new,
        "list_calls": calls["list"],
        "files_ingested": ingested,
        "tick_s": tick_s,
        "first_sync_s": first_s,
        "first_intake": first.intakes[0] if first.intakes else "",
        "intake": outcome.intakes[0] if outcome.intakes else "",
        "own_peak_rss_mb": own_peak_mb(),
    }


def measure(sizes: list[int], new: int = 100) -> list[dict[str, Any]]:
    results = []
    for objects in sizes:
        print(f"events mode at scale: {objects:,} objects in the bucket, {new} new ...", flush=True)
        command = [sys.executable, "-m", "bench.events_scale", "--child", str(objects), str(new)]
        results.append(run_child(command, f"events at {objects:,} objects"))
    return results


def report(results: list[dict[str, Any]]) -> None:
    print(
        "\n| objects in the bucket (all known) | the switch's reconciliation | new | list calls "
        "| ingested | `lakesync sync` s | peak RSS |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['objects']:,} | {r.get('first_sync_s', 0):.2f} s | {r['new']} | {r['list_calls']} "
            f"| {r['files_ingested']} | {r['tick_s']:.2f} | {r['peak_rss_mb']:.0f} MB |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", default="1000,1000000")
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--child", nargs=2, type=int, metavar=("OBJECTS", "NEW"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    report(measure([int(n) for n in args.objects.split(",")], args.new))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

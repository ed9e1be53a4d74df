"""Live sync: how long a file waits between landing in S3 and being committed, in events mode.

A moto server on 127.0.0.1 holds a bucket whose notifications go to an SQS queue. ``files``
small parquet files land over ``seconds`` (a producer thread, one file at a time); meanwhile
`lakesync sync` runs every ``interval`` seconds in this process (what an intake sensor and the
dataset's sensor do under the daemon, without the daemon's own scheduling). A file's latency is
its ingested event in the ledger minus its object's LastModified: p50/p95/max.

    python -m bench.events [--files 100] [--seconds 30] [--interval 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import polars as pl

from bench.shapes import CONTRACT, orders_text

ENV = {"BENCH_AWS_KEY_ID": "bench", "BENCH_AWS_SECRET": "bench-secret-value", "LAKESYNC_TELEMETRY": "0"}


def _parquet(n: int) -> bytes:
    buffer = io.BytesIO()
    orders_text(n * 100, 100).write_parquet(buffer)
    return buffer.getvalue()


def measure(files: int = 100, seconds: float = 30.0, interval: float = 2.0) -> dict[str, Any]:
    from lakesync.config import parse_config
    from lakesync.defs.launch import sync
    from lakesync.demo.servers import start_s3
    from lakesync.state.lakehouse import lakehouse_for

    print(f"events: {files} files landing over {seconds:.0f} s, `lakesync sync` every {interval:.0f} s ...")
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-events-") as tmp:
        root = Path(tmp)
        server = start_s3(root / "moto")
        saved = {k: os.environ.get(k) for k in (*ENV, "DAGSTER_HOME")}
        os.environ.update(ENV)
        (root / "home").mkdir()
        os.environ["DAGSTER_HOME"] = str(root / "home")
        try:
            kw = {
                "endpoint_url": server.url,
                "aws_access_key_id": "bench",
                "aws_secret_access_key": "bench",
                "region_name": "us-east-1",
            }
            s3, sqs = boto3.client("s3", **kw), boto3.client("sqs", **kw)
            s3.create_bucket(Bucket="live-lake")
            url = sqs.create_queue(QueueName="live-lake")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            s3.put_bucket_notification_configuration(
                Bucket="live-lake",
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            config = parse_config(
                json.dumps(
                    {
                        "lakehouse": {"uri": str(root / "lakehouse")},
                        "lakes": {
                            "live": {
                                "provider": "s3",
                                "bucket": "live-lake",
                                "region": "us-east-1",
                                "endpoint_url": server.url,
                                "allow_http": True,
                                "credentials": {
                                    "access_key_id": {"env": "BENCH_AWS_KEY_ID"},
                                    "secret_access_key": {"env": "BENCH_AWS_SECRET"},
                                },
                                "discovery": {
                                    "mode": "events",
                                    "source": {"kind": "sqs", "queue_url": url},
                                    "reconcile_every": "24h",
                                },
                                "datasets": {
                                    "orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}
                                },
                            }
                        },
                        "tables": {"orders": {"mode": "append", "contract": {"columns": CONTRACT}}},
                    }
                ),
                source="bench",
                base_dir=root,
            )
            bodies = [_parquet(n) for n in range(files)]

            def produce() -> None:
                for n, body in enumerate(bodies):
                    s3.put_object(Bucket="live-lake", Key=f"part-{n:05d}.parquet", Body=body)
                    time.sleep(seconds / files)

            producer = threading.Thread(target=produce)
            started = time.monotonic()
            producer.start()
            syncs: list[float] = []
            ledger_uri = lakehouse_for(config).ledger_uri
            done = 0
            while done < files and time.monotonic() - started < seconds + 120:
                began = time.monotonic()
                outcome = sync(config)
                syncs.append(time.monotonic() - began)
                if outcome.failures:
                    raise SystemExit(f"lakesync sync failed: {outcome.failures}")
                if Path(ledger_uri, "_delta_log").is_dir():
                    done = pl.read_delta(ledger_uri).filter(pl.col("event") == "ingested").height
                time.sleep(max(0.0, interval - (time.monotonic() - began)))
            producer.join()
            ledger = pl.read_delta(ledger_uri).filter(pl.col("event") == "ingested")
        finally:
            server.stop()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    waits = (ledger["recorded_at"] - ledger["modified"]).dt.total_milliseconds() / 1000
    ordered = sorted(waits.to_list())
    return {
        "files": files,
        "ingested": ledger.height,
        "seconds": seconds,
        "interval_s": interval,
        "syncs": len(syncs),
        "sync_s_median": statistics.median(syncs),
        "p50_s": ordered[len(ordered) // 2],
        "p95_s": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max_s": ordered[-1],
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\nLive sync (S3 -> SQS on moto, {result['files']} files over {result['seconds']:.0f} s, "
        f"`lakesync sync` every {result['interval_s']:.0f} s, {result['syncs']} syncs of "
        f"{result['sync_s_median']:.1f} s median): landed -> committed p50 {result['p50_s']:.1f} s, "
        f"p95 {result['p95_s']:.1f} s, max {result['max_s']:.1f} s "
        f"(target: p95 <= interval + 10 s = {result['interval_s'] + 10:.0f} s); "
        f"{result['ingested']} of {result['files']} ingested"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    report(measure(args.files, args.seconds, args.interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

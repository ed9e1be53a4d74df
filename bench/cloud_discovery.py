"""The sensor tick on an S3 lake of 100,000 objects, with 100 new ones: full listing against
``ordered_keys: true`` (start after the greatest key the ledger knows).

The bucket lives in a moto server on 127.0.0.1, seeded through moto's backend (see
``bench/moto_seeded.py``); the ledger learns every object through the real plan/record path
(lakehouse on local disk); the 100 new objects are put over the S3 protocol. A tick is timed as
the sensor runs it: the lake's resource gives the store, the store lists (paginated, from the
pattern's literal prefix), the ledger is read and diffed, the decision is taken.

moto sorts the whole bucket for every page it serves, so a full listing costs moto about
1 s per 1,000 keys here, far slower than S3 itself (tens of ms per page). The list calls are the
portable number; the seconds compare the two modes on the same server.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from bench.discovery import record_all
from bench.moto_seeded import key
from lakesync.config import parse_config
from lakesync.config.datasets import SensorSettings
from lakesync.defs.providers import open_stores
from lakesync.defs.ticks import Tick, decide
from lakesync.demo.servers import PROJECT, Launch, Server, free_port, start_server
from lakesync.discover.stores.objectstore import ObjectStore
from lakesync.pipeline.runtime import dataset_runtimes
from lakesync.pipeline.scan import scan_dataset
from lakesync.state.lakehouse import lakehouse_for
from lakesync.state.ledger import Ledger

BUCKET = "big-lake"
PREFIX = "landing/"
# The moto server takes any key pair; lakesync reads these names like real credentials.
ENV = {"BENCH_AWS_KEY_ID": "bench", "BENCH_AWS_SECRET": "bench-secret-value"}


def moto_s3(url: str) -> dict[str, Any]:
    """The lakesync.yaml settings of a store on the moto server at ``url`` (the bench's keys)."""
    return {
        "region": "us-east-1",
        "endpoint_url": url,
        "allow_http": True,
        "credentials": {
            "access_key_id": {"env": "BENCH_AWS_KEY_ID"},
            "secret_access_key": {"env": "BENCH_AWS_SECRET"},
        },
    }


def big_lake(url: str, *, ordered: bool, discovery: dict[str, Any] | None = None) -> dict[str, Any]:
    """The lakesync.yaml entry of the seeded bucket's lake (one csv dataset, ``events``)."""
    lake: dict[str, Any] = {
        "provider": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        **moto_s3(url),
        "datasets": {
            "events": {
                "pattern": "events/**/*.csv",
                "format": "csv",
                "table": "events",
                "ordered_keys": ordered,
            }
        },
    }
    if discovery is not None:
        lake["discovery"] = discovery
    return lake


def big_config(root: Path, lake: dict[str, Any]) -> Any:
    document = {
        "lakehouse": {"uri": str(root / "lakehouse")},
        "lakes": {"big": lake},
        "tables": {"events": {"contract": {"columns": {"id": {"type": "int64"}}}}},
    }
    return parse_config(json.dumps(document), source="bench", base_dir=root)


def _config(root: Path, url: str, *, ordered: bool) -> Any:
    return big_config(root, big_lake(url, ordered=ordered))


def _tick(root: Path, url: str, *, ordered: bool) -> dict[str, Any]:
    config = _config(root, url, ordered=ordered)
    with open_stores(config) as stores:
        runtime = dataset_runtimes(config, stores=stores)[0]
        store = runtime.store
        assert isinstance(store, ObjectStore)
        started = time.perf_counter()
        scan = scan_dataset(runtime, Ledger(lakehouse_for(config)).read(runtime.key))
        decision = decide(Tick(scan, "c", time.time()), lake="big", limits=SensorSettings())
        elapsed = time.perf_counter() - started
    return {
        "ordered_keys": ordered,
        "objects_listed": scan.discovery.files,
        "new": len(scan.discovery.new),
        "list_calls": store.list_calls,
        "runs_requested": len(decision.new),
        "tick_s": elapsed,
    }


def ticks(*, files: int, new: int, repeat: int) -> dict[str, Any]:
    """Seed, teach the ledger, add ``new`` objects, then time the ticks; the server is stopped
    (by its pid) before returning."""
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory(prefix="lakesync-bench-s3-") as tmp:
        root = Path(tmp)
        port = free_port()
        launch = Launch(
            [
                sys.executable,
                "-m",
                "bench.moto_seeded",
                f"--port={port}",
                f"--bucket={BUCKET}",
                f"--prefix={PREFIX}events/",
                f"--files={files}",
            ],
            f"http://127.0.0.1:{port}",
            probe=f"http://127.0.0.1:{port}/moto-api/",
            env={"PYTHONPATH": str(PROJECT)},
            timeout=600,
        )
        server: Server = start_server("moto-seeded", launch, root)
        try:
            url = server.url
            config = _config(root, url, ordered=False)
            started = time.perf_counter()
            with open_stores(config) as stores:
                record_all(dataset_runtimes(config, stores=stores)[0], Ledger(lakehouse_for(config)))
            taught = time.perf_counter() - started
            client = boto3.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id=ENV["BENCH_AWS_KEY_ID"],
                aws_secret_access_key=ENV["BENCH_AWS_SECRET"],
                region_name="us-east-1",
            )
            for i in range(files, files + new):  # keys after every known one
                client.put_object(Bucket=BUCKET, Key=key(f"{PREFIX}events/", i), Body=b"id\n2\n")
            full = [_tick(root, url, ordered=False)]  # once: it costs moto ~100 s per 100k keys
            ordered = [_tick(root, url, ordered=True) for _ in range(repeat)]
        finally:
            server.stop()
    return {"files": files, "new": new, "ledger_taught_s": taught, "full": full, "ordered": ordered}


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = sorted(r["tick_s"] for r in runs)
    return next(r for r in runs if r["tick_s"] == walls[len(walls) // 2])


if __name__ == "__main__":  # python -m bench.cloud_discovery: a quick look at a smaller lake
    os.chdir(PROJECT)
    print(json.dumps(ticks(files=5000, new=100, repeat=3), indent=2))

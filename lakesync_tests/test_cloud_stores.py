"""Lake stores against servers that speak the real protocols (moto, azurite, the GCS emulator)."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakesync.config.datasets import FormatOptions
from lakesync.config.load import parse_config
from lakesync.config.models import LakesyncConfig
from lakesync.defs.providers import open_stores
from lakesync.demo.servers import AZURITE_KEY, Server
from lakesync.discover.stores import FileChangedError, LakeStore
from lakesync.read import ReadSpec, read_file
from lakesync_tests.cloud import Bucket, new_bucket

PROVIDERS = ["s3", "azure", "gcs"]


@pytest.fixture
def lake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lakes' credentials, as the environment variables the config names."""
    monkeypatch.setenv("LAKE_S3_KEY", "testing")
    monkeypatch.setenv("LAKE_S3_SECRET", "testing")
    monkeypatch.setenv("LAKE_AZURE_KEY", AZURITE_KEY)


@contextmanager
def store_of(bucket: Bucket, *, prefix: str = "", pattern: str = "**") -> Iterator[LakeStore]:
    datasets = {"data": {"pattern": pattern, "format": "csv", "table": "t"}}
    text = json.dumps(
        {
            "lakehouse": {"uri": "lh"},
            "lakes": {"lake": bucket.lake(datasets, prefix=prefix)},
            "tables": {"t": {"contract": {"columns": {"a": {"type": "int64"}}}}},
        }
    )
    config: LakesyncConfig = parse_config(text, source="test", base_dir=Path("/tmp"))
    with open_stores(config) as stores:
        yield stores["lake"]


@pytest.mark.usefixtures("lake_env")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_listing_uses_the_prefix_the_pattern_and_start_after(
    provider: str, servers: dict[str, Server]
) -> None:
    bucket = new_bucket(provider, servers[provider])
    for key in [
        "landing/orders/2026/a.csv",
        "landing/orders/2026/b.csv",
        "landing/orders/c.csv",
        "landing/other/d.csv",
        "elsewhere/orders/e.csv",
        "landing/orders/f.txt",
    ]:
        bucket.put(key, b"a\n1\n")
    with store_of(bucket, prefix="landing/") as store:
        found = sorted(store.list("orders/**/*.csv"))
        assert [f.path for f in found] == ["orders/2026/a.csv", "orders/2026/b.csv", "orders/c.csv"]
        assert all(f.size == 4 and f.etag and f.modified.tzinfo is not None for f in found)
        later = [f.path for f in store.list("orders/**/*.csv", start_after="orders/2026/a.csv")]
        assert later == ["orders/2026/b.csv", "orders/c.csv"]
        assert store.stat("orders/c.csv") is not None and store.stat("orders/nope.csv") is None


@pytest.mark.usefixtures("lake_env")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_format_reads_from_the_store(provider: str, servers: dict[str, Server]) -> None:
    bucket = new_bucket(provider, servers[provider])
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3]}), sink)
    records = [{"a": 1}, {"a": 2}, {"a": 3}]
    files = {
        "x.parquet": ("parquet", sink.getvalue()),
        "x.csv": ("csv", b"a\n1\n2\n3\n"),
        "x.csv.gz": ("csv", gzip.compress(b"a\n1\n2\n3\n")),
        "x.ndjson": ("ndjson", "\n".join(json.dumps(r) for r in records).encode()),
        "x.json": ("json", json.dumps(records).encode()),
    }
    for key, (_, data) in files.items():
        bucket.put(key, data)
    with store_of(bucket) as store:
        for entry in store.list("x.*"):
            fmt, _ = files[entry.path]
            with store.local_path(entry) as path:
                frame = pl.concat(
                    list(read_file(path, ReadSpec(fmt, FormatOptions()))), how="vertical_relaxed"
                )  # type: ignore[arg-type]
            assert frame["a"].cast(pl.Int64).to_list() == [1, 2, 3], entry.path


@pytest.mark.usefixtures("lake_env")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_download_is_pinned_to_the_listed_version(provider: str, servers: dict[str, Server]) -> None:
    bucket = new_bucket(provider, servers[provider])
    bucket.put("a.csv", b"a\n1\n")
    with store_of(bucket) as store:
        (entry,) = store.list("*.csv")
        bucket.put("a.csv", b"a\n1\n2\n")  # replaced after the listing
        with (
            pytest.raises(FileChangedError, match="the file changed after it was listed"),
            store.local_path(entry),
        ):
            pass


@pytest.mark.usefixtures("lake_env")
def test_listing_pages_through_a_large_bucket(s3_server: Server) -> None:
    from lakesync_tests.cloud import s3_client

    bucket = new_bucket("s3", s3_server)
    client = s3_client(s3_server)
    for n in range(1003):
        client.put_object(Bucket=bucket.name, Key=f"d/{n:05d}.csv", Body=b"a\n1\n")
    with store_of(bucket) as store:
        assert len(list(store.list("d/*.csv"))) == 1003
        assert store.list_calls == 2  # S3 answers at most 1000 keys a page
        store.list_calls = 0
        assert [f.path for f in store.list("d/*.csv", start_after="d/01000.csv")] == [
            "d/01001.csv",
            "d/01002.csv",
        ]
        assert store.list_calls == 1

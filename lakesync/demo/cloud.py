"""`make demo-cloud`: the demo lakes spread over S3, Azure and GCS emulators, synced into a
lakehouse on the S3 emulator, through the same Dagster jobs as `make demo`.

    python -m lakesync.demo.cloud [--dir demo-cloud]

The servers (moto, azurite, gcp-storage-emulator) run on free ports of 127.0.0.1 while the
sync runs, and are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import boto3
import yaml
from azure.storage.blob import BlobServiceClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from lakesync.config import load_config
from lakesync.defs.launch import sync
from lakesync.demo.generate import generate
from lakesync.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY, Server, start_azure, start_gcs, start_s3
from lakesync.report.summary import sync_summary

# Credentials of the emulators, given to lakesync the way real ones are: environment variables.
DEMO_ENV = {
    "EU_AWS_KEY_ID": "demo",
    "EU_AWS_SECRET": "demo-secret",
    "US_AZURE_KEY": AZURITE_KEY,
    "LAKEHOUSE_AWS_KEY_ID": "demo",
    "LAKEHOUSE_AWS_SECRET": "demo-secret",
}


def _upload(folder: Path, put: Any) -> int:
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        put(path.relative_to(folder).as_posix(), path.read_bytes())
        count += 1
    return count


def spread(lakes: Path, s3: Server, azure: Server, gcs: Server) -> dict[str, Any]:
    """Upload the three demo lakes, one per cloud; return their lakesync.yaml entries."""
    s3_client = boto3.client(
        "s3",
        endpoint_url=s3.url,
        aws_access_key_id=DEMO_ENV["EU_AWS_KEY_ID"],
        aws_secret_access_key=DEMO_ENV["EU_AWS_SECRET"],
        region_name="us-east-1",
    )
    for bucket in ("eu-sales-raw", "central-lakehouse"):
        s3_client.create_bucket(Bucket=bucket)
    _upload(
        lakes / "eu_sales",
        lambda key, data: s3_client.put_object(Bucket="eu-sales-raw", Key=f"landing/{key}", Body=data),
    )
    container = BlobServiceClient(account_url=azure.url, credential=AZURITE_KEY).create_container("us-sales")
    _upload(lakes / "us_sales", container.upload_blob)
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    gcs_client = storage.Client(
        project="demo", credentials=anonymous, client_options={"api_endpoint": gcs.url}
    )
    gcs_bucket = gcs_client.create_bucket("apac-sales")
    _upload(lakes / "apac_sales", lambda key, data: gcs_bucket.blob(key).upload_from_string(data))
    return {
        "eu_sales": {
            "provider": "s3",
            "bucket": "eu-sales-raw",
            "prefix": "landing/",
            "region": "us-east-1",
            "endpoint_url": s3.url,
            "allow_http": True,
            "credentials": {
                "access_key_id": {"env": "EU_AWS_KEY_ID"},
                "secret_access_key": {"env": "EU_AWS_SECRET"},
            },
        },
        "us_sales": {
            "provider": "azure",
            "account": AZURITE_ACCOUNT,
            "container": "us-sales",
            "endpoint_url": azure.url,
            "allow_http": True,
            "credentials": {"account_key": {"env": "US_AZURE_KEY"}},
        },
        "apac_sales": {
            "provider": "gcs",
            "bucket": "apac-sales",
            "project": "demo",
            "endpoint_url": gcs.url,
            "allow_http": True,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", default="demo-cloud")
    args = parser.parse_args(argv)
    root = Path(args.dir).resolve()
    shutil.rmtree(root, ignore_errors=True)
    local = generate(root / "source")
    config = yaml.safe_load(local.config.read_text())
    for table in config["tables"].values():  # suites stay beside the demo's own config
        if table.get("expectations"):
            table["expectations"] = str((local.config.parent / table["expectations"]).resolve())
    servers: list[Server] = []
    try:
        folder = Path(tempfile.mkdtemp(prefix="lakesync-servers-"))
        s3, azure, gcs = start_s3(folder), start_azure(folder), start_gcs(folder)
        servers = [s3, azure, gcs]
        print(f"S3 (moto) {s3.url} · Azure (azurite) {azure.url} · GCS (emulator) {gcs.url}")
        clouds = spread(root / "source" / "data" / "lakes", s3, azure, gcs)
        for name, lake in clouds.items():
            config["lakes"][name] = {
                **lake,
                "datasets": config["lakes"][name]["datasets"],
                "description": config["lakes"][name].get("description"),
            }
        config["lakehouse"] = {
            "uri": "s3://central-lakehouse/warehouse",
            "endpoint_url": s3.url,
            "allow_http": True,
            "region": "us-east-1",
            "credentials": {
                "access_key_id": {"env": "LAKEHOUSE_AWS_KEY_ID"},
                "secret_access_key": {"env": "LAKEHOUSE_AWS_SECRET"},
            },
        }
        path = root / "lakesync.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"Lakes on three clouds, lakehouse on s3://central-lakehouse/warehouse; config: {path}\n")
        os.environ.update(DEMO_ENV)

        outcome = sync(load_config(path))
        print(sync_summary(outcome.datasets, outcome.tables, outcome.checks, outcome.features))
        for failure in outcome.failures:
            print(f"  {failure}")
        return 0 if outcome.ok else 1
    finally:
        for server in servers:
            server.stop()
        print("\nThe emulators are stopped (their data is gone with them).")


if __name__ == "__main__":
    raise SystemExit(main())

"""Buckets and objects on the test servers, written with each provider's own SDK."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from azure.storage.blob import BlobServiceClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from lakesync.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY, Server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Bucket:
    """A bucket (or container) on one test server, and how to write into it."""

    provider: str
    name: str
    server: Server

    def put(self, key: str, data: bytes) -> None:
        if self.provider == "s3":
            s3_client(self.server).put_object(Bucket=self.name, Key=key, Body=data)
        elif self.provider == "azure":
            azure_service(self.server).get_container_client(self.name).upload_blob(key, data, overwrite=True)
        else:
            gcs_client(self.server).bucket(self.name).blob(key).upload_from_string(data)

    def lake(
        self, datasets: dict[str, Any], *, prefix: str = "", env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The lakesync.yaml entry of a lake on this bucket (credentials by variable name)."""
        env = env or {}
        common: dict[str, Any] = {
            "prefix": prefix,
            "endpoint_url": self.server.url,
            "allow_http": True,
            "datasets": datasets,
        }
        if self.provider == "s3":
            credentials = {
                "access_key_id": {"env": env.get("key", "LAKE_S3_KEY")},
                "secret_access_key": {"env": env.get("secret", "LAKE_S3_SECRET")},
            }
            return {
                "provider": "s3",
                "bucket": self.name,
                "region": "us-east-1",
                "credentials": credentials,
                **common,
            }
        if self.provider == "azure":
            credentials = {"account_key": {"env": env.get("key", "LAKE_AZURE_KEY")}}
            return {
                "provider": "azure",
                "account": AZURITE_ACCOUNT,
                "container": self.name,
                "credentials": credentials,
                **common,
            }
        return {"provider": "gcs", "bucket": self.name, "project": "lakesync-test", **common}


def s3_client(server: Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def azure_service(server: Server) -> Any:
    return BlobServiceClient(account_url=server.url, credential=AZURITE_KEY)


def gcs_client(server: Server) -> Any:
    return storage.Client(
        project="lakesync-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.url},
    )


def new_bucket(provider: str, server: Server) -> Bucket:
    name = unique("lake")
    if provider == "s3":
        s3_client(server).create_bucket(Bucket=name)
    elif provider == "azure":
        azure_service(server).create_container(name)
    else:
        gcs_client(server).create_bucket(name)
    return Bucket(provider, name, server)


def s3_lakehouse(server: Server, bucket: str) -> dict[str, Any]:
    return {
        "uri": f"s3://{bucket}/warehouse",
        "endpoint_url": server.url,
        "allow_http": True,
        "region": "us-east-1",
        "credentials": {
            "access_key_id": {"env": "LAKEHOUSE_KEY"},
            "secret_access_key": {"env": "LAKEHOUSE_SECRET"},
        },
    }


def azure_lakehouse(server: Server, container: str) -> dict[str, Any]:
    return {
        "uri": f"az://{container}/warehouse",
        "account": AZURITE_ACCOUNT,
        "endpoint_url": server.url,
        "allow_http": True,
        "credentials": {"account_key": {"env": "LAKEHOUSE_AZURE_KEY"}},
    }


def new_lakehouse(where: str, server: Server) -> tuple[str, dict[str, Any]]:
    """A new bucket (``s3``) or container (``azure``) and the lakesync.yaml lakehouse on it."""
    house = unique("lakehouse")
    if where == "s3":
        s3_client(server).create_bucket(Bucket=house)
        return house, s3_lakehouse(server, house)
    azure_service(server).create_container(house)
    return house, azure_lakehouse(server, house)

"""S3: lakes through a resource built on ``dagster_aws.s3.S3Resource``, and a lakehouse on S3."""

from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from lakesync.config.storage import S3Lake, S3LakehouseConfig
from lakesync.defs.lakes import env, names, warn_http
from lakesync.defs.resources import LakehouseResource
from lakesync.discover.stores import LakeStore
from lakesync.discover.stores.objectstore import Access
from lakesync.discover.stores.s3 import S3Store


class S3LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How to reach one S3 lake (secrets are ``dg.EnvVar`` fields of ``s3``)."""

    s3: S3Resource
    credential_names: list[str] = Field(default_factory=list)

    def store(self, name: str, lake: S3Lake) -> LakeStore:
        warn_http("lake", name, lake.endpoint_url)
        secrets = [
            s
            for s in (self.s3.aws_secret_access_key, self.s3.aws_session_token, self.s3.aws_access_key_id)
            if s
        ]
        endpoint = lake.endpoint_url or f"https://s3.{lake.region or 'us-east-1'}.amazonaws.com"
        return S3Store(
            name,
            client=self.s3.get_client(),
            bucket=lake.bucket,
            prefix=lake.prefix,
            access=Access(endpoint, self.credential_names, secrets),
        )


def lake_resource(lake: S3Lake) -> S3LakeResource:
    c = lake.credentials
    return S3LakeResource(
        s3=S3Resource(
            region_name=lake.region,
            endpoint_url=lake.endpoint_url,
            use_ssl=not (lake.endpoint_url or "").startswith("http://"),
            aws_access_key_id=env(c.access_key_id) if c else None,
            aws_secret_access_key=env(c.secret_access_key) if c else None,
            aws_session_token=env(c.session_token) if c else None,
            max_attempts=3,
        ),
        credential_names=names(c.access_key_id, c.secret_access_key, c.session_token) if c else [],
    )


class S3LakehouseResource(LakehouseResource):
    """A lakehouse on S3 (or an S3-compatible store); delta-rs commits with conditional puts."""

    region: str | None = None
    endpoint_url: str | None = None
    allow_http: bool = False
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None

    def storage_options(self) -> dict[str, str]:
        options = {
            "aws_region": self.region or "us-east-1",
            "aws_endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
            "allow_http": "true" if self.allow_http else None,
            "aws_allow_http": "true" if self.allow_http else None,
        }
        return {key: value for key, value in options.items() if value}


def lakehouse_resource(house: S3LakehouseConfig) -> S3LakehouseResource:
    c = house.credentials
    fields: dict[str, Any] = {
        "uri": house.uri,
        "region": house.region,
        "endpoint_url": house.endpoint_url,
        "allow_http": house.allow_http,
        "aws_access_key_id": env(c.access_key_id) if c else None,
        "aws_secret_access_key": env(c.secret_access_key) if c else None,
        "aws_session_token": env(c.session_token) if c else None,
    }
    return S3LakehouseResource(**{k: v for k, v in fields.items() if v is not None})

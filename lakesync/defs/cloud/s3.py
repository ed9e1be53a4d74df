"""S3 lakes: a resource built on ``dagster_aws.s3.S3Resource``."""

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from lakesync.config.models import S3Lake
from lakesync.defs.lakes import env, names, warn_http
from lakesync.discover.stores import LakeStore
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
            endpoint=endpoint,
            credential_names=self.credential_names,
            secrets=secrets,
        )


def resource(lake: S3Lake) -> S3LakeResource:
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

"""GCS lakes: a resource built on ``dagster_gcp.GCSResource``, plus the service-account key
from an environment variable and the endpoint it does not offer."""

import json
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account
from pydantic import Field

from lakesync.config.storage import GcsLake, GcsLakehouseConfig
from lakesync.defs.lakes import env, names, warn_http
from lakesync.defs.resources import LakehouseResource
from lakesync.discover.stores import LakeStore
from lakesync.discover.stores.gcs import GcsStore
from lakesync.discover.stores.objectstore import Access


class GcsLakeClient(GCSResource):
    """``GCSResource`` with a service-account key (its JSON, from a variable) and an endpoint."""

    service_account_json: str | None = Field(default=None, description="The key file's JSON")
    endpoint_url: str | None = None

    def get_client(self) -> Any:
        options = {"api_endpoint": self.endpoint_url} if self.endpoint_url else None
        if self.service_account_json:
            info = json.loads(self.service_account_json)
            credentials: Any = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
            return storage.Client(
                project=self.project or credentials.project_id,
                credentials=credentials,
                client_options=options,
            )
        if self.endpoint_url:  # an emulator: no Google credentials
            anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
            return storage.Client(
                project=self.project or "lakesync", credentials=anonymous, client_options=options
            )
        return storage.Client(project=self.project)


class GcsLakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How to reach one GCS lake (the key is a ``dg.EnvVar`` field of ``gcs``)."""

    gcs: GcsLakeClient
    credential_names: list[str] = Field(default_factory=list)

    def store(self, name: str, lake: GcsLake) -> LakeStore:
        warn_http("lake", name, lake.endpoint_url)
        secrets = [s for s in (self.gcs.service_account_json,) if s]
        return GcsStore(
            name,
            client=self.gcs.get_client(),
            bucket=lake.bucket,
            prefix=lake.prefix,
            access=Access(
                lake.endpoint_url or "https://storage.googleapis.com", self.credential_names, secrets
            ),
        )


def lake_resource(lake: GcsLake) -> GcsLakeResource:
    g = lake.credentials
    return GcsLakeResource(
        gcs=GcsLakeClient(
            project=lake.project,
            service_account_json=env(g.service_account_json) if g else None,
            endpoint_url=lake.endpoint_url,
        ),
        credential_names=names(g.service_account_json) if g else [],
    )


class GcsLakehouseResource(LakehouseResource):
    """A lakehouse in a GCS bucket (``gs://bucket/path``), through deltalake's object store."""

    service_account_json: str | None = None
    allow_http: bool = False

    def storage_options(self) -> dict[str, str]:
        options = {
            "google_service_account_key": self.service_account_json,
            "allow_http": "true" if self.allow_http else None,
        }
        return {key: value for key, value in options.items() if value}


def lakehouse_resource(house: GcsLakehouseConfig) -> GcsLakehouseResource:
    g = house.credentials
    fields: dict[str, Any] = {
        "uri": house.uri,
        "allow_http": house.allow_http,
        "service_account_json": env(g.service_account_json) if g else None,
    }
    return GcsLakehouseResource(**{k: v for k, v in fields.items() if v is not None})

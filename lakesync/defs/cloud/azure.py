"""Azure lakes (Blob, or ADLS Gen2 through the blob endpoint): a resource built on
``dagster_azure.blob.AzureBlobStorageResource``, plus the service principal it does not offer."""

from typing import Any

import dagster as dg
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient
from dagster_azure.blob import (
    AzureBlobStorageDefaultCredential,
    AzureBlobStorageKeyCredential,
    AzureBlobStorageResource,
    AzureBlobStorageSASTokenCredential,
)
from pydantic import Field

from lakesync.config.storage import AzureLake, AzureLakehouseConfig
from lakesync.defs.lakes import env, names, warn_http
from lakesync.defs.resources import LakehouseResource
from lakesync.discover.stores import LakeStore
from lakesync.discover.stores.azure import AzureStore
from lakesync.discover.stores.objectstore import Access


class AzureLakeClient(AzureBlobStorageResource):
    """``AzureBlobStorageResource`` with a service principal (client id, secret, tenant)."""

    client_id: str | None = None
    client_secret: str | None = None
    tenant_id: str | None = None

    def service(self) -> Any:
        if self.client_id and self.client_secret and self.tenant_id:
            credential: Any = ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret)
        else:
            credential = self._raw_credential()
        return BlobServiceClient(account_url=self.account_url, credential=credential)


class AzureLakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How to reach one Azure lake (secrets are ``dg.EnvVar`` fields of ``blob``)."""

    blob: AzureLakeClient
    credential_names: list[str] = Field(default_factory=list)

    def store(self, name: str, lake: AzureLake) -> LakeStore:
        warn_http("lake", name, lake.endpoint_url)
        credential = self.blob.credential
        secrets = [str(getattr(credential, f)) for f in ("key", "token") if getattr(credential, f, None)]
        secrets += [s for s in (self.blob.client_secret,) if s]
        container = self.blob.service().get_container_client(lake.container)
        return AzureStore(
            name,
            container=container,
            prefix=lake.prefix,
            access=Access(self.blob.account_url, self.credential_names, secrets),
        )


def lake_resource(lake: AzureLake) -> AzureLakeResource:
    a = lake.credentials
    credential: Any = AzureBlobStorageDefaultCredential()
    if a is not None and a.account_key is not None:
        credential = AzureBlobStorageKeyCredential(key=env(a.account_key))
    elif a is not None and a.sas_token is not None:
        credential = AzureBlobStorageSASTokenCredential(token=env(a.sas_token))
    return AzureLakeResource(
        blob=AzureLakeClient(
            account_url=lake.endpoint_url or f"https://{lake.account}.blob.core.windows.net",
            credential=credential,
            client_id=env(a.client_id) if a else None,
            client_secret=env(a.client_secret) if a else None,
            tenant_id=env(a.tenant_id) if a else None,
        ),
        credential_names=names(a.account_key, a.sas_token, a.client_id, a.client_secret, a.tenant_id)
        if a
        else [],
    )


class AzureLakehouseResource(LakehouseResource):
    """A lakehouse in an Azure storage container (``az://container/path``)."""

    account: str
    endpoint_url: str | None = None
    allow_http: bool = False
    account_key: str | None = None
    sas_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    tenant_id: str | None = None

    def storage_options(self) -> dict[str, str]:
        options = {
            "account_name": self.account,
            "account_key": self.account_key,
            "sas_key": self.sas_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "tenant_id": self.tenant_id,
            "endpoint": self.endpoint_url,
            "allow_http": "true" if self.allow_http else None,
        }
        return {key: value for key, value in options.items() if value}


def lakehouse_resource(house: AzureLakehouseConfig) -> AzureLakehouseResource:
    a = house.credentials
    fields: dict[str, Any] = {
        "uri": house.uri,
        "account": house.account,
        "endpoint_url": house.endpoint_url,
        "allow_http": house.allow_http,
        "account_key": env(a.account_key) if a else None,
        "sas_token": env(a.sas_token) if a else None,
        "client_id": env(a.client_id) if a else None,
        "client_secret": env(a.client_secret) if a else None,
        "tenant_id": env(a.tenant_id) if a else None,
    }
    return AzureLakehouseResource(**{k: v for k, v in fields.items() if v is not None})

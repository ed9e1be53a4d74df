"""Dagster resources: how ops and sensors reach the lakehouse (and, in lakes.py, each lake)."""

import re
from dataclasses import replace
from typing import Any

import dagster as dg

from lakesync.config.contracts import hashes_pii
from lakesync.config.models import AzureCredentials, GcsCredentials, LakesyncConfig, S3Credentials
from lakesync.defs.lakes import env
from lakesync.lakehouse import Lakehouse


class LakehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The unified Delta lakehouse every table, quarantine, ledger and drift log live in.

    Secrets are ``dg.EnvVar`` fields: read when a run starts, never stored or shown.
    """

    uri: str
    """A local folder (absolute), ``s3://bucket/path``, ``az://container/path`` or ``gs://bucket/path``."""
    region: str | None = None
    endpoint_url: str | None = None
    allow_http: bool = False
    account: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    azure_account_key: str | None = None
    azure_sas_token: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: str | None = None
    azure_tenant_id: str | None = None
    google_service_account_json: str | None = None

    def get(self) -> Lakehouse:
        return Lakehouse(uri=self.uri, storage_options=self.storage_options())

    def storage_options(self) -> dict[str, str]:
        """deltalake's options for this lakehouse (with the resolved secrets)."""
        scheme = self.uri.split("://", 1)[0] if "://" in self.uri else "file"
        options: dict[str, str | None] = {}
        if scheme == "s3":
            options = {
                "aws_region": self.region or "us-east-1",
                "aws_endpoint_url": self.endpoint_url,
                "aws_access_key_id": self.aws_access_key_id,
                "aws_secret_access_key": self.aws_secret_access_key,
                "aws_session_token": self.aws_session_token,
            }
        elif scheme in ("az", "abfs", "abfss"):
            options = {
                "account_name": self.account,
                "account_key": self.azure_account_key,
                "sas_key": self.azure_sas_token,
                "client_id": self.azure_client_id,
                "client_secret": self.azure_client_secret,
                "tenant_id": self.azure_tenant_id,
                "endpoint": self.endpoint_url,
            }
        elif scheme == "gs":
            options = {"google_service_account_key": self.google_service_account_json}
        if self.allow_http:
            options["allow_http"] = "true"
            options["aws_allow_http"] = "true" if scheme == "s3" else None
        return {key: value for key, value in options.items() if value}


class PiiKeyResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The secret ``pii: hash`` columns are hashed with (only syncs of such tables need it)."""

    key: str


PII_KEY = "pii_key"
"""The resource key of :class:`PiiKeyResource` (present when some column is hashed)."""


def pii_key_resource(config: LakesyncConfig) -> dict[str, PiiKeyResource]:
    """``{PII_KEY: resource}`` when some contract hashes a column, else nothing."""
    return {PII_KEY: PiiKeyResource(key=env(config.lakehouse.pii_key))} if hashes_pii(config) else {}


def lakehouse_resource(config: LakesyncConfig) -> LakehouseResource:
    """The lakehouse resource of a configuration, its secrets as ``dg.EnvVar``."""
    house = config.lakehouse
    fields: dict[str, Any] = {
        "uri": house.uri,
        "region": house.region,
        "endpoint_url": house.endpoint_url,
        "allow_http": house.allow_http,
        "account": house.account,
    }
    credentials = house.credentials
    if isinstance(credentials, S3Credentials):
        fields |= {
            "aws_access_key_id": env(credentials.access_key_id),
            "aws_secret_access_key": env(credentials.secret_access_key),
            "aws_session_token": env(credentials.session_token),
        }
    elif isinstance(credentials, AzureCredentials):
        fields |= {
            "azure_account_key": env(credentials.account_key),
            "azure_sas_token": env(credentials.sas_token),
            "azure_client_id": env(credentials.client_id),
            "azure_client_secret": env(credentials.client_secret),
            "azure_tenant_id": env(credentials.tenant_id),
        }
    elif isinstance(credentials, GcsCredentials):
        fields["google_service_account_json"] = env(credentials.service_account_json)
    return LakehouseResource(**{k: v for k, v in fields.items() if v is not None})


def open_lakehouse(config: LakesyncConfig, *, pii_key: bool = False) -> Lakehouse:
    """The lakehouse outside a run (the CLI): Dagster reads the secret variables now (the PII
    key only when asked, and only when some column is hashed)."""
    with lakehouse_resource(config).process_config_and_initialize_cm() as resource:
        lakehouse: Lakehouse = resource.get()
    for key_resource in pii_key_resource(config).values() if pii_key else ():
        with key_resource.process_config_and_initialize_cm() as initialized:
            lakehouse = replace(lakehouse, pii_key=initialized.key)
    return lakehouse


_UNSET = re.compile(r'environment variable "([^"]+)" which is not set')


def config_problem(exc: dg.DagsterInvalidConfigError) -> str:
    """What is wrong with a run's resources, in a sentence (a secret's variable name, never its value)."""
    unset = sorted(set(_UNSET.findall(str(exc))))
    if unset:
        return (
            f"the environment variable(s) {', '.join(unset)} named in lakesync.yaml as secrets "
            "(lake or lakehouse credentials; lakehouse.pii_key for `pii: hash` columns) are not set"
        )
    return str(exc).splitlines()[0]

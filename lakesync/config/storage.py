"""Where data lives: the lakes (one class per provider) and the lakehouse (one class per store).

Both are discriminated unions: a lake names its ``provider``; the lakehouse's store is told by
the scheme of its ``uri`` (a folder, ``s3://``, ``az://``, ``gs://``). A new provider is one
class here, one store in :mod:`lakesync.discover.stores` and one module in
:mod:`lakesync.defs.cloud` (its Dagster resources); nothing else branches on the provider.
Secrets are never values here, only the names of the environment variables holding them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator

from lakesync.config.datasets import ColumnName, Dataset, Name, StrictModel, resolve_local
from lakesync.config.discovery import DiscoverySettings
from lakesync.config.secrets import EnvSecret
from lakesync.config.units import parse_duration


class S3Credentials(StrictModel):
    access_key_id: EnvSecret
    secret_access_key: EnvSecret
    session_token: EnvSecret | None = None


class AzureCredentials(StrictModel):
    """An account key, a SAS token, or a service principal (client id, secret and tenant)."""

    account_key: EnvSecret | None = None
    sas_token: EnvSecret | None = None
    client_id: EnvSecret | None = None
    client_secret: EnvSecret | None = None
    tenant_id: EnvSecret | None = None


class GcsCredentials(StrictModel):
    service_account_json: EnvSecret
    """The service account's key file contents (JSON), not its path."""


Credentials = S3Credentials | AzureCredentials | GcsCredentials


def secret_names(credentials: StrictModel | None) -> list[str]:
    """The environment variable names some credentials come from (never their values)."""
    if credentials is None:
        return []
    values = (getattr(credentials, name) for name in type(credentials).model_fields)
    return [value.env for value in values if isinstance(value, EnvSecret)]


# -- lakes ------------------------------------------------------------------------------------
class LocalLake(StrictModel):
    """A folder on this machine or a mounted share (NFS, SMB)."""

    provider: Literal["local"]
    root: str
    """Folder holding the lake's files; relative paths are relative to the config file."""
    datasets: dict[Name, Dataset]
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    """Dagster owners of the lake's assets (emails or ``team:name``)."""
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    """How new files are found: listing (default) or storage events."""

    @field_validator("root")
    @classmethod
    def _root(cls, value: str, info: ValidationInfo) -> str:
        return resolve_local(value, info)

    @property
    def location(self) -> str:
        """Where the lake's files are, for people (never a secret)."""
        return self.root

    @property
    def secret_names(self) -> list[str]:
        return []


class CloudLake(StrictModel):
    """What every object-store lake has."""

    prefix: str = ""
    """Folder inside the bucket/container the dataset patterns are relative to."""
    endpoint_url: str | None = None
    """A non-default endpoint (MinIO, Ceph, R2, an emulator, a private endpoint)."""
    allow_http: bool = False
    """Allow a plain http endpoint (logged as a warning); https otherwise."""
    datasets: dict[Name, Dataset]
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    """How new files are found: listing (default) or storage events."""

    @property
    def secret_names(self) -> list[str]:
        """The environment variables this lake's credentials come from."""
        return secret_names(getattr(self, "credentials", None))


class S3Lake(CloudLake):
    """A bucket on S3 or an S3-compatible store."""

    provider: Literal["s3"]
    bucket: str = Field(min_length=1)
    region: str | None = None
    credentials: S3Credentials | None = None
    """Absent: the default chain (instance role, AWS_* variables, profile)."""

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


class AzureLake(CloudLake):
    """A container of an Azure storage account (Blob or ADLS Gen2, through the blob endpoint)."""

    provider: Literal["azure"]
    account: str = Field(min_length=1)
    container: str = Field(min_length=1)
    credentials: AzureCredentials | None = None
    """Absent: DefaultAzureCredential (managed identity, environment, CLI login)."""

    @property
    def location(self) -> str:
        return f"az://{self.account}/{self.container}/{self.prefix}"


class GcsLake(CloudLake):
    """A Google Cloud Storage bucket."""

    provider: Literal["gcs"]
    bucket: str = Field(min_length=1)
    project: str | None = None
    credentials: GcsCredentials | None = None
    """Absent: application default credentials."""

    @property
    def location(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


# One class per provider: a new store is one new class here and one in discover/stores.
Lake = Annotated[LocalLake | S3Lake | AzureLake | GcsLake, Field(discriminator="provider")]
AnyLake = LocalLake | S3Lake | AzureLake | GcsLake
PROVIDERS = ("local", "s3", "azure", "gcs")


# -- the lakehouse ----------------------------------------------------------------------------
class ProvenanceSettings(StrictModel):
    """The provenance columns every unified row carries (names configurable; ``false`` leaves
    ``lake``, ``batch`` or ``ingested_at`` out; ``file`` and ``row`` are always there: trace,
    erasure and merges rely on them)."""

    lake: ColumnName | Literal[False] = "_lakesync_lake"
    file: ColumnName = "_lakesync_file"
    """``<lake>/<path in the lake>`` of the file the row came from."""
    row: ColumnName = "_lakesync_row"
    """The row's record number in that file (1-based)."""
    batch: ColumnName | Literal[False] = "_lakesync_batch"
    """The dataset's batch number that committed the row (see ``lakesync audit``)."""
    ingested_at: ColumnName | Literal[False] = "_lakesync_ingested_at"

    def columns(self) -> list[str]:
        """The names of the columns that are on."""
        names = (self.file, self.row, self.lake, self.batch, self.ingested_at)
        return [n for n in names if isinstance(n, str)]


class RedisOnlineStore(StrictModel):
    """An online store on a Redis server (a feature's values per entity as hashes)."""

    redis: str = Field(pattern=r"^(rediss?|unix)://")
    """``redis://host:port/db`` (``rediss://`` for TLS), without a password in it."""
    password: EnvSecret | None = None
    """The server's password (``AUTH``), read from this environment variable."""
    username: str | None = None
    prefix: str = Field(default="lakesync", pattern=r"^[A-Za-z0-9_.-]+$")
    """Every key lakesync writes starts with ``<prefix>:`` (one server, several lakehouses)."""

    @field_validator("redis")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if "@" in value.split("//", 1)[-1].split("/", 1)[0]:
            msg = "put the password in password: {env: NAME}, not in the URL"
            raise ValueError(msg)
        return value


def _store_tag(value: Any) -> str:
    return "redis" if isinstance(value, dict | RedisOnlineStore) else "path"


OnlineStoreSetting = Annotated[
    Annotated[str, Tag("path")] | Annotated[RedisOnlineStore, Tag("redis")], Discriminator(_store_tag)
]
"""A SQLite file's path, or a Redis server (``{redis: URL, ...}``)."""


class LakehouseBase(StrictModel):
    """What every lakehouse has, wherever it is stored."""

    provider: ClassVar[str]
    credential_type: ClassVar[type[StrictModel] | None] = None
    uri: str
    """A local folder (relative to the config file), ``s3://bucket/path``, ``az://container/path``
    or ``gs://bucket/path``."""
    provenance: ProvenanceSettings = Field(default_factory=ProvenanceSettings)
    pii_key: EnvSecret = Field(default_factory=lambda: EnvSecret(env="LAKESYNC_PII_KEY"))
    """The secret of ``pii: hash`` columns (keyed SHA-256): the same everywhere, so a hashed key
    still joins across lakes and tables. Read only when some column is hashed."""
    online_store: OnlineStoreSetting | None = None
    """Where feature tables publish their latest values: a SQLite file (relative to the config
    file) or ``{redis: redis://host:port/db, password: {env: NAME}}``; default
    ``<uri>/_online/features.sqlite`` for a lakehouse on local disk, none for one on an object
    store unless set."""
    refresh_interval: float = 30.0
    """Seconds between the checks that refresh feature tables and the catalog after their inputs
    changed (the ``refresh_downstream`` sensor); accepts ``30s``, ``5m``."""

    @field_validator("refresh_interval", mode="before")
    @classmethod
    def _refresh_interval(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("online_store")
    @classmethod
    def _online_store(
        cls, value: str | RedisOnlineStore | None, info: ValidationInfo
    ) -> str | RedisOnlineStore | None:
        if isinstance(value, str):
            if value.startswith(("redis://", "rediss://")):
                msg = f"write a Redis online store as {{redis: {value.split('@')[-1]!r}}}"
                raise ValueError(msg)
            return resolve_local(value, info)
        return value

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str, info: ValidationInfo) -> str:
        return resolve_local(value, info)

    @property
    def scheme(self) -> str:
        return scheme_of(self.uri)

    @property
    def secret_names(self) -> list[str]:
        return secret_names(getattr(self, "credentials", None))


class LocalLakehouseConfig(LakehouseBase):
    """A lakehouse in a folder of this machine (or a mounted share)."""

    provider: ClassVar[str] = "local"


class CloudLakehouseConfig(LakehouseBase):
    """What every lakehouse on an object store has."""

    endpoint_url: str | None = None
    """A non-default endpoint (S3-compatible stores, an emulator, a private endpoint)."""
    allow_http: bool = False

    @field_validator("credentials", mode="before", check_fields=False)
    @classmethod
    def _fitting(cls, value: Any) -> Any:
        """Credentials of another store are named as such (not as unknown keys)."""
        expected = cls.credential_type
        if isinstance(value, dict) and expected is not None and not set(value) <= set(expected.model_fields):
            scheme = {"s3": "s3", "azure": "az", "gcs": "gs"}[cls.provider]
            msg = f"do not fit a {scheme}:// lakehouse (expected {', '.join(expected.model_fields)})"
            raise ValueError(msg)
        return value


class S3LakehouseConfig(CloudLakehouseConfig):
    """A lakehouse on S3 or an S3-compatible store (``s3://bucket/path``)."""

    provider: ClassVar[str] = "s3"
    credential_type: ClassVar[type[StrictModel] | None] = S3Credentials
    region: str | None = None
    credentials: S3Credentials | None = None


class AzureLakehouseConfig(CloudLakehouseConfig):
    """A lakehouse in an Azure storage container (``az://container/path``)."""

    provider: ClassVar[str] = "azure"
    credential_type: ClassVar[type[StrictModel] | None] = AzureCredentials
    account: str = Field(min_length=1)
    """The storage account."""
    credentials: AzureCredentials | None = None


class GcsLakehouseConfig(CloudLakehouseConfig):
    """A lakehouse in a Google Cloud Storage bucket (``gs://bucket/path``)."""

    provider: ClassVar[str] = "gcs"
    credential_type: ClassVar[type[StrictModel] | None] = GcsCredentials
    credentials: GcsCredentials | None = None


LAKEHOUSE_SCHEMES = {"file": "local", "s3": "s3", "az": "azure", "gs": "gcs"}
"""URI scheme -> the lakehouse class's provider tag."""


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else "file"


def _lakehouse_tag(value: Any) -> str | None:
    uri = value.get("uri") if isinstance(value, dict) else getattr(value, "uri", None)
    if not isinstance(uri, str):
        return "local"  # reported as a missing uri by the local class
    return LAKEHOUSE_SCHEMES.get(scheme_of(uri))


LakehouseConfig = Annotated[
    Annotated[LocalLakehouseConfig, Tag("local")]
    | Annotated[S3LakehouseConfig, Tag("s3")]
    | Annotated[AzureLakehouseConfig, Tag("azure")]
    | Annotated[GcsLakehouseConfig, Tag("gcs")],
    Discriminator(
        _lakehouse_tag,
        custom_error_type="lakehouse_scheme",
        custom_error_message="is not supported (a folder, s3://, az:// or gs://)",
    ),
]
AnyLakehouse = LocalLakehouseConfig | S3LakehouseConfig | AzureLakehouseConfig | GcsLakehouseConfig

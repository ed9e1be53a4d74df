"""The typed shape of ``lakesync.yaml``.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
setting. Cross-references (a dataset naming a table that does not exist, a key that is not a
contract column) are checked in :mod:`lakesync.config.rules` so that every problem is reported
with its key path in one pass.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lakesync.config.datatypes import parse_type
from lakesync.config.units import parse_duration, parse_fraction, parse_size

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
"""Lake, dataset, table and column names: letters, digits and underscores, starting with a letter."""

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Format = Literal["parquet", "csv", "ndjson", "json"]
DriftPolicy = Literal["evolve", "rescue", "quarantine", "fail"]
WriteMode = Literal["append", "merge"]
PiiTreatment = Literal["hash", "mask", "drop"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_local(value: str, info: ValidationInfo) -> str:
    """Resolve a local path against the folder of the config file it was written in."""
    if "://" in value:
        return value
    base = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return str(path.resolve()) if base is not None else str(path)


class SensorSettings(StrictModel):
    """How the sensor of one lake dataset watches for new files."""

    enabled: bool = True
    """Run the sensor by default (autonomous sync); ``false`` leaves it stopped."""
    interval: float = 30.0
    """Seconds between ticks; accepts ``30s``, ``5m``."""
    max_files: int = Field(default=1000, gt=0)
    """At most this many files in one ingestion run (one Delta commit)."""
    max_bytes: int = 1_000_000_000
    """At most this many bytes in one ingestion run; accepts ``512MB``, ``1GB``."""

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _max_bytes(cls, value: Any) -> int:
        return parse_size(value)


class FormatOptions(StrictModel):
    """Options of the file reader; which ones apply depends on the dataset's format."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    """CSV field separator."""
    quote: str | None = Field(default='"', min_length=1, max_length=1)
    """CSV quote character; ``null`` disables quoting."""
    header: bool = True
    """CSV: the first line names the columns (otherwise columns are ``column_1``...)."""
    encoding: str = Field(default="utf-8", validate_default=True)
    """CSV text encoding, any Python codec name (utf8, latin1, cp1252, utf16...)."""
    null_values: list[str] = Field(default_factory=lambda: [""])
    """CSV strings read as null."""
    timestamp_format: str | None = None
    """strftime format of timestamps in text (CSV, JSON), e.g. ``%m/%d/%Y %H:%M``; default: ISO 8601."""
    date_format: str | None = None
    """strftime format of dates in text, e.g. ``%d.%m.%Y``; default: ISO 8601."""

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            msg = f"{value!r} is not a known text encoding (use e.g. utf8, latin1, cp1252)"
            raise ValueError(msg) from None


CSV_ONLY_OPTIONS = ("delimiter", "quote", "header", "encoding", "null_values")


ChangedPolicy = Literal["ignore", "reingest"]


class FreshnessSettings(StrictModel):
    """How stale a lake dataset may get before its freshness check fails."""

    max_lag: float | None = None
    """Longest acceptable time since the newest file landed *and* since the last successful
    ingestion, e.g. ``2h``; unset: the check reports both ages and passes."""

    @field_validator("max_lag", mode="before")
    @classmethod
    def _max_lag(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


class VolumeSettings(StrictModel):
    """Rows per batch and per day, judged against the dataset's recent history."""

    tolerance: float = 0.5
    """How far (share of the median, e.g. ``50%``) a batch or a day may be from the recent median."""
    min_history: int = Field(default=5, ge=1)
    """Batches (and days) of history needed before the check judges; until then it says so."""
    history: int = Field(default=30, ge=2)
    """How many recent batches (and days) the median is taken over."""

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value: Any) -> float:
        share = parse_fraction(value) if isinstance(value, str) else float(value)
        if share < 0:
            msg = f"{value!r} must not be negative"
            raise ValueError(msg)
        return share


class Dataset(StrictModel):
    """One kind of file in a lake, feeding one unified table."""

    pattern: str = Field(min_length=1)
    """Glob relative to the lake root; ``**`` matches any number of folders."""
    format: Format
    """File format; ``.gz`` files are decompressed by extension."""
    table: Name
    """The unified table this dataset feeds."""
    options: FormatOptions = Field(default_factory=FormatOptions)
    columns: dict[ColumnName, Name] = Field(default_factory=dict)
    """Source column name -> canonical (contract) column name."""
    drift: DriftPolicy | None = None
    """Overrides the table's drift policy for this dataset."""
    timezone: str = "UTC"
    """Zone of timestamps written without an offset."""
    sensor: SensorSettings = Field(default_factory=SensorSettings)
    ordered_keys: bool = False
    """Keys only grow (e.g. dated paths): listings start after the last key ingested."""
    changed: ChangedPolicy = "ignore"
    """A file seen again with new content (size, mtime or etag): ``ignore`` (report it) or
    ``reingest`` (upsert it again; merge tables only)."""
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    volume: VolumeSettings = Field(default_factory=VolumeSettings)
    description: str | None = None


class EnvSecret(StrictModel):
    """A secret, read from this environment variable by the Dagster resource that uses it.

    The value is never written in lakesync.yaml, in run configuration, metadata or logs.
    """

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


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


class S3Lake(CloudLake):
    """A bucket on S3 or an S3-compatible store."""

    provider: Literal["s3"]
    bucket: str = Field(min_length=1)
    region: str | None = None
    credentials: S3Credentials | None = None
    """Absent: the default chain (instance role, AWS_* variables, profile)."""


class AzureLake(CloudLake):
    """A container of an Azure storage account (Blob or ADLS Gen2, through the blob endpoint)."""

    provider: Literal["azure"]
    account: str = Field(min_length=1)
    container: str = Field(min_length=1)
    credentials: AzureCredentials | None = None
    """Absent: DefaultAzureCredential (managed identity, environment, CLI login)."""


class GcsLake(CloudLake):
    """A Google Cloud Storage bucket."""

    provider: Literal["gcs"]
    bucket: str = Field(min_length=1)
    project: str | None = None
    credentials: GcsCredentials | None = None
    """Absent: application default credentials."""


class LocalLake(StrictModel):
    """A folder on this machine or a mounted share (NFS, SMB)."""

    provider: Literal["local"]
    root: str
    """Folder holding the lake's files; relative paths are relative to the config file."""
    datasets: dict[Name, Dataset]
    description: str | None = None
    owners: list[str] = Field(default_factory=list)
    """Dagster owners of the lake's assets (emails or ``team:name``)."""

    @field_validator("root")
    @classmethod
    def _root(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_local(value, info)


# One class per provider: a new store is one new class here and one in discover/stores.
Lake = Annotated[LocalLake | S3Lake | AzureLake | GcsLake, Field(discriminator="provider")]
PROVIDERS = ("local", "s3", "azure", "gcs")


class Provenance(StrictModel):
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


class Lakehouse(StrictModel):
    """Where the unified Delta tables live."""

    uri: str
    """A local folder (relative to the config file), ``s3://bucket/path``, ``az://container/path``
    or ``gs://bucket/path``."""
    credentials: S3Credentials | AzureCredentials | GcsCredentials | None = None
    region: str | None = None
    account: str | None = None
    """Azure: the storage account of an ``az://`` lakehouse."""
    provenance: Provenance = Field(default_factory=Provenance)
    pii_key: EnvSecret = Field(default_factory=lambda: EnvSecret(env="LAKESYNC_PII_KEY"))
    """The secret of ``pii: hash`` columns (keyed SHA-256): the same everywhere, so a hashed key
    still joins across lakes and tables. Read only when some column is hashed."""
    endpoint_url: str | None = None
    allow_http: bool = False

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str, info: ValidationInfo) -> str:
        return _resolve_local(value, info)

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0] if "://" in self.uri else "file"


class StrLength(StrictModel):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class Checks(StrictModel):
    """Value checks of one column; each becomes a pandera check."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    isin: list[Any] | None = None
    regex: str | None = None
    str_length: StrLength | None = None


class MaskSettings(StrictModel):
    """What ``pii: mask`` keeps of a value; the rest becomes ``***``."""

    keep_prefix: int = Field(default=0, ge=0)
    keep_suffix: int = Field(default=0, ge=0)


class ColumnSpec(StrictModel):
    type: str
    """int8..int64, float32, float64, bool, string, date, datetime or decimal(p,s)."""
    nullable: bool = True
    unique: bool = False
    """No two rows of one file share a value (later duplicates are quarantined)."""
    checks: Checks = Field(default_factory=Checks)
    description: str | None = None
    subject_key: Name | None = None
    """The data subject this column identifies (e.g. ``customer``): `lakesync erase --subject
    customer=...` deletes the rows holding that value, in every table marking the same subject."""
    pii: PiiTreatment | None = None
    """Personal data, treated before anything is written (table, quarantine, rescued data, audit,
    Dagster metadata): ``hash`` (keyed SHA-256, hex), ``mask`` (keeps ``mask``'s prefix/suffix)
    or ``drop`` (checked by the contract, never stored)."""
    mask: MaskSettings | None = None

    @model_validator(mode="after")
    def _mask_needs_pii_mask(self) -> ColumnSpec:
        if self.mask is not None and self.pii != "mask":
            msg = "`mask` settings apply to `pii: mask` only"
            raise ValueError(msg)
        return self

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return parse_type(value).name


class Contract(StrictModel):
    """Either inline ``columns`` or a pandera polars ``DataFrameModel`` named by import path."""

    columns: dict[Name, ColumnSpec] | None = None
    model: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``package.module:ClassName`` of a ``pandera.polars.DataFrameModel``."""


class Maintenance(StrictModel):
    """The table's maintenance schedule: OPTIMIZE (compaction) then VACUUM."""

    enabled: bool = True
    """Run the schedule by default."""
    cron: str = "0 3 * * *"
    """When, as a cron expression (UTC); default 03:00 every day."""
    optimize: bool = True
    """Compact small files into larger ones."""
    vacuum: bool = True
    """Delete files no version within ``retention`` needs."""
    retention: float = 7 * 86400.0
    """Time travel kept by VACUUM, e.g. ``7d`` (Delta's default); shorter needs care: readers of
    older versions fail."""

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> float:
        return parse_duration(value)


class Table(StrictModel):
    """A unified Delta table and its contract."""

    contract: Contract
    mode: WriteMode = "append"
    """``append`` adds rows; ``merge`` upserts on ``keys``."""
    keys: list[Name] = Field(default_factory=list)
    latest_by: Name | None = None
    """Merge tables: the column saying which version of a key is the latest (e.g. updated_at);
    without it the most recently landed file wins."""
    drift: DriftPolicy = "evolve"
    partition_by: list[Name] = Field(default_factory=list)
    max_failed_rows: float = 0.05
    """Share of a run's rows that may fail the contract (they are quarantined, the check warns)
    before the contract check fails with ERROR and blocks downstream assets; ``5%`` or ``0.05``."""
    expectations: str | None = None
    """A Great Expectations (1.x) suite as JSON, run on every committed version as an asset check;
    relative to the config file."""
    maintenance: Maintenance = Field(default_factory=Maintenance)
    description: str | None = None

    @field_validator("max_failed_rows", mode="before")
    @classmethod
    def _max_failed_rows(cls, value: Any) -> float:
        return parse_fraction(value)

    @field_validator("expectations")
    @classmethod
    def _expectations(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve_local(value, info)


AGGREGATIONS = ("count", "sum", "mean", "min", "max", "n_unique", "first", "last")
AGGREGATION = re.compile(r"^\s*(" + "|".join(AGGREGATIONS) + r")\(\s*([A-Za-z][A-Za-z0-9_]*)?\s*\)\s*$")


class Feature(StrictModel):
    """A downstream table computed with polars from unified tables, kept in sync with them.

    Either ``group_by`` + ``aggregations`` (one input), or ``function``: ``package.module:name``
    of a function taking ``{table: polars.LazyFrame}`` and returning a ``LazyFrame``.
    """

    inputs: list[Name] = Field(min_length=1)
    """The unified tables it is computed from."""
    group_by: list[Name] = Field(default_factory=list)
    aggregations: dict[Name, str] = Field(default_factory=dict)
    """Output column -> ``count()``, ``sum(col)``, ``mean(col)``, ``min(col)``, ``max(col)``,
    ``n_unique(col)``, ``first(col)`` or ``last(col)``."""
    function: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    description: str | None = None

    @field_validator("aggregations")
    @classmethod
    def _aggregations(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            match = AGGREGATION.match(text)
            if match is None or (match.group(1) != "count" and not match.group(2)):
                known = ", ".join(a + "(col)" for a in AGGREGATIONS)
                msg = f"{name}: {text!r} is not an aggregation (use {known})"
                raise ValueError(msg)
        return value


class LakesyncConfig(StrictModel):
    """The whole of ``lakesync.yaml``."""

    lakehouse: Lakehouse
    lakes: dict[Name, Lake]
    tables: dict[Name, Table]
    features: dict[Name, Feature] = Field(default_factory=dict)

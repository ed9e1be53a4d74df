"""The typed shape of one lake dataset in ``lakesync.yaml`` (and the base every model shares).

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
setting. Cross-references (a dataset naming a table that does not exist, a key that is not a
contract column) are checked in :mod:`lakesync.config.rules` so that every problem is reported
with its key path in one pass.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from lakesync.config.units import parse_duration, parse_fraction, parse_size

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
"""Lake, dataset, table and column names: letters, digits and underscores, starting with a letter."""

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Owner = Annotated[str, StringConstraints(pattern=r"^(team:[A-Za-z0-9_.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)$")]
"""An asset owner, as Dagster takes them: an email address or ``team:<name>``."""
TagKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,63}$")]
TagValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{0,63}$")]
"""Asset tags, as Dagster takes them: letters, digits, ``_``, ``.`` and ``-``, at most 63."""
Format = Literal["parquet", "csv", "ndjson", "json"]
DriftPolicy = Literal["evolve", "rescue", "quarantine", "fail"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_local(value: str, info: ValidationInfo) -> str:
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
    max_listed: int | None = Field(default=1_000_000, gt=0)
    """At most this many files listed by one tick; the next tick lists on after the last one, so
    a lake of millions of files is gone through a page a tick (each tick's cost bounded; a new
    file is found within one pass). ``null``: the whole listing every tick. Not for
    ``ordered_keys`` (listed after the greatest known key) nor events mode (nothing listed);
    ``lakesync sync`` lists whole."""

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
BadRecords = Literal["quarantine_row", "quarantine_file"]


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
    bad_records: BadRecords = "quarantine_row"
    """A record that cannot be parsed (a malformed JSON line, a CSV record with more fields than
    the header): ``quarantine_row`` puts that record aside (with its line and text) and ingests the
    file's others; ``quarantine_file`` puts the whole file aside."""
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
    owners: list[Owner] = Field(default_factory=list)
    """Who to ask about this dataset: emails or ``team:<name>`` (the catalog and Dagster show them)."""
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    """Tags of the dataset's asset (``tag:`` selections in Dagster, ``lakesync catalog search --tag``)."""

"""The typed shape of ``lakesync.yaml``: tables, their contracts, features, and the whole file.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored
setting. Cross-references (a dataset naming a table that does not exist, a key that is not a
contract column) are checked in :mod:`lakesync.config.rules` so that every problem is reported
with its key path in one pass.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lakesync.config.datasets import DriftPolicy, Name, Owner, StrictModel, TagKey, TagValue, resolve_local
from lakesync.config.datatypes import parse_type
from lakesync.config.storage import Lake, LakehouseConfig
from lakesync.config.units import parse_duration, parse_fraction

WriteMode = Literal["append", "merge"]
PiiTreatment = Literal["hash", "mask", "drop"]


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


class RenameAutonomy(StrictModel):
    """When lakesync may approve a probable rename by itself (off unless set)."""

    auto_approve_above: float = Field(gt=0, le=1)
    """The rename's score (name similarity and value overlap, 0 to 1) must be above this."""
    min_margin: float = Field(ge=0, le=1)
    """... and above the next candidate's score by at least this much."""


class Autonomy(StrictModel):
    renames: RenameAutonomy | None = None
    """Never for key, ``latest_by``, ``subject_key`` or ``pii`` columns, nor a type that may
    not fit (a narrowing), nor a file with any other drift."""
    new_datasets: Literal["propose", "auto"] | None = None
    """Files in a lake feeding this table that no dataset matches: ``propose`` has `lakesync
    sync` say what they are and what `lakesync scan` proposes; ``auto`` also lets lakesync add a
    dataset into this table itself where the evidence is overwhelming
    (:mod:`lakesync.coldstart.adopt`). Off unless set."""


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
    autonomy: Autonomy = Field(default_factory=Autonomy)
    """What lakesync may decide about drift by itself (``lakesync drift revert`` undoes it)."""
    owners: list[Owner] = Field(default_factory=list)
    """Who to ask about this table: emails or ``team:<name>``."""
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    """Tags of the table's asset."""
    max_runtime: float = 3600.0
    """An ingestion run of this table still going after this long (``45m``, ``2h``) is canceled
    by Dagster's run monitoring (the ``dagster/max_runtime`` tag), so a run whose worker died
    cannot hold the table's one-run slot for ever; the next run finishes its batch."""

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _max_runtime(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("max_failed_rows", mode="before")
    @classmethod
    def _max_failed_rows(cls, value: Any) -> float:
        return parse_fraction(value)

    @field_validator("expectations")
    @classmethod
    def _expectations(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else resolve_local(value, info)


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
    entity: list[Name] = Field(default_factory=list)
    """A ``function`` feature's entity: the columns that identify one row of its result (one row
    per entity). With it the table keeps each entity's values over time (a build appends only
    the entities whose values changed) and the latest values are served online. An aggregation's
    entity is its ``group_by``."""
    description: str | None = None
    owners: list[Owner] = Field(default_factory=list)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    timestamp: Name | None = None
    """The input's event-time column (e.g. ``ordered_at``): with it, values *as of* any time can
    be read back (``lakesync features training-set``), never computed from later rows. The
    entity is ``group_by``."""
    ttl: float | None = None
    """How long an entity's values stay valid after its latest event (``30d``, ``12h``): in a
    training set, a label more than this after the entity's last event time gets nulls (as in
    Feast), not values that old. Needs ``timestamp``."""
    online: bool = True
    """Publish the latest values per entity to the online store after each build."""
    max_runtime: float = 3600.0
    """A run of this feature still going after this long is canceled by run monitoring."""

    @property
    def entity_keys(self) -> list[str]:
        """The entity: ``group_by`` of an aggregation, ``entity`` of a function (may be empty)."""
        return list(self.group_by or self.entity)

    @field_validator("max_runtime", mode="before")
    @classmethod
    def _max_runtime(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _ttl_needs_timestamp(self) -> Feature:
        if self.ttl is not None and self.timestamp is None:
            msg = "`ttl` needs `timestamp` (the input's event-time column the ttl is counted from)"
            raise ValueError(msg)
        return self

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

    lakehouse: LakehouseConfig
    lakes: dict[Name, Lake]
    tables: dict[Name, Table]
    features: dict[Name, Feature] = Field(default_factory=dict)

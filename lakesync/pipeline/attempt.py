"""The values one attempt at a round works with, and what makes the next attempt different."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from lakesync.commit.delta import arrow_schema, output_schema, table_polars_schema
from lakesync.conform.drift import DriftReport
from lakesync.conform.target import TargetSchema, target_schema
from lakesync.pipeline.context import TableContext
from lakesync.state.values import BatchPlan, FileOutcome


@dataclass(frozen=True)
class Shape:
    """The columns an attempt writes."""

    target: TargetSchema
    """The contract's columns and those drift added (this round's additions included)."""
    base: TargetSchema
    """The table as it was before this round: drift is reported against it."""
    columns: tuple[str, ...]
    """Output columns, in order (stored personal data and provenance included)."""
    arrow: pa.Schema
    """The Arrow schema every written batch has."""


@dataclass(frozen=True)
class Redo:
    """Why a round must be attempted again, and what to do differently."""

    excluded: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(dataset, path) -> why: files found unreadable after some of their rows were streamed."""
    added: Mapping[str, pl.DataType] = field(default_factory=dict)
    """Columns drift adds to the table (policy evolve, or an approved drift)."""
    stopped: Mapping[str, tuple[str, DriftReport]] = field(default_factory=dict)
    """Dataset -> (reason, report): datasets stopped by unreviewed drift (policy fail)."""
    tolerant: frozenset[tuple[str, str]] = frozenset()
    """(dataset, path) of files to read record by record (a record that cannot be parsed was
    found after some of their rows were streamed)."""
    renamed: Mapping[str, tuple[str, DriftReport]] = field(default_factory=dict)
    """Drift event id -> (dataset, report): renames lakesync approves itself (``autonomy``)
    before the round is read again with them mapped."""

    def merged(self, other: Redo) -> Redo:
        return Redo(
            excluded={**self.excluded, **other.excluded},
            added={**self.added, **other.added},
            stopped={**self.stopped, **other.stopped},
            tolerant=self.tolerant | other.tolerant,
            renamed={**self.renamed, **other.renamed},
        )


@dataclass(frozen=True)
class Attempt:
    """One attempt at committing a round, against one snapshot of the table."""

    snapshot: DeltaTable | None
    """The table as the attempt found it (``None`` only for a query's read of a table not created
    yet: every commit is made against a snapshot)."""
    shape: Shape
    write: tuple[BatchPlan, ...]
    """Batches the table does not hold yet: their rows are committed."""
    done: tuple[BatchPlan, ...]
    """Batches the table already holds (a retried run): read again for their outcomes only."""
    redo: Redo
    ingested_at: datetime
    table_values: Callable[[str], pl.Series | None]
    """A sample of a table column's values (for rename evidence)."""

    @property
    def plans(self) -> tuple[BatchPlan, ...]:
        return (*self.write, *self.done)


@dataclass(frozen=True)
class FileResult:
    """What one file gave in an attempt."""

    dataset: str
    outcome: FileOutcome | None
    """``None`` only when ``redo`` is set."""
    records: tuple[pl.DataFrame, ...] = ()
    """Its quarantine records."""
    redo: Redo | None = None
    """Set when the attempt cannot write this file as it stands: the round is redone."""


def attempt_shape(
    ctx: TableContext, snapshot: DeltaTable | None, *, rescue: bool, added: Mapping[str, pl.DataType]
) -> Shape:
    """The columns an attempt against ``snapshot`` (the table as it is, or none yet) writes:
    the contract's, those earlier drift added, ``added``; personal data as stored, provenance."""
    rules = ctx.rules
    current = table_polars_schema(snapshot)
    base = target_schema(
        ctx.table.contract.contract, current, rescue=rescue, provenance=rules.provenance.names
    )
    target = base.with_added(added)
    schema = output_schema(target, rules.pii, rules.provenance)
    return Shape(target, base, tuple(schema), rules.pii.marked(arrow_schema(schema)))


def value_sampler(snapshot: DeltaTable | None) -> Callable[[str], pl.Series | None]:
    """A sample of a table column's values (for rename evidence), read once per column."""
    cache: dict[str, pl.Series | None] = {}

    def values(column: str) -> pl.Series | None:
        if snapshot is None:
            return None
        if column not in cache:
            try:
                sample = snapshot.to_pyarrow_dataset().head(2000, columns=[column])
            except (pa.ArrowInvalid, KeyError, ValueError):
                cache[column] = None
            else:
                frame = pl.from_arrow(sample)
                cache[column] = frame[column] if isinstance(frame, pl.DataFrame) else None
        return cache[column]

    return values

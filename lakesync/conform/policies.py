"""Drift policies as objects: what to do with a file whose schema drifted.

The orchestrator never compares policy names: it asks the dataset's policy. Each policy says
how values that do not fit are treated (:attr:`DriftPolicy.rescues_values`,
:attr:`DriftPolicy.rescues_unknown`), whether unreviewed drift stops the dataset, and, for one
file's :class:`~lakesync.conform.drift.DriftReport`, the :class:`DriftAction` to take. A drift a
reviewer approved is accepted (its columns added, its renames mapped) whatever the policy; a
rejected one quarantines the file.

A new policy is one class here, registered in :data:`POLICIES` (and its name added to
``DriftPolicy`` in :mod:`lakesync.config.datasets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import polars as pl

from lakesync.conform.drift import DriftReport

ActionKind = Literal["accept", "add_columns", "quarantine_file", "stop_dataset", "auto_rename"]


@dataclass(frozen=True)
class Decisions:
    """What reviewers decided about a dataset's drift events (``lakesync drift approve|reject``)."""

    approved: frozenset[str] = frozenset()
    rejected: dict[str, str] = field(default_factory=dict)
    """Event id -> who rejected it and when, for the quarantine reason."""
    renames: dict[str, str] = field(default_factory=dict)
    """Approved renames: source column -> canonical column."""

    def status(self, event_id: str) -> Literal["approved", "rejected"] | None:
        if event_id in self.approved:
            return "approved"
        if event_id in self.rejected:
            return "rejected"
        return None


@dataclass(frozen=True)
class FileDrift:
    """One file's drift, as a policy sees it."""

    event: str
    """The drift event's id (``lakesync drift approve <event>``)."""
    where: str
    """``<lake>/<path>`` of the file, for messages."""
    report: DriftReport
    added: Mapping[str, pl.DataType]
    """Columns the file has and the table does not, with their types in the file."""
    known: frozenset[str]
    """Columns this attempt already writes (added ones included)."""


AUTO_ACTOR = "lakesync (auto)"
"""Who a decision lakesync took by itself is recorded as taken by."""


@dataclass(frozen=True)
class AutoRenames:
    """The table's ``autonomy.renames``: when a probable rename is approved without a person."""

    above: float
    margin: float
    never: frozenset[str]
    """Columns never mapped by lakesync itself: keys, ``latest_by``, subject keys, personal data."""

    def approves(self, report: DriftReport) -> dict[str, str] | None:
        """Source -> canonical names of the renames to approve, when the file's drift is nothing
        but such renames (their added and missing columns), each confident and safe."""
        renames = [c for c in report.changes if c.change == "renamed"]
        if not renames:
            return None
        sources = {str(c.evidence["source_column"]) for c in renames}
        targets = {c.column for c in renames}
        for change in report.changes:
            explained = (change.change == "added" and change.column in sources) or (
                change.change == "missing" and change.column in targets
            )
            if change.change not in ("renamed", "reordered", "widened") and not explained:
                return None  # other drift: a person decides
        for rename in renames:
            evidence = rename.evidence
            if rename.column in self.never or not _fits(rename.source_type, rename.table_type):
                return None
            if (
                float(evidence.get("score", 0)) <= self.above
                or float(evidence.get("margin", 0)) < self.margin
            ):
                return None
        return {str(c.evidence["source_column"]): c.column for c in renames}


def _fits(source: str | None, target: str | None) -> bool:
    """The source's type is the column's, widens to it without loss, or is text (parsed per value)."""
    from lakesync.config.datatypes import parse_type  # noqa: PLC0415 - light, and only here
    from lakesync.conform.drift import is_safe_widening  # noqa: PLC0415

    if source is None or target is None or source in (target, "string"):
        return True
    try:
        return is_safe_widening(parse_type(source).dtype, parse_type(target).dtype)
    except ValueError:
        return False


@dataclass(frozen=True)
class DriftAction:
    """What to do with a drifted file."""

    kind: ActionKind
    actions: tuple[str, ...] = ()
    """What lakesync did about it, for the report (``added column 'channel' to the table``)."""
    reason: str | None = None
    """Why the file is quarantined or the dataset stopped."""
    columns: Mapping[str, pl.DataType] = field(default_factory=dict)
    """``add_columns``: the columns the table must gain before the file can be written."""
    renames: Mapping[str, str] = field(default_factory=dict)
    """``auto_rename``: the renames lakesync approves itself before the file is read again."""


class DriftPolicy:
    """Base of the drift policies; see the module docstring."""

    name: ClassVar[str]
    rescues_values: ClassVar[bool] = False
    """A value that does not fit its (nullable) column moves into ``_rescued_data``."""
    rescues_unknown: ClassVar[bool] = False
    """Columns the table does not have move into ``_rescued_data`` (instead of joining it)."""
    stops_dataset: ClassVar[bool] = False
    """Unreviewed drift stops the dataset until someone reviews it."""

    def decide(self, drift: FileDrift, decisions: Decisions) -> DriftAction:
        """The action for a file whose drift changes the table's shape."""
        decision = decisions.status(drift.event)
        if decision == "rejected":
            who = decisions.rejected[drift.event]
            return DriftAction(
                "quarantine_file",
                (f"quarantined the file: drift {drift.event} rejected",),
                reason=f"schema drift {drift.event} was rejected ({who}): {drift.report.summary()}",
            )
        if decision == "approved":
            return _evolve(drift, (f"accepted: drift {drift.event} was approved",))
        return self.unreviewed(drift)

    def unreviewed(self, drift: FileDrift) -> DriftAction:
        raise NotImplementedError


def _missing(drift: FileDrift) -> tuple[str, ...]:
    return tuple(
        f"filled missing column {c.column!r} with nulls where allowed"
        for c in drift.report.changes
        if c.change == "missing"
    )


def _evolve(drift: FileDrift, accepted: tuple[str, ...] = ()) -> DriftAction:
    """Add the file's new columns to the table (nullable), then take the file."""
    absent = {name: dtype for name, dtype in drift.added.items() if name not in drift.known}
    if absent:
        return DriftAction("add_columns", columns=absent)
    added = tuple(
        f"added column {c.column!r} ({c.source_type}) to the table"
        for c in drift.report.changes
        if c.change == "added"
    )
    return DriftAction("accept", (*accepted, *added, *_missing(drift)))


class Evolve(DriftPolicy):
    """New columns join the table (nullable); values that do not fit go to ``_rescued_data``."""

    name = "evolve"
    rescues_values = True

    def unreviewed(self, drift: FileDrift) -> DriftAction:
        return _evolve(drift)


class Rescue(DriftPolicy):
    """The table keeps its shape: new columns and values that do not fit go to ``_rescued_data``."""

    name = "rescue"
    rescues_values = True
    rescues_unknown = True

    def unreviewed(self, drift: FileDrift) -> DriftAction:
        rescued = (f"rescued {', '.join(drift.added)} into _rescued_data",) if drift.added else ()
        return DriftAction("accept", (*rescued, *_missing(drift)))


class Quarantine(DriftPolicy):
    """A drifted file goes to quarantine whole, until the drift is reviewed."""

    name = "quarantine"

    def unreviewed(self, drift: FileDrift) -> DriftAction:
        report = drift.report
        reason = f"schema drift {drift.event} (policy quarantine): {report.summary()}; {report.suggestion()}"
        return DriftAction("quarantine_file", ("quarantined the file",), reason=reason)


class Fail(DriftPolicy):
    """A drifted file stops the dataset until the drift is reviewed."""

    name = "fail"
    stops_dataset = True

    def unreviewed(self, drift: FileDrift) -> DriftAction:
        reason = (
            f"schema drift {drift.event} in {drift.where}: {drift.report.summary()}. The dataset's drift "
            f"policy is 'fail': it is stopped until the drift is reviewed "
            f"(`lakesync drift approve {drift.event}` or `lakesync drift reject {drift.event}`)"
        )
        return DriftAction("stop_dataset", reason=reason)


POLICIES: dict[str, DriftPolicy] = {p.name: p for p in (Evolve(), Rescue(), Quarantine(), Fail())}


def drift_policy(name: str) -> DriftPolicy:
    """The policy called ``name`` in ``lakesync.yaml`` (``drift: evolve``)."""
    return POLICIES[name]

"""New datasets lakesync finds by itself (a table's ``autonomy.new_datasets``).

    list a lake feeding such a table -> the files no dataset's pattern matches, grouped into
    datasets as ``lakesync scan`` groups them -> each proposed (sampled, matched onto the
    existing tables) -> judged: added by lakesync, or reported with the reason it was not

A dataset is added only into a table whose ``new_datasets`` is ``auto``, and only where the
evidence is overwhelming: its files are read without a question (no date format in doubt),
every column of the sample is placed, every value converts and passes the table's contract,
each renamed column scores at least the threshold (the table's ``autonomy.renames``, else
:data:`AUTO_APPROVE_ABOVE`) with its margin, no key, ``latest_by``, subject-key or personal-data
column is mapped from another name, and the table wins over the next one by the margin.
Everything else is proposed for a person (``lakesync scan --write``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lakesync.coldstart.groups import KeyGroup, group_keys
from lakesync.coldstart.propose import DatasetProposal, Knowledge, propose_dataset
from lakesync.config import LakesyncConfig, never_automatic, resolve_contract
from lakesync.discover.patterns import compile_pattern
from lakesync.discover.stores import LakeStore

AUTO_APPROVE_ABOVE = 0.9
MIN_MARGIN = 0.2
"""The bar of a renamed column (and the margin of the table over the next one) when the table
sets no ``autonomy.renames``."""


@dataclass(frozen=True)
class NewDataset:
    lake: str
    name: str
    """The dataset's name in its lake (the group's, made unique)."""
    proposal: DatasetProposal
    added: bool
    why: str
    """The evidence it was added on, or why it was not."""

    @property
    def table(self) -> str | None:
        return self.proposal.match.table if self.proposal.match is not None else None

    def line(self) -> str:
        group = self.proposal.group
        found = f"{self.lake}: {group.pattern} ({len(group.files):,} file(s)) matches no dataset"
        if self.added:
            return f"{found}: added as {self.lake}.{self.name} into {self.table} by lakesync ({self.why})"
        return f"{found}: not added: {self.why}"


def watched_lakes(config: LakesyncConfig) -> list[str]:
    """Lakes feeding a table whose ``autonomy.new_datasets`` is set."""
    tables = {name for name, table in config.tables.items() if table.autonomy.new_datasets is not None}
    return [
        name for name, lake in config.lakes.items() if any(d.table in tables for d in lake.datasets.values())
    ]


def unmatched_groups(config: LakesyncConfig, lake: str, store: LakeStore) -> list[KeyGroup]:
    """The lake's files that no dataset's pattern matches, grouped into datasets."""
    patterns = [compile_pattern(d.pattern) for d in config.lakes[lake].datasets.values()]
    return group_keys(e for e in store.list("**") if not any(p.match(e.path) for p in patterns))


def _bar(config: LakesyncConfig, table: str) -> tuple[float, float]:
    renames = config.tables[table].autonomy.renames
    return (renames.auto_approve_above, renames.min_margin) if renames else (AUTO_APPROVE_ABOVE, MIN_MARGIN)


def judge(config: LakesyncConfig, found: DatasetProposal) -> str | None:
    """``None`` when lakesync may add ``found`` by itself, else why not (for a person)."""
    if found.error is not None:
        return f"its files cannot be read: {found.error}"
    match = found.match
    if match is None:
        return "it matches no table (`lakesync scan` proposes a new table for it)"
    settings = config.tables[match.table]
    if settings.autonomy.new_datasets != "auto":
        return f"proposed into {match.table} (score {match.score:.2f}); its autonomy.new_datasets is not auto"
    if found.questions:
        return f"a question only you can answer: {found.questions[0]}"
    if match.unmatched_sources:
        return f"column(s) not in the contract of {match.table}: {', '.join(match.unmatched_sources)}"
    above, margin = _bar(config, match.table)
    never = never_automatic(settings, resolve_contract(match.table, settings))
    for column in match.columns:
        pair = f"{column.source} -> {column.column}"
        if column.converts < 1 or column.passes < 1:
            return f"{pair}: some sampled values do not convert or fail the contract"
        if column.source == column.column:
            continue
        if column.column in never:
            return f"{pair}: a key, subject-key or personal-data column is never mapped by lakesync"
        if column.score < above or column.margin < margin:
            return f"{pair}: {column.evidence()}, below {above} with a margin of {margin}"
    if found.others and match.score - found.others[0].score < margin:
        return f"{match.table} ({match.score:.2f}) is not clearly ahead of {found.others[0].table}"
    return None


def find_new_datasets(
    config: LakesyncConfig, stores: Mapping[str, LakeStore], known: Knowledge, lakes: list[str]
) -> list[NewDataset]:
    """Each unmatched group of ``lakes``, proposed and judged (nothing is written)."""
    out = []
    for lake in lakes:
        taken = set(config.lakes[lake].datasets)
        for group in unmatched_groups(config, lake, stores[lake]):
            found = propose_dataset(stores[lake], group, known)
            name = group.name
            while name in taken:
                name = f"{name}_new"
            taken.add(name)
            reason = judge(config, found)
            if reason is None:
                assert found.match is not None
                why = f"score {found.match.score:.2f}, {len(found.match.columns)} column(s)"
                out.append(NewDataset(lake, name, found, added=True, why=why))
            else:
                out.append(NewDataset(lake, name, found, added=False, why=reason))
    return out

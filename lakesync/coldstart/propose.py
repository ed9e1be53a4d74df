"""Cold start: what a lake holds, proposed as lakesync datasets with the evidence for each choice.

    list the lake -> group its keys into datasets (:mod:`groups`) -> sniff a sample file of each
    (:mod:`sniff`) -> read a bounded sample with lakesync's own readers -> match it onto each
    existing table (:mod:`match`) -> the best match, or a new table with a proposed contract
    (:mod:`infer`)

Nothing is ingested and nothing is written: the proposal is values, turned into YAML by
:mod:`lakesync.coldstart.fragment`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lakesync.coldstart.groups import KeyGroup, group_keys
from lakesync.coldstart.infer import ColumnProposal, personal_hint, propose_column
from lakesync.coldstart.match import TableMatch, match_table
from lakesync.coldstart.sniff import Sniffed, sniff, text_time_format
from lakesync.config import ResolvedContract
from lakesync.config.datasets import FormatOptions
from lakesync.conform.convert import TextFormats
from lakesync.discover.stores import LakeStore
from lakesync.read import ROW, FileReadError, ReadSpec, read_file
from lakesync.state.values import FileEntry

TABLE_AT_LEAST = 0.55
"""A dataset is proposed into an existing table when its match scores at least this and covers
every column the table's contract requires (``nullable: false``)."""
SAMPLE_FILES = 3
SAMPLE_ROWS = 2000
MAX_SAMPLE_BYTES = 256 * 1024 * 1024
"""Files larger than this are not sampled (a smaller one of the dataset is)."""


@dataclass
class DatasetProposal:
    group: KeyGroup
    sniffed: Sniffed
    sample: pl.DataFrame
    sample_files: list[str]
    time_options: dict[str, str] = field(default_factory=dict)
    questions: list[str] = field(default_factory=list)
    match: TableMatch | None = None
    """The existing table it feeds, when the evidence says so."""
    others: list[TableMatch] = field(default_factory=list)
    """The other tables, best first (why not them)."""
    new_table: str | None = None
    contract: list[ColumnProposal] = field(default_factory=list)
    """The proposed contract of a new table (its columns in the sample's order)."""
    personal: dict[str, str] = field(default_factory=dict)
    """Source column -> why it probably holds personal data."""
    error: str | None = None
    """Why the dataset could not be sampled (its files were unreadable)."""

    @property
    def table(self) -> str | None:
        return self.match.table if self.match is not None else self.new_table


@dataclass
class Proposal:
    lake: str
    lake_settings: dict[str, Any]
    """The lake's ``lakesync.yaml`` entry, without datasets."""
    datasets: list[DatasetProposal]
    listed: int
    unknown: int
    """Files listed whose format lakesync does not read (left out)."""


def _sample_files(group: KeyGroup, count: int) -> list[FileEntry]:
    """The newest files of a group, small enough to sample (the smallest if none is)."""
    fitting = [f for f in group.files if 0 < f.size <= MAX_SAMPLE_BYTES]
    pool = fitting or sorted(group.files, key=lambda f: f.size)[:1]
    return sorted(pool, key=lambda f: (f.modified, f.path), reverse=True)[:count]


def _read_sample(
    store: LakeStore, group: KeyGroup, files: list[FileEntry], rows: int
) -> tuple[Sniffed, pl.DataFrame, list[str]]:
    sniffed: Sniffed | None = None
    frames: list[pl.DataFrame] = []
    read: list[str] = []
    problems: list[str] = []
    for entry in files:
        with store.local_path(entry) as path:
            found = sniffed or sniff(path, group.format, compressed=group.compressed)
            spec = ReadSpec(format=found.format, options=FormatOptions(**found.options), chunk_rows=rows)  # type: ignore[arg-type]
            try:
                with contextlib.closing(read_file(path, spec)) as chunks:  # the first chunk only
                    chunk = next(chunks)
            except (FileReadError, ValueError, OSError, StopIteration) as exc:
                problems.append(f"{entry.path}: {exc}")
                continue
        sniffed = found
        frames.append(chunk.drop(ROW, strict=False).head(rows))
        read.append(entry.path)
    if sniffed is None or not frames:
        raise FileReadError("; ".join(problems) or "no file could be sampled")
    return sniffed, pl.concat(frames, how="diagonal_relaxed"), read


@dataclass
class TimeOptions:
    """What a dataset's text needs to be read as dates and timestamps."""

    options: dict[str, str] = field(default_factory=dict)
    """``timestamp_format`` / ``date_format``, where the sample settles them."""
    questions: list[str] = field(default_factory=list)
    assumed: dict[str, str] = field(default_factory=dict)
    """A candidate format for each question, only to match the columns (never proposed)."""
    kinds: dict[str, str] = field(default_factory=dict)
    """Text column -> ``date`` or ``datetime``."""

    def formats(self, *, assume: bool) -> TextFormats:
        chosen = {**self.assumed, **self.options} if assume else self.options
        return TextFormats(
            timestamp_format=chosen.get("timestamp_format"), date_format=chosen.get("date_format")
        )


def _time_options(sample: pl.DataFrame, sniffed: Sniffed) -> TimeOptions:
    found = TimeOptions()
    if sniffed.format == "parquet":
        return found
    for name in sample.columns:
        if sample[name].dtype != pl.String:
            continue
        time = text_time_format(name, sample[name])
        if time is None:
            continue
        found.kinds[name] = time.kind
        key = "timestamp_format" if time.kind == "datetime" else "date_format"
        if time.question:
            found.questions.append(time.question)
            found.assumed.setdefault(key, time.candidates[0])
        if time.format is None:
            continue
        if key in found.options and found.options[key] != time.format:
            other = found.options[key]
            found.questions.append(
                f"{name} spells its values {time.format}, another column {other}: one per dataset"
            )
            continue
        found.options[key] = time.format
    return found


@dataclass(frozen=True)
class Knowledge:
    """What the lakehouse knows already: each table's contract, and a sample of its rows."""

    contracts: Mapping[str, ResolvedContract]
    samples: Callable[[str], pl.DataFrame | None]


@dataclass(frozen=True)
class Sampling:
    """How much of a dataset is read: its newest files, and rows from each."""

    files: int = SAMPLE_FILES
    rows: int = SAMPLE_ROWS


@dataclass(frozen=True)
class ScannedLake:
    name: str
    settings: dict[str, Any]
    """The lake's ``lakesync.yaml`` entry, without datasets."""
    store: LakeStore


def propose_dataset(
    store: LakeStore, group: KeyGroup, known: Knowledge, sampling: Sampling | None = None
) -> DatasetProposal:
    sampling = sampling or Sampling()
    try:
        sniffed, sample, read = _read_sample(
            store, group, _sample_files(group, sampling.files), sampling.rows
        )
    except FileReadError as exc:
        return DatasetProposal(group, Sniffed(group.format), pl.DataFrame(), [], error=str(exc))
    proposal = DatasetProposal(group, sniffed, sample, read)
    times = _time_options(sample, sniffed)
    proposal.time_options, proposal.questions = times.options, [*sniffed.questions, *times.questions]
    kinds = times.kinds
    formats = times.formats(assume=True)  # a column's format in question still matches its column
    matches = sorted(
        (
            match_table(sample, contract, formats, known.samples(name))
            for name, contract in known.contracts.items()
        ),
        key=lambda m: -m.score,
    )
    best = matches[0] if matches else None
    if best is not None and best.score >= TABLE_AT_LEAST:
        required = {c.name for c in known.contracts[best.table].columns if not c.nullable}
        if not required & set(best.unmatched_columns):
            proposal.match = best
    proposal.others = [m for m in matches if m is not proposal.match]
    proposal.personal = {
        name: why for name in sample.columns if (why := personal_hint(name, sample[name])) is not None
    }
    if proposal.match is None:
        text = sniffed.format == "csv"
        proposal.contract = [
            propose_column(name, sample[name], text=text or name in kinds) for name in sample.columns
        ]
    return proposal


def propose(
    lake: ScannedLake,
    known: Knowledge,
    *,
    sampling: Sampling | None = None,
    progress: Callable[[str], None] | None = None,
) -> Proposal:
    """The datasets ``lake`` holds, each matched onto a known table or proposed as a new one."""
    say = progress or (lambda _: None)
    entries = list(lake.store.list("**"))
    groups = group_keys(entries)
    say(f"listed {len(entries):,} file(s) in {lake.store.description}: {len(groups)} dataset(s)")
    datasets = []
    taken = set(known.contracts)
    for n, group in enumerate(groups, 1):
        say(f"sampling {group.name} ({n}/{len(groups)}): {group.pattern}, {len(group.files):,} file(s)")
        found = propose_dataset(lake.store, group, known, sampling)
        if found.match is None and found.error is None:
            name = group.name
            while name in taken:
                name = f"{name}_new"
            found.new_table = name
            taken.add(name)
        datasets.append(found)
    known_files = sum(len(g.files) for g in groups)
    return Proposal(
        lake.name, lake.settings, datasets, listed=len(entries), unknown=len(entries) - known_files
    )

"""Keys of a lake grouped into datasets by their path template.

Folders that vary from file to file (dates such as ``2026/11/03``, ``date=2026-11-03``,
numbered folders) fold into ``**``; file names fold their varying parts (numbers, dates,
ids) into ``*``. Files sharing a folder template, a name template and a format are one dataset.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lakesync.state.values import FileEntry

COMPRESSED = (".gz",)
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
}
"""File extension -> the format it suggests (JSON files are sniffed: lines or one array)."""
_VARYING_FOLDER = re.compile(
    r"^(\d+|\d{4}-\d{2}(-\d{2})?|[A-Za-z_]+=[^/]*|\d{4}\d{2}\d{2}|v\d+|[0-9a-f]{8,})$", re.IGNORECASE
)
_VARYING_IN_NAME = re.compile(
    r"\d{4}-\d{2}-\d{2}([T_ ]\d{2}[:-]?\d{2}([:-]?\d{2})?)?|[0-9a-f]{12,}|\d+", re.IGNORECASE
)
_STARS = re.compile(r"\*(?:[-_.]*\*)+")


@dataclass
class KeyGroup:
    """The files of one proposed dataset."""

    name: str
    pattern: str
    """A glob relative to the lake root (a dataset's ``pattern``)."""
    format: str
    compressed: bool
    files: list[FileEntry] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def newest(self) -> datetime | None:
        return max((f.modified for f in self.files), default=None)


def split_extension(name: str) -> tuple[str, str, bool]:
    """``(stem, extension, compressed)``: ``orders-1.ndjson.gz`` -> ``("orders-1", ".ndjson", True)``."""
    lower = name.lower()
    compressed = lower.endswith(COMPRESSED)
    if compressed:
        name, lower = name[:-3], lower[:-3]
    dot = lower.rfind(".")
    if dot <= 0:
        return name, "", compressed
    return name[:dot], lower[dot:], compressed


def name_template(stem: str) -> str:
    """A file name's stem with its varying parts as ``*`` (``orders_2026-11-03_07`` -> ``orders_*``)."""
    folded = _STARS.sub("*", _VARYING_IN_NAME.sub("*", stem))
    return folded.rstrip("-_.") if folded.rstrip("-_.") else "*"


def folder_template(folders: list[str]) -> tuple[str, ...]:
    """Folders with each run of varying ones as ``**``."""
    out: list[str] = []
    for folder in folders:
        varying = bool(_VARYING_FOLDER.match(folder))
        if varying:
            if not out or out[-1] != "**":
                out.append("**")
        else:
            out.append(folder)
    return tuple(out)


GENERIC_STEMS = frozenset(
    {"part", "data", "file", "files", "export", "chunk", "batch", "output", "run", "dump"}
)
"""Name stems that say nothing about the data (``part-00001``): the folder names the dataset."""


def _dataset_name(folders: tuple[str, ...], stem: str) -> str:
    """The stem's literal part (``orders_*`` -> ``orders``) unless generic, else the last literal
    folder, as a lakesync name."""
    literal_stem = re.sub(r"[-_.]*\*[-_.]*", " ", stem).strip().split(" ")[0] if stem != "*" else ""
    folders_literal = [f for f in folders if f != "**"]
    if literal_stem and literal_stem.lower() not in GENERIC_STEMS:
        base = literal_stem
    else:
        base = folders_literal[-1] if folders_literal else literal_stem or "files"
    name = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_").lower() or "files"
    return name if name[0].isalpha() else f"d_{name}"


def group_keys(entries: Iterable[FileEntry]) -> list[KeyGroup]:
    """The datasets a listing suggests, largest first (files of unknown formats are left out)."""
    groups: dict[tuple[tuple[str, ...], str, str, bool], KeyGroup] = {}
    for entry in entries:
        *folders, filename = entry.path.split("/")
        if filename.startswith((".", "_")):  # hidden files, _SUCCESS markers, Delta/Spark logs
            continue
        stem, extension, compressed = split_extension(filename)
        fmt = EXTENSIONS.get(extension)
        if fmt is None:
            continue
        template = folder_template(folders)
        stem_template = name_template(stem)
        key = (template, stem_template, extension, compressed)
        group = groups.get(key)
        if group is None:
            glob_name = f"{stem_template}{extension}{'.gz' if compressed else ''}"
            pattern = "/".join([*template, glob_name])
            group = groups[key] = KeyGroup(_dataset_name(template, stem_template), pattern, fmt, compressed)
        group.files.append(entry)
    found = sorted(groups.values(), key=lambda g: (-len(g.files), g.pattern))
    taken: dict[str, int] = {}
    for group in found:  # one name per dataset: orders, orders_2, ...
        taken[group.name] = taken.get(group.name, 0) + 1
        if taken[group.name] > 1:
            group.name = f"{group.name}_{taken[group.name]}"
    return found

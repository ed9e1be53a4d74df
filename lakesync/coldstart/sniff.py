"""What a sample file is: its format, the reader options it needs, how its text spells dates.

Nothing is guessed where the sample cannot tell: a day/month order that no value settles
(``01/02/2026``) is a *question* for the user, with the values that make it ambiguous.
"""

from __future__ import annotations

import csv
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

SAMPLE_BYTES = 256 * 1024
_DELIMITERS = ",;\t|"
_SLASHED = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$")
_ISO_DATE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
_ISO_TIME = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?\s*$")


@dataclass
class Sniffed:
    """A dataset's format and reader options, with the evidence and the questions left."""

    format: str
    options: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)


def head_bytes(path: Path, compressed: bool, limit: int = SAMPLE_BYTES) -> bytes:
    if compressed:
        with gzip.open(path, "rb") as stream:
            return stream.read(limit)
    with path.open("rb") as stream:
        return stream.read(limit)


def _encoding(data: bytes) -> tuple[str, str]:
    """The text encoding of a sample, and why."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig", "starts with a UTF-8 byte-order mark"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", "starts with a UTF-16 byte-order mark"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 4:  # the sample cut a character in two
            return "utf-8", "valid UTF-8"
        if any(0x80 <= b <= 0x9F for b in data):
            return "cp1252", "not UTF-8; bytes 0x80-0x9F are Windows-1252 punctuation"
        return "latin-1", "not UTF-8; read as Latin-1"
    return "utf-8", "valid UTF-8"


def sniff(path: Path, suggested: str, *, compressed: bool) -> Sniffed:
    """The format (``suggested`` by the extension) and options of the file at ``path``."""
    data = head_bytes(path, compressed)
    if suggested == "parquet" or data[:4] == b"PAR1":
        return Sniffed("parquet", evidence=["parquet magic bytes"] if data[:4] == b"PAR1" else [])
    text_start = data.lstrip()[:1]
    if suggested in ("json", "ndjson") or text_start in (b"{", b"["):
        if text_start == b"[":
            return Sniffed("json", evidence=["the file is one JSON array"])
        return Sniffed("ndjson", evidence=["one JSON object per line"])
    return _sniff_csv(data)


def _sniff_csv(data: bytes) -> Sniffed:
    encoding, why = _encoding(data)
    text = data.decode("utf-8" if encoding == "utf-8-sig" else encoding, errors="ignore")
    text = text.lstrip("\ufeff")
    lines = text.splitlines()[:200]
    sample = "\n".join(lines[:-1] if len(lines) > 1 else lines)
    found = Sniffed("csv", evidence=[f"encoding {encoding}: {why}"])
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
        delimiter = dialect.delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _DELIMITERS} if lines else {}
        delimiter = max(counts, key=lambda d: counts[d]) if counts and max(counts.values()) else ","
    found.evidence.append(f"delimiter {delimiter!r}: the same count on every sampled line")
    try:
        header = csv.Sniffer().has_header(sample)
    except csv.Error:
        header = True
    if not header:
        found.evidence.append("no header line: the first line looks like the others")
    options: dict[str, Any] = {}
    if delimiter != ",":
        options["delimiter"] = delimiter
    if encoding != "utf-8":
        options["encoding"] = encoding
    if not header:
        options["header"] = False
    found.options = options
    return found


@dataclass(frozen=True)
class TimeFormat:
    """How one text column spells its dates or timestamps."""

    kind: str
    """``date`` or ``datetime``."""
    format: str | None
    """A strftime format, or ``None`` for ISO 8601 (lakesync's default)."""
    question: str | None = None
    candidates: tuple[str, ...] = ()
    """The formats an ambiguous column could have (the question asks which)."""


def text_time_format(column: str, values: pl.Series) -> TimeFormat | None:
    """The date/time spelling of a text column, when every sampled value has one."""
    sample = values.drop_nulls().cast(pl.String).head(2000).to_list()
    sample = [v for v in sample if v.strip()]
    if not sample:
        return None
    if all(_ISO_TIME.match(v) for v in sample):
        return TimeFormat("datetime", None)
    if all(_ISO_DATE.match(v) for v in sample):
        return TimeFormat("date", None)
    matches = [_SLASHED.match(v) for v in sample]
    if not all(matches):
        return None
    groups = [m.groups() for m in matches if m]
    separator = groups[0][1]
    timed = any(g[4] is not None for g in groups)
    seconds = any(g[6] is not None for g in groups)
    clock = (" %H:%M:%S" if seconds else " %H:%M") if timed else ""
    kind = "datetime" if timed else "date"
    first_over_12 = any(int(g[0]) > 12 for g in groups)
    second_over_12 = any(int(g[2]) > 12 for g in groups)
    day_first = f"%d{separator}%m{separator}%Y{clock}"
    month_first = f"%m{separator}%d{separator}%Y{clock}"
    if first_over_12 and not second_over_12:
        return TimeFormat(kind, day_first)
    if second_over_12 and not first_over_12:
        return TimeFormat(kind, month_first)
    example = next(v.strip() for v in sample)
    question = (
        f"{column}: is {example!r} day first ({day_first}) or month first ({month_first})? No sampled "
        f"value has a day above 12. Set options.{'timestamp' if timed else 'date'}_format."
    )
    return TimeFormat(kind, None, question, (month_first, day_first))

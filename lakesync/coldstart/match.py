"""A sampled dataset's columns matched onto an existing table's canonical columns, with evidence.

For each (source column, table column) pair the score weighs

- **name** (0.40): the better of the two names' similarity once case, separators and common
  abbreviations are folded (``amt`` = amount, ``qty`` = quantity, ``no``/``nr`` = id ...), and
  the share of words they have in common;
- **values** (0.25): the share of the sample's distinct values found among a sample of the
  table's column (when the table has rows; else its weight goes to the name);
- **type** (0.20): 1 when the source's type is the column's or widens to it without loss (or
  the source is text, parsed value by value), 0.3 when it narrows (a float into an integer);
- **contract** (0.15): the share of the sample's values that pass the column's checks.

A pair whose values do not convert to the column's type (under 90% of them) is no match at all.
Pairs are taken best first, one source column per table column; the *margin* of a match is
its score minus the best other candidate for the same table column.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import polars as pl

from lakesync.config import ResolvedContract
from lakesync.conform.convert import TextFormats, convert
from lakesync.conform.drift import is_safe_widening
from lakesync.validate import compile_contract

NAME_WEIGHT, VALUE_WEIGHT, TYPE_WEIGHT, CONTRACT_WEIGHT = 0.40, 0.25, 0.20, 0.15
NARROWING = 0.3
"""The type evidence of a typed source column whose type may not fit the column's."""
PROPOSE_AT_LEAST = 0.5
"""A pair scoring below this is not proposed."""
CONVERTS_AT_LEAST = 0.9
ABBREVIATIONS = {
    "amt": "amount", "qty": "quantity", "quant": "quantity", "no": "id", "nr": "id", "num": "id",
    "number": "id", "cust": "customer", "client": "customer", "ts": "at", "time": "at",
    "timestamp": "at", "date": "at", "dt": "at", "desc": "description", "addr": "address",
    "tel": "phone", "mail": "email", "ccy": "currency", "cur": "currency", "curr": "currency",
    "prod": "product", "ord": "order", "orders": "order", "price": "amount", "total": "amount",
    "value": "amount", "created": "ordered", "placed": "ordered", "country_code": "country",
}  # fmt: skip
"""Word -> the word it usually stands for in a column name (compared after folding)."""


def words(name: str) -> list[str]:
    """A column name's words, abbreviations expanded: ``OrderNo`` -> ``["order", "id"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    found = [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]
    return [ABBREVIATIONS.get(w, w) for w in found]


def name_similarity(source: str, target: str) -> float:
    a, b = words(source), words(target)
    if not a or not b:
        return 0.0
    ratio = difflib.SequenceMatcher(None, "".join(a), "".join(b)).ratio()
    common = len(set(a) & set(b))
    overlap = 2 * common / (len(set(a)) + len(set(b)))
    return round(max(ratio, overlap), 2)


@dataclass(frozen=True)
class ColumnMatch:
    source: str
    column: str
    score: float
    name: float
    values: float | None
    """Share of distinct sampled values the table holds (``None``: the table has no rows yet)."""
    converts: float
    passes: float
    typed: float = 1.0
    margin: float = 1.0

    def evidence(self) -> str:
        values = "no rows to compare" if self.values is None else f"{self.values:.2f}"
        return (
            f"score {self.score:.2f}: name {self.name:.2f}, values {values}, type {self.typed:.1f}, "
            f"contract {self.passes:.2f}, margin {self.margin:.2f}"
        )


@dataclass(frozen=True)
class TableMatch:
    table: str
    score: float
    """Mean score of the matched columns, times the share of the contract's columns matched,
    times the square root of the share of the dataset's columns matched."""
    columns: tuple[ColumnMatch, ...]
    unmatched_sources: tuple[str, ...]
    unmatched_columns: tuple[str, ...]
    """The table's contract columns no source column matched."""

    @property
    def mapping(self) -> dict[str, str]:
        """Source name -> canonical name, for the dataset's ``columns`` (only where they differ)."""
        return {m.source: m.column for m in self.columns if m.source != m.column}


def _overlap(values: pl.Series, existing: pl.Series) -> float:
    sample = values.drop_nulls().cast(pl.String, strict=False).drop_nulls().unique().head(1000)
    known = existing.drop_nulls().cast(pl.String, strict=False).drop_nulls().unique()
    if sample.is_empty() or known.is_empty():
        return 0.0
    share = sample.is_in(known.implode()).mean()
    return round(float(share), 2) if isinstance(share, int | float) else 0.0


def _pair(  # noqa: PLR0913 - the evidence of one pair
    source: str,
    values: pl.Series,
    contract: ResolvedContract,
    column: str,
    *,
    formats: TextFormats,
    table_sample: pl.DataFrame | None,
) -> ColumnMatch | None:
    spec = contract.column(column)
    assert spec is not None
    converted = convert(values, spec.type.dtype, formats)
    present = int(values.drop_nulls().len())
    bad = int(converted.bad.sum())
    converts = 1.0 if present == 0 else (present - bad) / present
    if converts < CONVERTS_AT_LEAST:
        return None
    checks = [c for c in compile_contract(contract).fast_checks or () if c.column == column]
    frame = converted.values.alias(column).to_frame()
    passes = (
        float(frame.select(pl.all_horizontal([c.ok for c in checks]).mean()).item() or 0.0)
        if checks and frame.height
        else 1.0
    )
    name = name_similarity(source, column)
    fits = values.dtype in (pl.String, pl.Null) or is_safe_widening(values.dtype, spec.type.dtype)
    typed = 1.0 if fits else NARROWING
    existing = table_sample[column] if table_sample is not None and column in table_sample.columns else None
    score = TYPE_WEIGHT * typed + CONTRACT_WEIGHT * passes
    if existing is not None and existing.drop_nulls().len():
        value_share: float | None = _overlap(converted.values, existing)
        score += NAME_WEIGHT * name + VALUE_WEIGHT * (value_share or 0.0)
    else:
        value_share = None
        score += (NAME_WEIGHT + VALUE_WEIGHT) * name
    return ColumnMatch(
        source, column, round(score, 3), name, value_share, round(converts, 2), round(passes, 2)
    )


def match_table(
    sample: pl.DataFrame,
    contract: ResolvedContract,
    formats: TextFormats,
    table_sample: pl.DataFrame | None = None,
) -> TableMatch:
    """The best one-to-one matching of ``sample``'s columns onto ``contract``'s."""
    sources = [c for c in sample.columns if not c.startswith("_lakesync_")]
    candidates = [
        found
        for source in sources
        for column in contract.names
        if (
            found := _pair(
                source, sample[source], contract, column, formats=formats, table_sample=table_sample
            )
        )
        is not None
    ]
    candidates.sort(key=lambda m: (-m.score, -m.name, m.source, m.column))
    taken_sources: set[str] = set()
    taken_columns: set[str] = set()
    chosen: list[ColumnMatch] = []
    for match in candidates:
        if match.score < PROPOSE_AT_LEAST or match.source in taken_sources or match.column in taken_columns:
            continue
        rivals = [
            m.score
            for m in candidates
            if m is not match
            and (m.column == match.column or m.source == match.source)
            and m.source not in taken_sources
        ]
        margin = round(match.score - max(rivals, default=0.0), 3)
        chosen.append(ColumnMatch(**{**match.__dict__, "margin": margin}))
        taken_sources.add(match.source)
        taken_columns.add(match.column)
    required = contract.names
    # A table fits when its columns are found (all of them) and the dataset's are placed (most).
    covered = len(chosen) / len(required) * (len(chosen) / max(len(sources), 1)) ** 0.5
    score = (sum(m.score for m in chosen) / len(chosen)) * covered if chosen else 0.0
    return TableMatch(
        table=contract.table,
        score=round(score, 3),
        columns=tuple(sorted(chosen, key=lambda m: required.index(m.column))),
        unmatched_sources=tuple(s for s in sources if s not in taken_sources),
        unmatched_columns=tuple(c for c in required if c not in taken_columns),
    )

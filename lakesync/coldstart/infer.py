"""A contract proposed from a sample: types, nullability, uniqueness, value sets and ranges the
sample passes, and the columns that probably hold personal data (for the user to mark ``pii``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lakesync.coldstart.sniff import TimeFormat, text_time_format
from lakesync.config.datatypes import logical_name

_INTEGER = r"^\s*[+-]?\d{1,18}\s*$"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_BOOLEAN = ("true", "false", "t", "f", "yes", "no")
_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE = r"^\+?[\d\s().-]{7,}$"
_NAME_WORDS = ("name", "surname", "firstname", "lastname", "fullname", "vorname", "nachname", "nom", "prenom")
_ID_WORDS = ("id", "no", "nr", "number", "key", "code")
ISIN_MAX_VALUES = 12
"""Text columns with at most this many distinct values (in a sample 5x larger) get ``isin``."""


@dataclass
class ColumnProposal:
    """What the sample says about one column."""

    name: str
    type: str
    nullable: bool
    unique: bool = False
    checks: dict[str, Any] = field(default_factory=dict)
    personal: str | None = None
    """Why the column probably holds personal data (the user decides ``pii``)."""
    time: TimeFormat | None = None


def infer_type(column: str, values: pl.Series, *, text: bool) -> tuple[str, TimeFormat | None]:
    """The contract type the sample's values fit (``text``: the format has no types of its own)."""
    if not text or values.dtype != pl.String:
        if values.dtype == pl.String:
            time = text_time_format(column, values)
            if time is not None:
                return time.kind, time
        return ("string" if values.dtype == pl.Null else logical_name(values.dtype)), None
    present = values.drop_nulls()
    present = present.filter(present.str.strip_chars() != "")
    if present.is_empty():
        return "string", None
    if present.str.contains(_INTEGER).all():
        return "int64", None
    if present.str.contains(_NUMBER).all():
        return "float64", None
    if present.str.to_lowercase().str.strip_chars().is_in(list(_BOOLEAN)).all():
        return "bool", None
    time = text_time_format(column, present)
    if time is not None:
        return time.kind, time
    return "string", None


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def personal_hint(name: str, values: pl.Series) -> str | None:
    """Why ``name`` probably holds personal data, or ``None``."""
    text = values.drop_nulls().cast(pl.String, strict=False).drop_nulls().head(2000)
    text = text.filter(text.str.strip_chars() != "")
    if len(text) and text.str.contains(_EMAIL).mean() >= 0.8:  # type: ignore[operator]
        return "values look like email addresses"
    words = _words(name)
    joined = "".join(words)
    if any(w in ("phone", "mobile", "tel", "telephone", "fax") for w in words) or (
        len(text) and words and "phone" in joined and text.str.contains(_PHONE).mean() >= 0.8  # type: ignore[operator]
    ):
        return "the name says phone number"
    if joined in _NAME_WORDS or (
        any(w in ("name", "surname") for w in words)
        and not any(
            w in ("product", "sku", "item", "file", "company", "shop", "store", "country", "city")
            for w in words
        )
    ):
        return "the name says a person's name"
    if any(w in ("ssn", "passport", "iban", "birthdate", "dob", "birthday") for w in words):
        return "the name says an identity number or birth date"
    return None


def propose_column(name: str, values: pl.Series, *, text: bool) -> ColumnProposal:
    kind, time = infer_type(name, values, text=text)
    present = values.drop_nulls()
    if text and values.dtype == pl.String:
        present = present.filter(present.str.strip_chars() != "")
    proposal = ColumnProposal(name, kind, nullable=present.len() < values.len() or values.len() == 0)
    proposal.time = time
    proposal.personal = personal_hint(name, values)
    words = _words(name)
    if present.len() >= 2 and present.n_unique() == present.len() and words and words[-1] in _ID_WORDS:
        proposal.unique = True
    numeric = None
    if kind in ("int64", "float64") or kind.startswith(("int", "float")):
        numeric = present.cast(pl.Float64, strict=False).drop_nulls()
    if numeric is not None and numeric.len() and float(numeric.min()) >= 0:  # type: ignore[arg-type]
        proposal.checks["ge"] = 0
    if kind == "string" and proposal.personal is None and not proposal.unique:
        distinct = present.unique().sort()
        if 0 < distinct.len() <= ISIN_MAX_VALUES and present.len() >= 5 * distinct.len():
            proposal.checks["isin"] = distinct.to_list()
    return proposal

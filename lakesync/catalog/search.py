"""Searching the catalog: a name finds its column everywhere, by any of its names.

A canonical column and the names each dataset's files give it are one *entry*: searching
``order_no`` (how one lake calls it) finds ``orders.order_id`` and every lake carrying it, and
searching ``order_id`` finds the datasets that call it something else. Exact names rank first,
then the same name spelled otherwise (case, ``_``), then names containing the text, then similar
names.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import polars as pl

EXACT, ALIAS, SPELLING, CONTAINS = 1.0, 0.95, 0.9, 0.7
SIMILAR_AT_LEAST = 0.8


@dataclass(frozen=True)
class Source:
    asset: str
    """``lakes/<lake>/<dataset>``"""
    lake: str
    dataset: str
    column: str
    """The name in the dataset's files."""


@dataclass(frozen=True)
class Hit:
    score: float
    match: str
    """Why it matched, e.g. ``exact``, ``as eu_sales.orders calls it``, ``similar``."""
    asset: str
    """The table or feature (``lakehouse/orders``), or the asset itself for a name match."""
    column: str | None
    type: str | None = None
    pii: str | None = None
    description: str | None = None
    sources: tuple[Source, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 3),
            "match": self.match,
            "asset": self.asset,
            "column": self.column,
            "type": self.type,
            "pii": self.pii,
            "description": self.description,
            "sources": [{"asset": s.asset, "column": s.column} for s in self.sources],
        }


def folded(name: str) -> str:
    """A name without case and separators: ``OrderId``, ``order_id``, ``ORDER-ID`` are one."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _score(text: str, name: str) -> tuple[float, str] | None:
    if name == text:
        return EXACT, "exact"
    if folded(name) == folded(text) and folded(text):
        return SPELLING, "same name, other spelling"
    if folded(text) and folded(text) in folded(name):
        return CONTAINS + 0.2 * len(folded(text)) / max(len(folded(name)), 1), "contains"
    ratio = difflib.SequenceMatcher(None, folded(text), folded(name)).ratio()
    if ratio >= SIMILAR_AT_LEAST:
        return ratio * CONTAINS, "similar"
    return None


def _has_tag(tags: str | None, wanted: str) -> bool:
    pairs = [t.strip() for t in (tags or "").split(",") if t.strip()]
    if "=" in wanted:
        return wanted in pairs
    return any(p.split("=", 1)[0] == wanted for p in pairs)


def search(
    catalog: pl.DataFrame,
    text: str,
    *,
    columns_only: bool = False,
    tag: str | None = None,
    lake: str | None = None,
) -> list[Hit]:
    """Entries of ``catalog`` matching ``text``, best first (``tag``: only assets with that tag
    or ``key=value``; ``lake``: only columns or assets of that lake)."""
    rows = catalog
    if tag is not None:
        rows = rows.filter(pl.col("tags").map_elements(lambda t: _has_tag(t, tag), return_dtype=pl.Boolean))
    hits: list[Hit] = []
    named_in: dict[tuple[str, str], list[Source]] = {}
    for r in rows.filter(pl.col("kind") == "dataset").iter_rows(named=True):
        source = Source(r["asset"], r["lake"], r["dataset"], r["source_column"])
        named_in.setdefault((r["table"], r["column"]), []).append(source)
    owners = rows.filter(pl.col("kind") != "dataset")
    for (asset, column), entry in owners.group_by("asset", "column", maintain_order=True):
        first = entry.row(0, named=True)
        table = first["table"]
        sources = tuple(named_in.get((table, column), ())) if table is not None else ()
        if lake is not None:
            sources = tuple(s for s in sources if s.lake == lake)
            if not sources:
                continue
        best, why = _score(text, str(column)) or (0.0, "")
        for source in sources:
            found = _score(text, source.column)
            if found is None or found[0] <= best or source.column == column:
                continue
            named = f"{source.lake}.{source.dataset} calls it {source.column}"
            best, why = (ALIAS, named) if found[1] == "exact" else (found[0] * ALIAS, f"{found[1]}: {named}")
        if best <= 0:
            continue
        hits.append(
            Hit(
                best, why, str(asset), str(column), first["type"], first["pii"], first["description"], sources
            )
        )
    if not columns_only:
        assets = rows.unique("asset", keep="first", maintain_order=True)
        if lake is not None:
            assets = assets.filter(pl.col("lake") == lake)
        for row in assets.iter_rows(named=True):
            name = str(row["asset"]).rsplit("/", 1)[-1]
            found = _score(text, name) or _score(text, str(row["asset"]))
            if found is not None:
                # An asset's kind (table, dataset, feature) stands in its type.
                hits.append(
                    Hit(found[0], f"asset name ({found[1]})", str(row["asset"]), None, type=row["kind"])
                )
    return sorted(hits, key=lambda h: (-h.score, h.asset, h.column or ""))

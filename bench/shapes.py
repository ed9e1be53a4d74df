"""Data shaped like users' lakes, not like what a generator makes easy.

``orders_text``: the lake of issue 18 — ids, a 20-value country, a nullable amount, a currency,
a timestamp, a nullable status and a ~30-character free-text note that is null in 10% of rows
(high cardinality: words picked by independent moduli). Deterministic: every run writes the
same bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import polars as pl

COUNTRIES = [
    "DE", "FR", "NL", "BE", "ES", "IT", "PT", "PL", "SE", "DK",
    "FI", "NO", "AT", "CH", "IE", "GB", "US", "CA", "JP", "AU",
]  # fmt: skip
CURRENCIES = ["EUR", "USD", "GBP", "JPY"]
STATUSES = ["placed", "paid", "shipped", "delivered", "returned"]
WORDS = [
    "please",
    "leave",
    "at",
    "the",
    "door",
    "ring",
    "twice",
    "gift",
    "wrap",
    "fragile",
    "handle",
    "with",
    "care",
    "call",
    "before",
    "delivery",
    "back",
    "entrance",
    "second",
    "floor",
    "no",
    "plastic",
    "neighbour",
    "accepts",
    "office",
    "hours",
    "only",
    "weekend",
    "urgent",
    "replacement",
    "for",
    "damaged",
    "item",
    "customer",
    "asked",
    "invoice",
    "in",
    "company",
    "name",
]
SCHEMA = {
    "order_id": pl.Int64,
    "customer_id": pl.Int64,
    "country": pl.String,
    "amount": pl.Float64,
    "currency": pl.String,
    "ordered_at": pl.Datetime("us", "UTC"),
    "status": pl.String,
    "note": pl.String,
}
CONTRACT = {
    "order_id": {"type": "int64", "nullable": False},
    "customer_id": {"type": "int64", "nullable": False},
    "country": {"type": "string", "checks": {"isin": COUNTRIES}},
    "amount": {"type": "float64", "checks": {"ge": 0}},
    "currency": {"type": "string", "checks": {"isin": CURRENCIES}},
    "ordered_at": {"type": "datetime"},
    "status": {"type": "string"},
    "note": {"type": "string"},
}


def _word(i: pl.Expr, prime: int) -> pl.Expr:
    return pl.lit(pl.Series(WORDS)).get((i * prime) % len(WORDS))


def orders_text(start: int, rows: int, *, revision: int = 0) -> pl.DataFrame:
    """Orders ``start`` .. ``start + rows``; ``revision`` > 0 changes amounts and statuses (an
    upsert's new versions of the same keys)."""
    i = pl.int_range(start, start + rows, dtype=pl.Int64, eager=True)
    note = pl.concat_str(
        [_word(pl.col("i"), p) for p in (7, 13, 29, 53, 101)] + [(pl.col("i") % 997).cast(pl.String)],
        separator=" ",
    )
    return pl.DataFrame({"i": i}).select(
        order_id=pl.col("i"),
        customer_id=(pl.col("i") * 7919) % 1_000_003,
        country=pl.lit(pl.Series(COUNTRIES)).get(pl.col("i") % 20),
        amount=pl.when(pl.col("i") % 17 == 0)
        .then(None)
        .otherwise(((pl.col("i") * 37 + revision * 101) % 100_000).cast(pl.Float64) / 100),
        currency=pl.lit(pl.Series(CURRENCIES)).get(pl.col("i") % 4),
        ordered_at=(pl.lit(1_780_000_000_000_000) + pl.col("i") * 1_000_000 + revision).cast(
            pl.Datetime("us", "UTC")
        ),
        status=pl.when(pl.col("i") % 7 == 0)
        .then(None)
        .otherwise(pl.lit(pl.Series(STATUSES)).get((pl.col("i") + revision) % 5)),
        note=pl.when(pl.col("i") % 10 == 3).then(None).otherwise(note),
    )


def write_lake(folder: Path, frames: Iterable[pl.DataFrame], fmt: str = "parquet") -> Path:
    """Write ``frames`` as ``part-NNNNN.<fmt>`` into ``folder`` once (``.complete`` marks it)."""
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for n, frame in enumerate(frames):
        path = folder / f"part-{n:05d}.{fmt}"
        if fmt == "parquet":
            frame.write_parquet(path)
        elif fmt == "csv":
            frame.write_csv(path)
        else:
            frame.write_ndjson(path)
    (folder / ".complete").write_text("")
    return folder

"""How well `lakesync scan` maps a new dataset's columns onto an existing table: precision and
recall on a labelled set of source -> canonical column names written the ways real lakes write
them (abbreviations, other languages, CamelCase and snake case, prefixes, units, a swapped pair
of columns of one type), each case a small sample of values, matched against a table holding
rows of its own.

A *proposal* is right when the source column is mapped to its labelled canonical column; a
column labelled ``None`` (no counterpart) must not be mapped. Reported: precision and recall of
the proposals, and of those that a strict rule would approve without a person (score >= 0.9
and margin >= 0.2: the threshold the autonomy settings are meant to start from).

    python -m bench.matching
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from lakesync.coldstart.match import match_table
from lakesync.config import resolve_contract
from lakesync.config.models import Table
from lakesync.conform.convert import TextFormats

AUTO_SCORE, AUTO_MARGIN = 0.9, 0.2
T0 = datetime(2026, 11, 1, tzinfo=UTC)
ORDERS = {
    "order_id": {"type": "int64", "nullable": False},
    "customer_id": {"type": "int64", "nullable": False},
    "amount": {"type": "float64", "checks": {"ge": 0}},
    "quantity": {"type": "int32", "checks": {"gt": 0}},
    "currency": {"type": "string", "checks": {"isin": ["EUR", "USD", "GBP", "JPY"]}},
    "country": {"type": "string"},
    "ordered_at": {"type": "datetime"},
    "shipped_at": {"type": "datetime"},
}


def _values(column: str, start: int, rows: int) -> list[Any]:
    i = range(start, start + rows)
    return {
        "order_id": [100_000 + n for n in i],
        "customer_id": [5_000 + (n * 7) % 900 for n in i],
        "amount": [round(((n * 37) % 20_000) / 100, 2) for n in i],
        "quantity": [1 + n % 9 for n in i],
        "currency": [("EUR", "USD", "GBP", "JPY")[n % 4] for n in i],
        "country": [("DE", "FR", "US", "GB", "JP")[n % 5] for n in i],
        "ordered_at": [T0 + timedelta(minutes=n) for n in i],
        "shipped_at": [T0 + timedelta(days=2, minutes=n) for n in i],
    }[column]


@dataclass(frozen=True)
class Case:
    """One dataset: its source names -> the canonical column each is (``None``: none)."""

    name: str
    columns: dict[str, str | None]


CASES = [
    Case("abbreviations", {"ord_no": "order_id", "cust_no": "customer_id", "amt": "amount",
                           "qty": "quantity", "ccy": "currency", "ctry": "country", "ord_ts": "ordered_at",
                           "ship_ts": "shipped_at"}),
    Case("camel case", {"OrderId": "order_id", "CustomerId": "customer_id", "Amount": "amount",
                        "Quantity": "quantity", "CurrencyCode": "currency", "CountryCode": "country",
                        "OrderedAt": "ordered_at", "ShippedAt": "shipped_at"}),
    Case("prefixes", {"src_order_id": "order_id", "src_customer_id": "customer_id", "src_amount": "amount",
                      "src_quantity": "quantity", "src_currency": "currency", "src_country": "country",
                      "src_ordered_at": "ordered_at", "src_shipped_at": "shipped_at"}),
    Case("units and synonyms", {"order_number": "order_id", "client_id": "customer_id", "total_eur": "amount",
                                "units": "quantity", "currency_iso": "currency", "country_iso2": "country",
                                "order_date": "ordered_at", "ship_date": "shipped_at"}),
    Case("german", {"bestellnummer": "order_id", "kundennummer": "customer_id", "betrag": "amount",
                    "menge": "quantity", "waehrung": "currency", "land": "country",
                    "bestellt_am": "ordered_at", "versandt_am": "shipped_at"}),
    Case("french", {"numero_commande": "order_id", "numero_client": "customer_id", "montant": "amount",
                    "quantite": "quantity", "devise": "currency", "pays": "country",
                    "date_commande": "ordered_at", "date_expedition": "shipped_at"}),
    Case("upper snake", {"ORDER_ID": "order_id", "CUSTOMER_ID": "customer_id", "AMOUNT": "amount",
                         "QTY": "quantity", "CURRENCY": "currency", "COUNTRY": "country",
                         "ORDER_TS": "ordered_at", "SHIP_TS": "shipped_at", "LOAD_BATCH": None}),
    Case("swapped timestamps", {"order_id": "order_id", "customer": "customer_id", "value": "amount",
                                "pieces": "quantity", "cur": "currency", "nation": "country",
                                "created": "ordered_at", "dispatched": "shipped_at", "comment": None}),
]  # fmt: skip


def _sample(case: Case, rows: int) -> pl.DataFrame:
    """The case's dataset: new orders (ids and times the table has never seen; customers,
    currencies and countries it has; amounts partly); an unlabelled column holds text of its own."""
    data = {
        source: (_values(canonical, 5_000, rows) if canonical else [f"note {n}" for n in range(rows)])
        for source, canonical in case.columns.items()
    }
    return pl.DataFrame(data)


def measure(rows: int = 200) -> dict[str, Any]:
    contract = resolve_contract("orders", Table.model_validate({"contract": {"columns": ORDERS}}))
    table = pl.DataFrame({c: _values(c, 0, 1000) for c in ORDERS}).with_columns(
        pl.col("quantity").cast(pl.Int32)
    )
    results: list[dict[str, Any]] = []
    for case in CASES:
        found = match_table(_sample(case, rows), contract, TextFormats(), table)
        proposed = {m.source: m for m in found.columns}
        for source, truth in case.columns.items():
            match = proposed.get(source)
            results.append(
                {
                    "case": case.name,
                    "source": source,
                    "truth": truth,
                    "proposed": match.column if match else None,
                    "score": match.score if match else None,
                    "margin": match.margin if match else None,
                    "auto": bool(match and match.score >= AUTO_SCORE and match.margin >= AUTO_MARGIN),
                }
            )
    return {"pairs": results, **_rates(results), "drift": drift_renames(rows)}


def drift_renames(rows: int = 200) -> dict[str, Any]:
    """The same cases as schema drift of an existing dataset: the table's columns missing, the
    source names added; the renames ``classify`` detects, and those ``autonomy.renames`` with
    its documented example (above 0.9, margin 0.2) would approve."""
    from lakesync.conform.drift import classify
    from lakesync.conform.target import target_schema

    contract = resolve_contract("orders", Table.model_validate({"contract": {"columns": ORDERS}}))
    table = pl.DataFrame({c: _values(c, 0, 1000) for c in ORDERS}).with_columns(
        pl.col("quantity").cast(pl.Int32)
    )
    results: list[dict[str, Any]] = []
    for case in CASES:
        sample = _sample(case, rows)
        changes = classify(
            dict(sample.schema), target_schema(contract, None, rescue=False), kind="typed", chunk=sample,
            table_values=lambda column: table[column] if column in table.columns else None,
        )  # fmt: skip
        renamed = {str(c.evidence["source_column"]): c for c in changes if c.change == "renamed"}
        for source, truth in case.columns.items():
            change = renamed.get(source)
            score = float(change.evidence["score"]) if change else None
            margin = float(change.evidence["margin"]) if change else None
            results.append(
                {
                    "case": case.name,
                    "source": source,
                    "truth": truth,
                    "proposed": change.column if change else None,
                    "score": score,
                    "margin": margin,
                    "auto": bool(
                        change
                        and score is not None
                        and margin is not None
                        and score > AUTO_SCORE
                        and margin >= AUTO_MARGIN
                    ),
                }
            )
    return {"pairs": results, **_rates(results)}


def _rates(results: list[dict[str, Any]]) -> dict[str, Any]:
    labelled = [r for r in results if r["truth"] is not None]
    proposed = [r for r in results if r["proposed"] is not None]
    right = [r for r in proposed if r["proposed"] == r["truth"]]
    auto = [r for r in results if r["auto"]]
    auto_right = [r for r in auto if r["proposed"] == r["truth"]]
    return {
        "labelled_pairs": len(labelled),
        "unlabelled_columns": len(results) - len(labelled),
        "proposal_precision": len(right) / len(proposed) if proposed else 1.0,
        "proposal_recall": len(right) / len(labelled) if labelled else 1.0,
        "auto_precision": len(auto_right) / len(auto) if auto else 1.0,
        "auto_recall": len(auto_right) / len(labelled) if labelled else 1.0,
        "wrong": [
            f"{r['case']}: {r['source']} -> {r['proposed']} (is {r['truth']})"
            for r in proposed
            if r not in right
        ],
        "missed": [
            f"{r['case']}: {r['source']} (is {r['truth']})" for r in labelled if r["proposed"] is None
        ],
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"\nColumn matching (lakesync scan) on {result['labelled_pairs']} labelled source -> canonical pairs "
        f"(+{result['unlabelled_columns']} columns with no counterpart):"
    )
    precision, recall = result["proposal_precision"], result["proposal_recall"]
    print(f"  proposals:        precision {precision:.0%}, recall {recall:.0%}")
    print(
        f"  score >= {AUTO_SCORE} and margin >= {AUTO_MARGIN}: precision {result['auto_precision']:.0%}, "
        f"recall {result['auto_recall']:.0%}"
    )
    for line in result["wrong"]:
        print(f"  wrong:  {line}")
    for line in result["missed"]:
        print(f"  missed: {line}")
    drift = result.get("drift")
    if drift:
        print(
            f"  the same as drift of an existing dataset (probable renames): precision "
            f"{drift['proposal_precision']:.0%}, recall {drift['proposal_recall']:.0%}; autonomy.renames "
            f"above {AUTO_SCORE}, margin {AUTO_MARGIN}: precision {drift['auto_precision']:.0%}, "
            f"recall {drift['auto_recall']:.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = measure()
    if args.json:
        print(json.dumps(result, default=str))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

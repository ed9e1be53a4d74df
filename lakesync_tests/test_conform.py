"""Conform: canonical names and types, and never a value changed by a cast."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl
import pytest

from lakesync.config.contracts import resolve_contract
from lakesync.config.models import Table
from lakesync.conform import (
    ConformRules,
    TextFormats,
    classify,
    conform_chunk,
    convert,
    rename,
    target_schema,
)
from lakesync.read import ROW
from lakesync_tests.lakes import ORDERS_CONTRACT

I64_MAX = 2**63 - 1
UTC_ = pl.Datetime("us", "UTC")


def converted(
    values: list[object], target: pl.DataType, dtype: pl.DataType | None = None, **formats: object
) -> tuple[list[object], list[bool]]:
    result = convert(pl.Series("c", values, dtype=dtype), target, TextFormats(**formats))  # type: ignore[arg-type]
    return result.values.to_list(), result.bad.to_list()


@pytest.mark.parametrize(
    ("values", "source", "target", "expected", "bad"),
    [
        ([I64_MAX, -(2**63)], pl.Int64, pl.Float64, [None, -9.223372036854776e18], [True, False]),
        ([2**53, 2**53 + 1], pl.Int64, pl.Float64, [9007199254740992.0, None], [False, True]),
        (
            [1.5, 2.0, float("nan"), float("inf")],
            pl.Float64,
            pl.Int64,
            [None, 2, None, None],
            [True, False, True, True],
        ),
        ([0.1, 0.5], pl.Float64, pl.Float32, [None, 0.5], [True, False]),
        ([1, 127, 128], pl.Int64, pl.Int8, [1, 127, None], [False, False, True]),
        (
            [1.005, 0.1, 12345678.91],
            pl.Float64,
            pl.Decimal(10, 2),
            [None, Decimal("0.10"), Decimal("12345678.91")],
            [True, False, False],
        ),
        ([I64_MAX], pl.Int64, pl.Decimal(38, 0), [Decimal(I64_MAX)], [False]),
        ([2**31], pl.Int64, pl.Int32, [None], [True]),
        ([1, 2], pl.Int32, pl.Int64, [1, 2], [False, False]),
    ],
)
def test_numeric_conversions_never_lose_a_value(
    values: list[object], source: pl.DataType, target: pl.DataType, expected: list[object], bad: list[bool]
) -> None:
    assert converted(values, target, source) == (expected, bad)


@pytest.mark.parametrize(
    ("text", "target", "expected", "bad"),
    [
        (
            ["1", "-5", "9223372036854775807", "9223372036854775808", "1.0", "x", None],
            pl.Int64(),
            [1, -5, I64_MAX, None, None, None, None],
            [False, False, False, True, True, True, False],
        ),
        (
            ["1.5", "NaN", "-inf", "1,5"],
            pl.Float64(),
            [1.5, float("nan"), float("-inf"), None],
            [False, False, False, True],
        ),
        (
            ["1.23", "1.230", "1.234", "1e3", "123456789.1"],
            pl.Decimal(10, 2),
            [Decimal("1.23"), Decimal("1.23"), None, Decimal("1000.00"), None],
            [False, False, True, False, True],
        ),
        (
            ["true", "FALSE", "1", "0", "maybe"],
            pl.Boolean(),
            [True, False, True, False, None],
            [False, False, False, False, True],
        ),
        (
            ["2026-01-31", "31.01.2026", "11/02/2026"],
            pl.Date(),
            [date(2026, 1, 31), None, None],
            [False, True, True],
        ),
    ],
)
def test_text_parses_strictly(
    text: list[str | None], target: pl.DataType, expected: list[object], bad: list[bool]
) -> None:
    values, flags = converted(text, target)  # type: ignore[arg-type]
    assert flags == bad
    assert [str(v) for v in values] == [str(v) for v in expected]


def test_timestamps_in_text_become_utc_instants_in_the_datasets_zone() -> None:
    text = [
        "2026-01-01T09:00:00+09:00",
        "2026-01-01 12:00:00",
        "2026-06-01T12:00:00Z",
        "1969-07-20T20:17:40Z",
        "2300-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456",
        "2026-01-01T00:00:00.1234567",
        "2026-03-29 02:30:00",
        "yesterday",
    ]
    values, bad = converted(text, UTC_, timezone="Europe/Paris")  # type: ignore[arg-type]
    assert values[:6] == [
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 11, 0, tzinfo=UTC),  # naive: Paris (UTC+1)
        datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
        datetime(2300, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
        - (datetime(2026, 1, 1, 1, tzinfo=UTC) - datetime(2026, 1, 1, tzinfo=UTC)),
    ]
    # nanoseconds would be truncated; 02:30 does not exist in Paris on that night; text is not a time
    assert bad == [False, False, False, False, False, False, True, True, True]


def test_ambiguous_timestamps_are_never_guessed() -> None:
    # polars alone would read 11/02/2026 as the 11th of February (day-first).
    values, bad = converted(["11/02/2026 03:15", "2026-11-02 03:15"], UTC_)  # type: ignore[arg-type]
    assert values == [None, datetime(2026, 11, 2, 3, 15, tzinfo=UTC)]
    assert bad == [True, False]


def test_timestamps_with_an_explicit_format() -> None:
    values, bad = converted(
        ["11/03/2026 14:05", "2026-11-03 14:05"],
        UTC_,
        timestamp_format="%m/%d/%Y %H:%M",
        timezone="America/New_York",
    )  # type: ignore[arg-type]
    assert values == [datetime(2026, 11, 3, 19, 5, tzinfo=UTC), None]
    assert bad == [False, True]


def test_typed_timestamps_keep_their_instant_and_refuse_lost_precision() -> None:
    ns = pl.Series("c", [1_700_000_000_123_456_000, 1_700_000_000_123_456_789]).cast(
        pl.Datetime("ns", "Asia/Tokyo")
    )
    result = convert(ns, UTC_, TextFormats())
    assert result.values.to_list()[0] == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert result.bad.to_list() == [False, True]
    early = pl.Series("c", [datetime(1900, 1, 1), datetime(2500, 1, 1)], dtype=pl.Datetime("us"))
    result = convert(early, UTC_, TextFormats())
    assert result.values.to_list() == [datetime(1900, 1, 1, tzinfo=UTC), datetime(2500, 1, 1, tzinfo=UTC)]
    assert not result.bad.any()
    days = convert(pl.Series("c", [datetime(2026, 1, 1), datetime(2026, 1, 1, 5)]), pl.Date(), TextFormats())
    assert days.values.to_list() == [date(2026, 1, 1), None] and days.bad.to_list() == [False, True]


def orders_target(rescue: bool = False):  # type: ignore[no-untyped-def]
    contract = resolve_contract("orders", Table.model_validate({"contract": ORDERS_CONTRACT}))
    return contract, target_schema(contract, None, rescue=rescue)


def test_conform_maps_names_converts_types_and_reports_failed_values() -> None:
    _, target = orders_target()
    raw = pl.DataFrame(
        {
            ROW: [1, 2, 3],
            "OrderID": ["1", "2", "three"],
            "CustomerID": ["5", "6", "7"],
            "Amount": ["1.5", "N/A", "3"],
            "Currency": ["EUR", "USD", "GBP"],
            "OrderedAt": ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None],
        }
    )
    mapping = {
        "OrderID": "order_id",
        "CustomerID": "customer_id",
        "Amount": "amount",
        "Currency": "currency",
        "OrderedAt": "ordered_at",
    }
    chunk = rename(raw, mapping)
    result = conform_chunk(chunk, target, ConformRules(source_names={v: k for k, v in mapping.items()}))
    assert result.frame.columns == [ROW, "order_id", "customer_id", "amount", "currency", "ordered_at"]
    assert result.frame.schema["ordered_at"] == UTC_
    failures = sorted(result.failures.select("row", "column", "rule", "message").rows())
    assert failures == [
        (2, "amount", "type(float64)", "Amount: 'N/A' is not a valid float64"),
        (3, "order_id", "type(int64)", "OrderID: 'three' is not a valid int64"),
    ]


def test_a_missing_required_column_fails_every_row_and_is_never_filled_in() -> None:
    _, target = orders_target()
    chunk = pl.DataFrame({ROW: [1, 2], "order_id": [1, 2], "amount": [1.0, 2.0]})
    result = conform_chunk(chunk, target, ConformRules(formats=TextFormats()))
    missing = result.failures.filter(pl.col("rule") == "column_missing")
    assert sorted(set(missing["column"].to_list())) == ["customer_id"]
    assert missing["row"].to_list() == [1, 2]


def test_rescue_keeps_unknown_columns_and_unconvertible_values_as_json() -> None:
    _, target = orders_target(rescue=True)
    chunk = pl.DataFrame(
        {
            ROW: [1, 2],
            "order_id": [1, 2],
            "customer_id": [3, 4],
            "amount": ["1.5", "lots"],
            "currency": ["EUR", "EUR"],
            "ordered_at": [None, None],
            "note": ["a", None],
        }
    )
    result = conform_chunk(chunk, target, ConformRules(rescue_values=True, rescue_unknown=True))
    assert result.failures.is_empty()
    assert result.frame["amount"].to_list() == [1.5, None]
    assert result.frame["_rescued_data"].to_list() == ['{"note":"a"}', '{"amount":"lots"}']


def test_a_mapping_that_collides_with_an_existing_column_is_an_error() -> None:
    with pytest.raises(ValueError, match="maps to 'order_id', but the file also has a column 'order_id'"):
        rename(pl.DataFrame({"order_no": [1], "order_id": [2]}), {"order_no": "order_id"})


def test_drift_is_classified_per_column() -> None:
    _, target = orders_target()
    source = {
        "order_id": pl.Int32(),  # safe widening
        "customer_id": pl.Float64(),  # unsafe: each value is checked
        "amount": pl.Float64(),  # same
        "ordered_at": pl.Datetime("ms", "UTC"),  # safe widening
        "channel": pl.String(),  # added
    }  # currency missing
    changes = {c.column: c.change for c in classify(source, target, kind="typed")}
    assert changes == {
        "order_id": "widened",
        "customer_id": "narrowed",
        "ordered_at": "widened",
        "channel": "added",
        "currency": "missing",
    }
    text = {
        "order_id": pl.String(),
        "customer_id": pl.String(),
        "amount": pl.String(),
        "currency": pl.String(),
        "ordered_at": pl.String(),
    }
    assert classify(text, target, kind="text") == ()  # CSV: text is parsed per value, not drift
    # JSON writes times as text, but text where a number belongs is a type change; parquet: any text
    in_json = {c.column: c.change for c in classify(text, target, kind="json")}
    assert in_json == {"order_id": "narrowed", "customer_id": "narrowed", "amount": "narrowed"}
    in_parquet = {c.column: c.change for c in classify(text, target, kind="typed")}
    assert in_parquet == {
        "order_id": "narrowed",
        "customer_id": "narrowed",
        "amount": "narrowed",
        "ordered_at": "narrowed",
    }

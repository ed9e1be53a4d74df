"""Validate: pandera decides; the polars fast path only finds candidates, and must agree."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakesync.config.contracts import resolve_contract
from lakesync.config.models import Table
from lakesync.read import ROW
from lakesync.validate import UniqueTracker, compile_contract, validate_chunk
from lakesync.validate.contract import _pandera_failures

CONTRACT = {
    "columns": {
        "id": {"type": "int64", "nullable": False, "unique": True},
        "amount": {"type": "float64", "checks": {"ge": 0, "lt": 1000}},
        "currency": {"type": "string", "checks": {"isin": ["EUR", "USD"]}},
        "code": {"type": "string", "checks": {"regex": "^[A-Z]{2}[0-9]", "str_length": {"min": 3, "max": 5}}},
        "qty": {"type": "int32", "nullable": False, "checks": {"gt": 0, "le": 100}},
    }
}


def compiled():  # type: ignore[no-untyped-def]
    return compile_contract(resolve_contract("t", Table.model_validate({"contract": CONTRACT})))


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    schema = {
        ROW: pl.Int64,
        "id": pl.Int64,
        "amount": pl.Float64,
        "currency": pl.String,
        "code": pl.String,
        "qty": pl.Int32,
    }
    return pl.DataFrame([{ROW: i + 1, **r} for i, r in enumerate(rows)], schema=schema)


def test_the_fast_path_compiles_every_builtin_check() -> None:
    contract = compiled()
    assert contract.fast
    assert {c.rule for c in contract.fast_checks or ()} >= {
        "not_nullable",
        "greater_than_or_equal_to(0)",
        "less_than(1000)",
        "isin(['EUR', 'USD'])",
    }


def test_failures_name_row_column_rule_and_value() -> None:
    rows = [
        {"id": 1, "amount": 5.0, "currency": "EUR", "code": "AB1", "qty": 1},
        {"id": 2, "amount": -1.0, "currency": "XXX", "code": "AB1", "qty": 1},
        {"id": None, "amount": 1.0, "currency": "USD", "code": "ab1", "qty": 0},
    ]
    failures = validate_chunk(frame(rows), compiled(), UniqueTracker(("id",)))
    found = sorted(failures.select("row", "column", "rule").rows())
    assert found == [
        (2, "amount", "greater_than_or_equal_to(0)"),
        (2, "currency", "isin(['EUR', 'USD'])"),
        (3, "code", "str_matches('^[A-Z]{2}[0-9]')"),
        (3, "id", "not_nullable"),
        (3, "qty", "greater_than(0)"),
    ]
    message = failures.filter(pl.col("column") == "amount")["message"][0]
    assert message == "amount: '-1.0' fails greater_than_or_equal_to(0)"


def test_uniqueness_holds_across_the_chunks_of_a_file_and_keeps_the_first() -> None:
    tracker = UniqueTracker(("id",))
    row = {"amount": 1.0, "currency": "EUR", "code": "AB1", "qty": 1}
    first = frame([{"id": 1, **row}, {"id": 2, **row}, {"id": 1, **row}])
    second = frame([{"id": 2, **row}, {"id": 3, **row}]).with_columns(pl.col(ROW) + 3)
    one = validate_chunk(first, compiled(), tracker)
    two = validate_chunk(second, compiled(), tracker)
    assert one.select("row", "message").rows() == [(3, "id: duplicate value '1' (first in row 1)")]
    assert two.select("row", "message").rows() == [(4, "id: duplicate value '2' (first in row 2)")]


values = st.fixed_dictionaries(
    {
        "id": st.one_of(st.none(), st.integers(-5, 5)),
        "amount": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64)),
        "currency": st.one_of(st.none(), st.sampled_from(["EUR", "USD", "GBP", ""])),
        "code": st.one_of(st.none(), st.text(alphabet="AB1z", max_size=6)),
        "qty": st.integers(-2, 102),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, min_size=1, max_size=12))
def test_the_fast_path_and_pandera_find_the_same_failing_rows(rows: list[dict[str, object]]) -> None:
    data = frame(rows)
    contract = compiled()
    fast = validate_chunk(data, contract, UniqueTracker(()))
    slow = _pandera_failures(data, contract.contract.schema)
    assert sorted(set(fast["row"].to_list())) == sorted(set(slow["row"].to_list()))
    assert sorted(fast.select("row", "rule").rows()) == sorted(slow.select("row", "rule").rows())


def test_a_model_with_a_custom_check_goes_through_pandera_for_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "custom_contracts.py").write_text(
        textwrap.dedent(
            """\
            import pandera.polars as pa
            import polars as pl

            class Even(pa.DataFrameModel):
                n: pl.Int64 = pa.Field()

                @pa.check("n", name="is_even")
                def even(cls, data) -> pl.LazyFrame:
                    return data.lazyframe.select(pl.col(data.key) % 2 == 0)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    contract = compile_contract(
        resolve_contract("t", Table.model_validate({"contract": {"model": "custom_contracts:Even"}}))
    )
    assert not contract.fast
    data = pl.DataFrame({ROW: [1, 2, 3], "n": [2, 3, 4]})
    failures = validate_chunk(data, contract, UniqueTracker(()))
    assert failures.select("row", "rule").rows() == [(2, "is_even")]

"""Personal data declared in the contract: hashed, masked or dropped before anything is written."""

from __future__ import annotations

import gzip
import hmac
import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

import lakesync
from lakesync.cli.main import main
from lakesync.config import load_config
from lakesync.config.contracts import PiiRule
from lakesync.conform.pii import PiiError, PiiPolicy, hasher
from lakesync.defs import build_definitions
from lakesync.features import build_feature
from lakesync.governance.erase import erase_subject
from lakesync.governance.pii_apply import apply_pii
from lakesync.pipeline import sync_table
from lakesync.state.audit import AuditLog
from lakesync.state.lakehouse import Lakehouse
from lakesync_tests.lakes import T0, local_lake, touch, write_config

KEY = "test-pii-key-0123456789abcdef"
"""A key for tests only (the tests set $LAKESYNC_PII_KEY to it)."""

CONTRACT: dict[str, Any] = {
    "columns": {
        "customer_id": {"type": "int64", "nullable": False, "subject_key": "customer", "pii": "hash"},
        "email": {"type": "string", "pii": "hash", "checks": {"regex": "^[^@]+@[^@]+$"}},
        "phone": {"type": "string", "pii": "mask", "mask": {"keep_suffix": 4}},
        "ssn": {"type": "string", "pii": "drop", "checks": {"regex": r"^\d{3}-\d{2}-\d{4}$"}},
        "amount": {"type": "float64", "checks": {"ge": 0}},
    }
}

# Planted people: none of these values may be written anywhere but the source lakes.
ALICE = {"customer_id": 7001, "email": "planted.alice@example.org", "phone": "+44 7700 900123",
         "ssn": "123-45-6789", "amount": 10.0}  # fmt: skip
BOB = {"customer_id": 7002, "email": "planted.bob@example.org", "phone": "+1 555 0100 777",
       "ssn": "987-65-4321", "amount": -5.0}  # fmt: skip  # breaks the contract: quarantined
CAROL = {"customer_id": 7003, "email": "planted-carol-without-at", "phone": "+33 6 12 34 56 78",
         "ssn": "555-12-3456", "amount": 3.0}  # fmt: skip  # her email fails the regex: quarantined
SECRETS = [str(person[c]) for person in (ALICE, BOB, CAROL) for c in ("email", "phone", "ssn")]


def _people(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": start + i,
            "email": f"person{start + i}@example.com",
            "phone": f"+49 30 {start + i:07d}",
            "ssn": f"{100 + i % 800:03d}-{10 + i % 80:02d}-{1000 + i:04d}",
            "amount": float(i),
        }
        for i in range(count)
    ]


def _lakes(root: Path) -> Path:
    """Two lakes holding the same people (one CSV, one parquet) feeding ``customers``."""
    csv = root / "crm" / "customers.csv"
    csv.parent.mkdir(parents=True)
    rows = [*_people(1, 20), ALICE, BOB, CAROL]
    pl.DataFrame(rows).write_csv(csv)
    touch(csv, T0)
    parquet = root / "shop" / "customers.parquet"
    parquet.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([ALICE, *_people(100, 5)]), parquet)
    touch(parquet, T0)
    return write_config(
        root,
        lakes={
            "crm": local_lake(
                root / "crm", {"customers": {"pattern": "*.csv", "format": "csv", "table": "customers"}}
            ),
            "shop": local_lake(
                root / "shop",
                {"customers": {"pattern": "*.parquet", "format": "parquet", "table": "customers"}},
            ),
        },
        # A merge on the hashed key: Alice, in both lakes, is one row (the other version superseded).
        tables={
            "customers": {
                "contract": CONTRACT,
                "mode": "merge",
                "keys": ["customer_id"],
                "max_failed_rows": "50%",
            }
        },
        features={
            "spend": {"inputs": ["customers"], "group_by": ["email"], "aggregations": {"n": "count()"}}
        },
    )


def _texts(path: Path) -> list[bytes]:
    """What a file holds, decoded where it is encoded: Parquet values, gzip, else raw bytes."""
    data = path.read_bytes()
    texts = [data]
    if data[:4] == b"PAR1":
        table = pq.read_table(path)
        texts.append(json.dumps(table.to_pylist(), default=str).encode())
    if data[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(data))
    return texts


def _leaks(root: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for text in _texts(path):
            found.extend(f"{path}: {s!r}" for s in secrets if s.encode() in text)
    return sorted(set(found))


def _hash(value: object) -> str:
    return hmac.digest(KEY.encode(), str(value).encode(), "sha256").hex()


def test_personal_data_is_treated_before_any_byte_is_written(
    tmp_path: Path, dagster_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LAKESYNC_PII_KEY", KEY)
    config_path = _lakes(tmp_path)
    config = load_config(config_path)
    defs = build_definitions(config)
    with dg.DagsterInstance.get() as instance:
        run = defs.resolve_job_def("ingest_customers").execute_in_process(instance=instance)
        assert run.success
        built = defs.resolve_job_def("build_spend").execute_in_process(instance=instance)
        assert built.success
        schema = instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "customers"]))
    lakehouse = Lakehouse(config.lakehouse.uri)
    table = pl.read_delta(lakehouse.table_uri("customers"))
    # Hashed values are the keyed SHA-256 of the value, the same from both lakes (joins still work);
    # masked values keep what the contract says; dropped columns are not there at all.
    assert "ssn" not in table.columns
    assert table.height == 23 + 6 - 2 - 1
    alice = table.filter(pl.col("email") == _hash(ALICE["email"]))
    assert alice["customer_id"].to_list() == [_hash(7001)] and alice["phone"].to_list() == ["***0123"]
    superseded = pl.read_delta(lakehouse.superseded_uri("customers"))
    assert superseded["email"].to_list() == [_hash(ALICE["email"])]  # the same hash from the other lake
    assert {alice["_lakesync_file"][0], superseded["_lakesync_file"][0]} == {
        "crm/customers.csv",
        "shop/customers.parquet",
    }
    assert table.schema["customer_id"] == pl.String
    fields = {f.name: f.metadata for f in DeltaTable(lakehouse.table_uri("customers")).schema().fields}
    assert fields["email"] == {"lakesync.pii": "hash"} and fields["phone"] == {"lakesync.pii": "mask:0:4"}
    kept = {f.name: f.metadata for f in DeltaTable(lakehouse.superseded_uri("customers")).schema().fields}
    assert kept["email"] == {"lakesync.pii": "hash"} and "ssn" not in kept
    # Quarantined rows keep their reasons, with treated values, and no dropped column.
    rejected = pl.read_delta(lakehouse.quarantine_uri("customers")).sort("row")
    assert rejected["row"].to_list() == [22, 23]
    bob, carol = (json.loads(r) for r in rejected["raw"])
    assert bob == {
        "customer_id": _hash(7002),
        "email": _hash(BOB["email"]),
        "phone": "*** 777",
        "amount": "-5.0",
    }
    assert carol["email"] == _hash(CAROL["email"]) and "ssn" not in carol
    assert f"email: '{_hash(CAROL['email'])}' fails str_matches" in rejected["reason"][1]
    # The Dagster column schema says which columns are personal data and how they are stored.
    assert schema is not None and schema.asset_materialization is not None
    columns = {
        c.name: c for c in schema.asset_materialization.metadata["dagster/column_schema"].schema.columns
    }
    assert "ssn" not in columns and columns["email"].tags == {"pii": "hash"}
    assert "PII: hashed (keyed SHA-256, hex)" in (columns["email"].description or "")
    assert columns["phone"].tags == {"pii": "mask"}
    # Nothing written anywhere holds a planted value: lakehouse (Delta data and logs, quarantine,
    # audit, ledger, feature table) and the Dagster instance (event log, run storage, compute logs).
    # Nor the hashing key itself (the run configuration names its variable only).
    assert _leaks(tmp_path / "lakehouse", [*SECRETS, KEY]) == []
    assert _leaks(dagster_home, [*SECRETS, KEY]) == []
    assert not [s for s in [*SECRETS, KEY] if s in caplog.text]
    # Sanity of the search itself: the source lakes do hold them.
    assert len(_leaks(tmp_path / "crm", SECRETS)) == len(SECRETS)
    # A hashed subject key can still be erased by its value.
    receipt = erase_subject(config, Lakehouse(config.lakehouse.uri, pii_key=KEY), "customer", "7001")
    erased = {t.table: t.rows for t in receipt.tables}
    assert (erased["customers"], erased["_superseded/customers"]) == (1, 1)
    assert pl.read_delta(lakehouse.table_uri("customers")).height == 25


def test_hashing_without_a_key_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    config = load_config(_lakes(tmp_path))
    lakehouse = Lakehouse(config.lakehouse.uri)
    with pytest.raises(PiiError, match=r"customer_id, email are `pii: hash`.*\$LAKESYNC_PII_KEY.*is not set"):
        sync_table(config, "customers", lakehouse=lakehouse, run_id="r1")
    with pytest.raises(PiiError, match="shorter than 16 characters"):
        sync_table(
            config, "customers", lakehouse=Lakehouse(config.lakehouse.uri, pii_key="short"), run_id="r1"
        )
    assert not (tmp_path / "lakehouse").exists()


def test_a_column_stored_in_the_clear_is_not_hashed_from_one_day_to_the_next(tmp_path: Path) -> None:
    config_path = _lakes(tmp_path)
    text = config_path.read_text()
    config_path.write_text(text.replace("pii: hash\n", "pii: null\n", 1))  # customer_id in the clear
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri, pii_key=KEY)
    sync_table(config, "customers", lakehouse=lakehouse, run_id="r1")
    config_path.write_text(text)
    later = tmp_path / "shop" / "later.parquet"
    pq.write_table(pa.Table.from_pylist(_people(500, 3)), later)
    with pytest.raises(PiiError, match="makes column 'customer_id' `pii: hash`, but the table already holds"):
        sync_table(load_config(config_path), "customers", lakehouse=lakehouse, run_id="r2")


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 64, b"long key " * 20])
def test_the_fast_hash_is_hmac_sha256(key: bytes) -> None:
    for text in ("", "planted.alice@example.org", "ü" * 100):
        assert hasher(key)(text) == hmac.new(key, text.encode(), "sha256").hexdigest()
    policy = PiiPolicy({"e": PiiRule("hash")}, key=key)
    mostly_repeated = pl.Series("e", ["a", "b", None, "a", "a", "a"])
    distinct = pl.Series("e", ["a", "b", None, "c"])
    for values in (mostly_repeated, distinct):
        treated = policy.treat_text("e", values)
        assert treated is not None and treated.name == "e"
        assert treated.to_list() == [None if v is None else hasher(key)(v) for v in values.to_list()]


def test_rows_stored_before_a_column_was_marked_pii_are_treated_by_pii_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKESYNC_PII_KEY", KEY)
    config_path = _lakes(tmp_path)
    marked = config_path.read_text()
    document = yaml.safe_load(marked)
    for spec in document["tables"]["customers"]["contract"]["columns"].values():
        spec.pop("pii", None)
        spec.pop("mask", None)
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    clear = load_config(config_path)
    lakehouse = Lakehouse(clear.lakehouse.uri, pii_key=KEY)
    sync_table(clear, "customers", lakehouse=lakehouse, run_id="clear")
    build_feature(clear, "spend", lakehouse, run_id="clear")
    lakehouse_dir = tmp_path / "lakehouse"
    assert len(_leaks(lakehouse_dir, SECRETS)) > 0  # everything in the clear, as configured then
    # The contract now marks the columns: syncs stop until the stored rows are treated.
    config_path.write_text(marked)
    config = load_config(config_path)
    pq.write_table(pa.Table.from_pylist(_people(500, 3)), tmp_path / "shop" / "later.parquet")
    with pytest.raises(PiiError, match="run `lakesync pii apply --table customers`"):
        sync_table(config, "customers", lakehouse=lakehouse, run_id="refused")
    args = ["pii", "apply", "--config", str(config_path), "--table", "customers"]
    assert main([*args, "--dry-run"]) == 0
    assert "Personal data treated (dry run)" in capsys.readouterr().out
    assert len(_leaks(lakehouse_dir, SECRETS)) > 0
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "customers  " in out and "untreated values until VACUUM" in out
    table = pl.read_delta(lakehouse.table_uri("customers"))
    assert "ssn" not in table.columns
    alice = table.filter(pl.col("email") == _hash(ALICE["email"]))
    assert alice["customer_id"].to_list() == [_hash(7001)] and alice["phone"].to_list() == ["***0123"]
    assert pl.read_delta(lakehouse.superseded_uri("customers"))["email"].to_list() == [_hash(ALICE["email"])]
    rejected = pl.read_delta(lakehouse.quarantine_uri("customers")).sort("row")
    assert json.loads(rejected["raw"][0])["email"] == _hash(BOB["email"])
    assert f"'{_hash(CAROL['email'])}' fails" in rejected["reason"][1]
    spend = lakesync.feature_values("spend", config=config)
    assert _hash(ALICE["email"]) in spend["email"].to_list()
    # Current versions are clean; the old versions still hold the values until purged.
    assert _leaks(lakehouse_dir, SECRETS)
    assert main([*args, "--purge"]) == 0
    assert "removed" in capsys.readouterr().out
    assert _leaks(lakehouse_dir, SECRETS) == []
    # Syncs go on, exactly once, under the new contract; applying again changes nothing.
    assert sync_table(config, "customers", lakehouse=lakehouse, run_id="after").rows_committed == 3
    assert sync_table(config, "customers", lakehouse=lakehouse, run_id="again").rows_committed == 0
    report = apply_pii(config, lakehouse, "customers")
    assert all(t.version_after is None for t in report.tables)
    assert AuditLog(lakehouse).read().filter(pl.col("kind") == "pii_apply").height == 3


def test_masking_keeps_nulls_and_hides_values_too_short_to_keep_anything() -> None:
    policy = PiiPolicy({"phone": PiiRule("mask", keep_prefix=1, keep_suffix=2)})
    values = pl.Series("phone", ["+44 7700 900123", None, "123", "1234"])
    assert policy.treat_text("phone", values).to_list() == ["+***23", None, "***", "1***34"]  # type: ignore[union-attr]
    assert [policy.treat_value("phone", v) for v in ("+44 7700 900123", "+***23")] == ["+***23", "+***23"]


def test_a_personal_value_rescued_by_drift_policy_is_treated_too(tmp_path: Path) -> None:
    lake = tmp_path / "crm"
    lake.mkdir()
    (lake / "people.csv").write_text("id,phone,badge\n1,+44 7700 900123,17\n2,12345,planted-badge-text\n")
    config = load_config(
        write_config(
            tmp_path,
            lakes={
                "crm": local_lake(lake, {"people": {"pattern": "*.csv", "format": "csv", "table": "people"}})
            },
            tables={
                "people": {
                    "drift": "evolve",  # a value that does not fit its nullable column is rescued
                    "contract": {
                        "columns": {
                            "id": {"type": "int64", "nullable": False},
                            "phone": {"type": "string", "pii": "mask", "mask": {"keep_suffix": 2}},
                            "badge": {"type": "int64", "pii": "hash"},
                        }
                    },
                }
            },
        )
    )
    lakehouse = Lakehouse(config.lakehouse.uri, pii_key=KEY)
    sync_table(config, "people", lakehouse=lakehouse, run_id="r1")
    rows = pl.read_delta(lakehouse.table_uri("people")).sort("id")
    assert rows["badge"].to_list() == [_hash(17), None]
    assert rows["phone"].to_list() == ["***23", "***45"]
    assert json.loads(rows["_rescued_data"][1]) == {"badge": _hash("planted-badge-text")}
    assert _leaks(tmp_path / "lakehouse", ["planted-badge-text", "900123"]) == []

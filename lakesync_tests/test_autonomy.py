"""Autonomy with a safety case: a probable rename above the table's threshold and margin is
approved by lakesync itself (recorded, audited, shown), never for keys, subject keys, personal
data or a narrowing type; `lakesync drift revert` undoes it exactly once, rows conserved."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from lakesync.config import load_config
from lakesync.governance import revert
from lakesync.pipeline import sync_table
from lakesync.state.audit import AuditLog
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger import Ledger
from lakesync_tests.commands import cli
from lakesync_tests.lakes import (
    ORDERS_CONTRACT,
    T0,
    local_lake,
    orders_rows,
    write_config,
    write_orders_parquet,
    write_renamed_orders,
)

AUTONOMY = {"renames": {"auto_approve_above": 0.55, "min_margin": 0.2}}


def _project(root: Path, **contract_changes: Any) -> Path:
    write_orders_parquet(root / "lake" / "a.parquet", orders_rows(1, 100), mtime=T0)
    columns = {**ORDERS_CONTRACT["columns"], **contract_changes}
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders", "drift": "quarantine"}
    return write_config(
        root,
        lakes={"eu": local_lake(root / "lake", {"orders": dataset})},
        tables={"orders": {"contract": {"columns": columns}, "autonomy": AUTONOMY}},
        lakehouse=str(root / "lakehouse"),
    )


def _land_renamed(
    root: Path, name: str, start: int, renames: dict[str, str], hours: int, **cast: Any
) -> None:
    write_renamed_orders(
        root / "lake" / name, orders_rows(start, 100), renames, T0 + timedelta(hours=hours), **cast
    )


def _sync(config_path: Path) -> Any:
    config = load_config(config_path)
    return sync_table(config, "orders", lakehouse=Lakehouse(config.lakehouse.uri), run_id="test")


def test_an_auto_approved_rename_ingests_is_audited_and_is_reverted_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = _project(tmp_path)
    _sync(config_path)
    _land_renamed(tmp_path, "renamed.parquet", 500, {"amount": "order_total"}, hours=1)
    synced = _sync(config_path)
    (dataset,) = synced.datasets
    assert (dataset.rows_committed, dataset.rows_quarantined, dataset.files_quarantined) == (100, 0, 0)
    lakehouse = Lakehouse(str(tmp_path / "lakehouse"))
    table = pl.read_delta(lakehouse.table_uri("orders"))
    assert table.height == 200 and table.filter(pl.col("order_id") >= 500)["amount"].null_count() == 0
    (event,) = DriftLog(lakehouse).events()
    assert (event.status, event.decided_by, event.renames) == (
        "approved",
        "lakesync (auto)",
        {"order_total": "amount"},
    )
    assert event.note is not None and "score" in event.note and "margin" in event.note
    audited = AuditLog(lakehouse).read(table="orders").filter(pl.col("kind") == "drift_decision")
    assert audited["actor"].to_list() == ["lakesync (auto)"]
    listed = cli(capsys, "drift", "list", "--all", "--config", str(config_path))
    assert f"{event.id}  eu.orders  approved" in listed.stdout and "lakesync (auto)" in listed.stdout

    # A crash between moving the rows to quarantine and deleting them from the table ...
    class Crashing(DeltaTable):
        def delete(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("killed")

    monkeypatch.setattr(revert, "DeltaTable", Crashing)
    with pytest.raises(OSError, match="killed"):
        revert.revert_rename(load_config(config_path), lakehouse, event.id, _stores(config_path), actor="me")
    monkeypatch.undo()
    # ... then the command run again: it finishes, each row once in quarantine, none in the table.
    done = cli(capsys, "drift", "revert", event.id, "--config", str(config_path))
    assert done.returncode == 0, done.stderr
    assert (
        f"reverted drift {event.id} of eu.orders: order_total -> amount is no longer mapped; 100 row(s) of 1 file(s)"
        in done.stdout
    )
    table = pl.read_delta(lakehouse.table_uri("orders"))
    quarantine = pl.read_delta(lakehouse.quarantine_uri("orders"))
    moved = quarantine.filter(pl.col("rules").list.contains("reverted_rename"))
    assert table.height == 100 and moved.height == 100  # conserved: 200 = 100 + 100
    assert sorted(moved["row"].to_list()) == list(range(1, 101)) and set(moved["file"]) == {"renamed.parquet"}
    # The ledger says so too: the file is quarantined (its 100 rows moved), the first still ingested.
    state = Ledger(lakehouse).read("eu.orders")
    assert (state.count("ingested"), state.count("quarantined")) == (1, 1)
    (mark,) = (
        Ledger(lakehouse)
        .events_of(["eu.orders"])["eu.orders"]
        .filter(pl.col("run_id") == f"revert:{event.id}")
        .to_dicts()
    )
    assert (mark["path"], mark["event"], mark["rows_committed"], mark["rows_quarantined"]) == (
        "renamed.parquet", "quarantined", -100, 100,
    )  # fmt: skip
    status = cli(capsys, "status", "--config", str(config_path))
    assert status.returncode == 0
    assert re.search(r"eu +orders +orders +2 +2 +1 +1 +0 +0 ", status.stdout), status.stdout
    again = cli(capsys, "drift", "revert", event.id, "--config", str(config_path))
    assert again.returncode == 0 and "is reverted" in again.stdout
    assert pl.read_delta(lakehouse.quarantine_uri("orders")).height == quarantine.height
    assert Ledger(lakehouse).events_of(["eu.orders"])["eu.orders"].height == state.events.height  # once
    (reverted,) = DriftLog(lakehouse).events()
    assert reverted.status == "rejected" and (reverted.note or "").startswith(
        "reverted: order_total -> amount"
    )
    # The next file with the old name follows the dataset's drift policy (quarantine) again.
    _land_renamed(tmp_path, "renamed-2.parquet", 700, {"amount": "order_total"}, hours=2)
    later = _sync(config_path)
    assert (later.datasets[0].files_quarantined, later.datasets[0].rows_committed) == (1, 0)


def test_reverting_a_rename_on_a_merge_table_gives_each_key_back_the_version_it_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _project(tmp_path)
    text = config_path.read_text().replace(
        "  orders:\n    contract:", "  orders:\n    mode: merge\n    keys: [order_id]\n    contract:"
    )
    config_path.write_text(text)
    _sync(config_path)
    lakehouse = Lakehouse(str(tmp_path / "lakehouse"))
    before = pl.read_delta(lakehouse.table_uri("orders")).sort("order_id")
    # Orders 51-150 with the amount renamed: 51-100 are new versions of keys the table holds;
    # in the same batch, an earlier file with new versions of 51-60 that the renamed file beats.
    write_orders_parquet(
        tmp_path / "lake" / "b.parquet", orders_rows(51, 10, amount=999.0), mtime=T0 + timedelta(minutes=30)
    )
    _land_renamed(tmp_path, "renamed.parquet", 51, {"amount": "order_total"}, hours=1)
    assert _sync(config_path).datasets[0].rows_committed == 110
    assert pl.read_delta(lakehouse.superseded_uri("orders")).height == 10  # b's, beaten in the batch
    (event,) = DriftLog(lakehouse).events()
    assert event.decided_by == "lakesync (auto)"
    assert pl.read_delta(lakehouse.table_uri("orders")).height == 150

    done = cli(capsys, "drift", "revert", event.id, "--config", str(config_path))
    assert done.returncode == 0, done.stderr
    assert "100 row(s) of 1 file(s) moved" in done.stdout and "50 key(s) have back the version" in done.stdout
    after = pl.read_delta(lakehouse.table_uri("orders")).sort("order_id")
    # Keys 51-60 have b's version back (it landed after a's), 61-100 a's, 101-150 are gone.
    assert after["order_id"].to_list() == before["order_id"].to_list()
    assert after.filter(pl.col("order_id").is_between(51, 60))["amount"].to_list() == [999.0] * 10
    assert set(after.filter(pl.col("order_id").is_between(51, 60))["_lakesync_file"]) == {"eu/b.parquet"}
    untouched = pl.col("order_id") < 51
    assert_frame_equal(after.filter(~pl.col("order_id").is_between(51, 60)).select(before.columns),
                       before.filter(~pl.col("order_id").is_between(51, 60)))  # fmt: skip
    assert after.filter(untouched).height == 50
    assert pl.read_delta(lakehouse.superseded_uri("orders")).height == 0  # b's rows are in one place
    assert pl.read_delta(lakehouse.quarantine_uri("orders")).height == 100  # rows 51-150 of the file
    again = cli(capsys, "drift", "revert", event.id, "--config", str(config_path))
    assert again.returncode == 0 and "is reverted" in again.stdout
    assert pl.read_delta(lakehouse.table_uri("orders")).height == 100


def _stores(config_path: Path) -> Any:
    from lakesync.discover.stores import default_store

    config = load_config(config_path)
    return {name: default_store(name, lake) for name, lake in config.lakes.items()}


@pytest.mark.parametrize(
    ("renames", "contract", "cast"),
    [
        ({"order_id": "order_ref"}, {}, {}),  # the merge key
        (
            {"customer_id": "client"},
            {"customer_id": {"type": "int64", "nullable": False, "subject_key": "customer"}},
            {},
        ),
        ({"currency": "Currency"}, {"currency": {"type": "string", "pii": "mask"}}, {}),
        (
            {"amount": "order_amount"},
            {"amount": {"type": "int32"}},
            {"order_amount": pa.int64()},
        ),  # narrowing
    ],
    ids=["merge key", "subject key", "personal data", "narrowing type"],
)
def test_never_automatic_for_keys_subjects_personal_data_or_a_narrowing(
    tmp_path: Path,
    renames: dict[str, str],
    contract: dict[str, Any],
    cast: dict[str, Any],
) -> None:
    config_path = _project(tmp_path, **contract)
    # Any rename lakesync detects would be approved, but for what it never maps by itself.
    text = config_path.read_text().replace("auto_approve_above: 0.55", "auto_approve_above: 0.01")
    text = text.replace("min_margin: 0.2", "min_margin: 0.0")
    text = text.replace(
        "  orders:\n    contract:", "  orders:\n    mode: merge\n    keys: [order_id]\n    contract:"
    )
    config_path.write_text(text)
    if "amount" in renames:  # the table's own files have the contract's int32
        _land_renamed(tmp_path, "a.parquet", 1, {}, hours=0, amount=pa.int32())
    _sync(config_path)
    _land_renamed(tmp_path, "renamed.parquet", 1, renames, hours=1, **cast)  # same values: overwhelming
    synced = _sync(config_path)
    assert synced.datasets[0].files_quarantined == 1  # held for a person
    events = [e for e in DriftLog(Lakehouse(str(tmp_path / "lakehouse"))).events() if e.renames]
    assert [(e.status, e.renames) for e in events] == [("open", {v: k for k, v in renames.items()})]


def test_below_the_margin_a_person_decides(tmp_path: Path) -> None:
    config_path = _project(tmp_path)
    text = config_path.read_text().replace("min_margin: 0.2", "min_margin: 0.99")
    config_path.write_text(text)
    _sync(config_path)
    _land_renamed(tmp_path, "renamed.parquet", 500, {"amount": "order_total"}, hours=1)
    assert _sync(config_path).datasets[0].files_quarantined == 1


def _adoption_project(root: Path, mode: str) -> Path:
    write_orders_parquet(root / "lake" / "orders" / "a.parquet", orders_rows(1, 100), mtime=T0)
    dataset = {"pattern": "orders/*.parquet", "format": "parquet", "table": "orders"}
    return write_config(
        root,
        lakes={"eu": local_lake(root / "lake", {"orders": dataset})},
        tables={
            "orders": {
                "mode": "merge",
                "keys": ["order_id"],
                "contract": ORDERS_CONTRACT,
                "autonomy": {"new_datasets": mode},
            }
        },
        lakehouse=str(root / "lakehouse"),
    )


def _land_new_datasets(root: Path) -> None:
    """``returns/``: orders' columns, one in CamelCase; ``refunds/``: the key under another name."""
    for n in range(2):
        _land_renamed(root, f"returns/part-{n}.parquet", 500 + 100 * n, {"amount": "Amount"}, hours=1 + n)
    _land_renamed(root, "refunds/part-0.parquet", 900, {"order_id": "order_no"}, hours=3)


def test_a_new_dataset_with_overwhelming_evidence_is_added_by_lakesync_and_ingested_in_the_same_sync(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _adoption_project(tmp_path, "auto")
    first = cli(capsys, "sync", "--config", str(config_path))
    assert first.returncode == 0, first.stderr
    assert "new datasets" not in first.stdout  # every file belongs to a dataset
    _land_new_datasets(tmp_path)
    before = config_path.read_text()
    second = cli(capsys, "sync", "--config", str(config_path))
    assert second.returncode == 0, second.stderr
    assert re.search(
        r"new datasets: eu: returns/part-\*\.parquet \(2 file\(s\)\) matches no dataset: added as eu\.returns "
        r"into orders by lakesync \(score 0\.\d+, 5 column\(s\)\)",
        second.stdout,
    ), second.stdout
    assert (
        "new datasets: eu: refunds/part-*.parquet (1 file(s)) matches no dataset: not added: order_no -> "
        "order_id: a key, subject-key or personal-data column is never mapped by lakesync"
    ) in second.stdout, [line for line in second.stdout.splitlines() if "new datasets" in line]
    # Written into lakesync.yaml (the user's own text kept), with why, and it validates.
    after = config_path.read_text()
    assert after.startswith(before.rstrip("\n").split("\n")[0]) and "returns:" in after
    assert "Added by lakesync on" in after and "autonomy.new_datasets: auto" in after
    config = load_config(config_path)
    returns = config.lakes["eu"].datasets["returns"]
    assert (returns.pattern, returns.table, returns.columns) == (
        "returns/part-*.parquet",
        "orders",
        {"Amount": "amount"},
    )
    assert "refunds" not in config.lakes["eu"].datasets
    # Ingested by the same sync, each row once; audited.
    table = pl.read_delta(str(tmp_path / "lakehouse" / "orders"))
    assert table.height == 300 and table.filter(pl.col("order_id") >= 500)["amount"].null_count() == 0
    assert table.select("_lakesync_file", "_lakesync_row").unique().height == 300
    (added,) = (
        AuditLog(Lakehouse(str(tmp_path / "lakehouse")))
        .read()
        .filter(pl.col("kind") == "dataset_added")
        .rows(named=True)
    )
    assert (added["lake"], added["dataset"], added["table"], added["actor"]) == (
        "eu",
        "returns",
        "orders",
        "lakesync (auto)",
    )
    assert json.loads(added["detail"])["columns"]["Amount"]["column"] == "amount"
    third = cli(capsys, "sync", "--config", str(config_path))
    assert third.returncode == 0 and "new datasets: eu: returns" not in third.stdout  # a dataset now
    assert "new datasets: eu: refunds/part-*.parquet" in third.stdout  # still waiting for a person
    assert pl.read_delta(str(tmp_path / "lakehouse" / "orders")).height == 300


def test_with_new_datasets_propose_lakesync_only_says_what_it_found(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _adoption_project(tmp_path, "propose")
    _land_new_datasets(tmp_path)
    before = config_path.read_text()
    done = cli(capsys, "sync", "--config", str(config_path))
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"new datasets: eu: returns/part-\*\.parquet \(2 file\(s\)\) matches no dataset: not added: proposed into "
        r"orders \(score [01]\.\d+\); its autonomy\.new_datasets is not auto",
        done.stdout,
    ), done.stdout
    assert config_path.read_text() == before
    assert pl.read_delta(str(tmp_path / "lakehouse" / "orders")).height == 100

"""The lakehouse's own tables: one append-once primitive that either commits once or says why not,
and erasures that are remembered before anything is deleted."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from lakesync.config import load_config
from lakesync.pipeline import sync_table
from lakesync.state import append
from lakesync.state.append import Append, AppendContentionError, append_once
from lakesync.state.lakehouse import Lakehouse, lakehouse_for, transaction_version
from lakesync.state.ledger import Ledger
from lakesync.state.values import FileEntry
from lakesync_tests.commands import cli
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_config, write_orders_parquet

APP = "plan:eu.orders"


@pytest.fixture
def racer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Another writer that always commits first: right after any writer opens the ledger (of the
    lakehouse at ``tmp_path/lakehouse``), it commits the next ``plan:eu.orders`` transaction itself
    (a real Delta commit), so the writer's commit against the snapshot it opened conflicts, every
    time. Returns the racer's commits."""
    Ledger(Lakehouse(str(tmp_path / "lakehouse"))).create()  # the ledger exists: every open races
    monkeypatch.setattr(append, "ATTEMPTS", 4)
    original = Lakehouse.open
    wins: list[int] = []

    def open_and_race(self: Lakehouse, uri: str) -> DeltaTable | None:
        snapshot = original(self, uri)
        if snapshot is not None and uri == self.ledger_uri:
            version = transaction_version(snapshot, APP) + 1
            empty = pa.table({"dataset": pa.array([], pa.string())})
            write_deltalake(
                snapshot.table_uri,
                empty,
                mode="append",
                schema_mode="merge",
                commit_properties=CommitProperties(app_transactions=[Transaction(APP, version)]),
            )
            wins.append(version)
        return snapshot

    monkeypatch.setattr(Lakehouse, "open", open_and_race)
    return wins


def test_a_writer_that_loses_every_race_raises_and_records_nothing(tmp_path: Path, racer: list[int]) -> None:
    lakehouse = Lakehouse(str(tmp_path / "lakehouse"))
    entry = FileEntry("a.parquet", 10, T0)
    with pytest.raises(
        AppendContentionError, match=r"could not record a batch plan of eu\.orders: other writers"
    ):
        Ledger(lakehouse).plan("eu.orders", "orders", lambda state: [entry], run_id="loser")
    assert len(racer) == 4  # one lost race per attempt
    rows = pl.read_delta(lakehouse.ledger_uri)
    assert rows.filter(pl.col("run_id") == "loser").is_empty()  # nothing of the loser is there


def test_append_once_commits_once_and_reports_what_is_already_there(tmp_path: Path) -> None:
    lakehouse = Lakehouse(str(tmp_path / "lakehouse"))
    uri = lakehouse.audit_uri
    rows = pa.table({"kind": ["batch"]})

    def build(snapshot: DeltaTable | None) -> Append[str] | None:
        if transaction_version(snapshot, "audit:eu.orders") >= 1:
            return None
        return Append(rows, transactions={"audit:eu.orders": 1}, value="written")

    first = append_once(lakehouse, uri, build, what="an audit record")
    again = append_once(lakehouse, uri, build, what="an audit record")
    assert (first.written, first.value) == (True, "written")
    assert (again.written, again.version) == (False, first.version)
    assert pl.read_delta(uri).height == 1


def test_a_sync_that_cannot_record_its_plan_exits_non_zero_and_says_why(
    tmp_path: Path, racer: list[int], capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 5), mtime=T0)
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders"}
    config = write_config(
        tmp_path,
        lakes={"eu": local_lake(tmp_path / "eu", {"orders": dataset})},
        tables={"orders": orders_table()},
    )
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 1
    failed = result.stderr.split("Failed:", 1)[1]
    assert "orders: could not record a batch plan of eu.orders: other writers committed" in failed
    assert "nothing was recorded. Run the command again" in failed
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr  # a sentence, not a trace
    assert not Path(lakehouse_for(load_config(config)).table_uri("orders"), "_delta_log").exists()


# -- erasure that cannot be forgotten ---------------------------------------------------------
KILL_POINTS = [
    "after_request",  # the subject is recorded as being erased; no row deleted yet
    "after_first_delete",  # one table's rows deleted, not the others'
    "before_receipt",  # every row deleted, no receipt yet
]
SUBJECT = "1007"

ERASE = """
import os, signal, sys
from lakesync.config import load_config
from lakesync.governance.erase import erase_subject
from lakesync.state.lakehouse import lakehouse_for

point = sys.argv[2]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "after_request":
    import lakesync.governance.erase as erase
    erase._delete = die
elif point == "after_first_delete":
    from deltalake import DeltaTable
    original = DeltaTable.delete
    def once(self, *a, **k):
        result = original(self, *a, **k)
        die()
    DeltaTable.delete = once
else:
    from lakesync.state.audit import AuditLog
    original = AuditLog.append
    def receipt(self, rows, **k):
        if rows and rows[0].get("kind") == "erasure":
            die()
        return original(self, rows, **k)
    AuditLog.append = receipt

config = load_config(sys.argv[1])
erase_subject(config, lakehouse_for(config), "customer", "1007")
sys.exit(3)  # the kill point was never reached
"""


def _customer_lake(root: Path) -> Path:
    write_orders_parquet(root / "eu" / "a.parquet", orders_rows(1, 20), mtime=T0)  # customers 1000..1019
    contract = copy.deepcopy(orders_table())
    contract["contract"]["columns"]["customer_id"]["subject_key"] = "customer"
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders"}
    return write_config(
        root, lakes={"eu": local_lake(root / "eu", {"orders": dataset})}, tables={"orders": contract}
    )


@pytest.mark.parametrize("point", KILL_POINTS)
def test_an_erasure_killed_at_any_step_never_lets_the_subject_back_in(tmp_path: Path, point: str) -> None:
    config_path = _customer_lake(tmp_path)
    config = load_config(config_path)
    lakehouse = lakehouse_for(config)
    sync_table(config, "orders", lakehouse=lakehouse, run_id="r1")
    subject_rows = (
        pl.read_delta(lakehouse.table_uri("orders")).filter(pl.col("customer_id") == int(SUBJECT)).height
    )
    assert subject_rows > 0
    script = tmp_path / "erase.py"
    script.write_text(textwrap.dedent(ERASE))
    killed = subprocess.run(
        [sys.executable, str(script), str(config_path), point],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # A late file brings the subject's rows again: none of them gets in.
    late = orders_rows(100, 20)  # the same customers again
    write_orders_parquet(tmp_path / "eu" / "late.parquet", late, mtime=T0 + timedelta(days=1))
    result = sync_table(config, "orders", lakehouse=lakehouse, run_id="late")
    assert result.rows_erased == sum(1 for r in late if r["customer_id"] == int(SUBJECT)) > 0
    assert result.rows_read == result.rows_committed + result.rows_quarantined + result.rows_erased
    stored = pl.read_delta(lakehouse.table_uri("orders"))
    late_ids = {r["order_id"] for r in late if r["customer_id"] == int(SUBJECT)}
    assert stored.filter(pl.col("order_id").is_in(list(late_ids))).is_empty()
    # Erasing again finishes the job and leaves a receipt.
    again = subprocess.run(
        [
            str(Path(sys.executable).parent / "lakesync"),
            "erase",
            "--subject",
            f"customer={SUBJECT}",
            "--config",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert (
        pl.read_delta(lakehouse.table_uri("orders")).filter(pl.col("customer_id") == int(SUBJECT)).is_empty()
    )
    audit = pl.read_delta(lakehouse.audit_uri)
    kinds = audit.filter(pl.col("kind").is_in(["erasure_request", "erasure"]))["kind"].to_list()
    assert kinds.count("erasure_request") == 2 and "erasure" in kinds
    details = [json.loads(d) for d in audit.filter(pl.col("kind") == "erasure_request")["detail"].to_list()]
    assert all(len(d["subject_hash"]) == 64 and SUBJECT not in json.dumps(d) for d in details)  # hashed only


def test_many_datasets_plan_and_record_in_one_ledger_commit_each(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from lakesync.state.values import FileOutcome

    ledger = Ledger(Lakehouse(str(tmp_path / "lakehouse")))
    at = datetime(2026, 11, 1, tzinfo=UTC)
    files = {k: [FileEntry(f"{k}-{i}.parquet", 10, at) for i in range(3)] for k in ("a.x", "b.y")}
    first = ledger.plan("a.x", "t", lambda _: files["a.x"][:1], run_id="other")  # another planner
    assert first is not None and first.version == 1
    before = DeltaTable(ledger.uri).version()
    wanted = {"a.x": ("t", [files["a.x"][:2], files["a.x"][2:]]), "b.y": ("t", [files["b.y"]])}
    plans = ledger.plan_many(wanted, run_id="sync", known={k: ledger.read(k) for k in wanted})
    assert DeltaTable(ledger.uri).version() == before + 1  # one commit for both datasets
    assert [(p.version, [f.path for f in p.files]) for p in plans["a.x"]] == [
        (2, ["a.x-1.parquet"]),  # a.x-0 was taken by the other planner
        (3, ["a.x-2.parquet"]),
    ]
    assert [p.version for p in plans["b.y"]] == [1]
    assert [p.version for p in ledger.read("a.x").pending] == [1, 2, 3]
    assert ledger.read("a.x").planned_version == 3 and ledger.read("b.y").planned_version == 1
    done = [FileOutcome(e, "ingested", 1, 1, 0) for e in files["a.x"][:1]]
    recorded = ledger.record_many([(first, done), (plans["b.y"][0], [])], table_version=1, run_id="r")
    assert [p.dataset for p in recorded] == ["a.x", "b.y"]
    assert ledger.record_many([(first, done)], table_version=1, run_id="r") == []  # once
    assert [p.version for p in ledger.read("a.x").pending] == [2, 3] and not ledger.read("b.y").pending

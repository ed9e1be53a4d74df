"""The embedded instance's event log: Dagster's SQLite files, written through open connections."""

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from lakesync.defs import event_log
from lakesync.defs.event_log import SqliteEventLog
from lakesync.defs.instance import InstanceError, instance


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="numbers")])
def numbers(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    context.log_event(dg.AssetObservation(asset_key="numbers", metadata={"seen": 1}))
    return dg.MaterializeResult(
        metadata={"rows": 3}, check_results=[dg.AssetCheckResult(check_name="positive", passed=True)]
    )


def _runs(opened: dg.DagsterInstance, count: int) -> list[str]:
    return [dg.materialize([numbers], instance=opened).run_id for _ in range(count)]


def test_an_empty_dagster_home_records_events_dagsters_own_sqlite_storage_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More runs than engines kept, a wipe, then more runs: every event is in Dagster's files,
    where Dagster's own storage (the UI of a project without lakesync's) finds it."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    opened, _ = instance()
    assert isinstance(opened.event_log_storage, SqliteEventLog)
    first = _runs(opened, event_log.SHARDS_KEPT + 2)
    plain = SqliteEventLogStorage(str(tmp_path / "history" / "runs"))
    for run_id in first:
        kinds = [e.dagster_event_type for e in plain.get_logs_for_run(run_id) if e.dagster_event]
        assert dg.DagsterEventType.ASSET_MATERIALIZATION in kinds
        assert dg.DagsterEventType.ASSET_OBSERVATION in kinds
        assert dg.DagsterEventType.ASSET_CHECK_EVALUATION in kinds
        assert kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
    latest = plain.get_latest_materialization_events([dg.AssetKey("numbers")])[dg.AssetKey("numbers")]
    assert latest is not None and latest.run_id == first[-1]

    opened.event_log_storage.wipe()  # its files go: nothing may be written into deleted ones
    again = _runs(opened, 2)
    plain = SqliteEventLogStorage(
        str(tmp_path / "history" / "runs")
    )  # (Dagster's remembers the shards it made)
    assert [e.run_id for e in plain.get_logs_for_run(first[0])] == []
    resumed = opened.get_run_by_id(first[-1])  # a run of before the wipe writes again
    assert resumed is not None
    opened.report_engine_event("after the wipe", resumed)
    assert [e.message for e in plain.get_logs_for_run(first[-1])] == ["after the wipe"]
    latest = plain.get_latest_materialization_events([dg.AssetKey("numbers")])[dg.AssetKey("numbers")]
    assert latest is not None and latest.run_id == again[-1]
    checks = plain.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("numbers"), "positive"), limit=10
    )
    assert {c.run_id for c in checks} == set(again)
    opened.dispose()


def test_without_dagster_home_or_a_folder_the_event_log_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(ValueError, match=r"needs DAGSTER_HOME .* base_dir under event_log_storage"):
        SqliteEventLog()


def test_the_projects_dagster_yaml_with_a_postgres_storage_added_says_what_to_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = (Path(__file__).parents[1] / "dagster.yaml").read_text(encoding="utf-8")
    storage = "storage:\n  postgres:\n    postgres_db: {username: u, password: p, hostname: 127.0.0.1, port: 1, db_name: d}\n"
    (tmp_path / "dagster.yaml").write_text(settings + storage, encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with pytest.raises(InstanceError, match=r"incompatible with .*remove its event_log_storage section"):
        instance()


def _schema(path: Path) -> tuple[object, ...]:
    with sqlite3.connect(path) as db:
        return (
            sorted(db.execute("select type, name, sql from sqlite_master").fetchall()),
            db.execute("select version_num from alembic_version").fetchall(),
            db.execute("pragma journal_mode").fetchall(),
        )


def test_a_new_runs_file_is_the_one_dagster_makes_and_commits_do_not_wait_for_the_disk(
    tmp_path: Path,
) -> None:
    ours, dagsters = SqliteEventLog(str(tmp_path / "ours")), SqliteEventLogStorage(str(tmp_path / "dagster"))
    for storage in (ours, dagsters):
        with storage.run_connection("a-run") as conn:
            synchronous = conn.exec_driver_sql("pragma synchronous").scalar()
        storage.dispose()
        if storage is ours:
            assert synchronous == 1  # NORMAL (Dagster's: FULL, 2)
    made = _schema(tmp_path / "ours" / "a-run.db")
    assert made == _schema(tmp_path / "dagster" / "a-run.db")
    assert made[1] and made[2] == [("wal",)]


def test_a_runs_file_of_an_older_revision_goes_through_dagsters_set_up(tmp_path: Path) -> None:
    """A file whose tables exist without a revision (made before Dagster stamped them) is
    stamped by Dagster's own set-up, not re-created."""
    dagsters = SqliteEventLogStorage(str(tmp_path))
    with dagsters.run_connection("old") as conn:
        conn.exec_driver_sql("delete from alembic_version")
    dagsters.dispose()
    ours = SqliteEventLog(str(tmp_path))
    with ours.run_connection("old") as conn:
        assert conn.exec_driver_sql("select count(*) from event_logs").scalar() == 0
    ours.dispose()
    assert _schema(tmp_path / "old.db")[1] != []

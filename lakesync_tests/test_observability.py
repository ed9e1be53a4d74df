"""Checks, feature tables and maintenance, through real Dagster runs on real Delta tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable

import lakesync
from lakesync.commit.maintenance import maintain_table
from lakesync.config import load_config
from lakesync.config.datasets import SensorSettings, VolumeSettings
from lakesync.config.models import Maintenance
from lakesync.defs import build_definitions
from lakesync.defs.resources import LakehouseResource
from lakesync.defs.ticks import RunInfo, Tick, decide
from lakesync.discover import Discovery
from lakesync.monitor import freshness_verdict, volume_verdict
from lakesync.pipeline import sync_table
from lakesync.pipeline.scan import DatasetScan
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.lakes import (
    T0,
    break_contract,
    contract_lake,
    local_lake,
    orders_rows,
    orders_table,
    write_config,
    write_orders_parquet,
)

ORDERS = dg.AssetKey(["lakehouse", "orders"])
SPEND = dg.AssetKey(["features", "spend"])


def _defs(config_path: Path) -> tuple[dg.Definitions, dict[str, LakehouseResource]]:
    config = load_config(config_path)
    return build_definitions(config), {"lakehouse": LakehouseResource(uri=config.lakehouse.uri)}


def _run(defs: dg.Definitions, job: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False)


def _evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (found,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == name and e.asset_key == ORDERS
    ]
    return found


def test_a_failed_contract_blocks_the_feature_table_until_good_data_lands(tmp_path: Path) -> None:
    config_path = contract_lake(tmp_path)
    defs, _ = _defs(config_path)
    lakehouse = lakehouse_for(load_config(config_path))
    spend_only = dg.AssetSelection.keys(SPEND)
    with dg.instance_for_test() as instance:
        # the daemon's first tick: the input has no data yet, nothing to do
        ticked = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=spend_only)
        assert ticked.get_num_requested(SPEND) == 0
        first = _run(defs, "ingest_orders", instance)
        assert first.success
        contract = _evaluation(first, "contract")
        assert contract.passed and contract.metadata["rows_checked"].value == 100
        assert _evaluation(first, "conservation").passed
        # eager: the feature is requested once its input has data and its blocking checks passed
        ticked = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=spend_only, cursor=ticked.cursor
        )
        assert ticked.get_num_requested(SPEND) == 1
        built = _run(defs, "build_spend", instance)
        assert built.success and built.get_asset_materialization_events()
        spend = lakesync.feature_values("spend", config=config_path).sort("customer_id")
        orders = pl.read_delta(lakehouse.table_uri("orders"))
        expected = (
            orders.group_by("customer_id")
            .agg(pl.len().cast(pl.UInt32).alias("orders"), pl.col("amount").sum().alias("total"))
            .sort("customer_id")
        )
        assert spend.select("customer_id", "total").equals(expected.select("customer_id", "total"))
        assert spend["orders"].to_list() == expected["orders"].to_list()

        break_contract(tmp_path)
        failed = _run(defs, "ingest_orders", instance)
        assert not failed.success  # the blocking check failed with ERROR
        contract = _evaluation(failed, "contract")
        assert (contract.passed, contract.severity) == (False, dg.AssetCheckSeverity.ERROR)
        assert contract.metadata["rows_failed"].value == 60
        assert contract.metadata["rows_checked"].value == 100
        by_rule = contract.metadata["failures_by_rule"].value
        assert "| greater_than_or_equal_to(0) | amount | 60 |" in by_rule
        assert "b.parquet" in contract.metadata["failure_examples"].value
        assert "| eu.orders | 2 | 100 | 60 | 0 | 0 |" in contract.metadata["datasets"].value
        assert "60.00% of rows failed (more than max_failed_rows 10.00%)" in (contract.description or "")
        assert _evaluation(failed, "conservation").passed  # 40 committed + 60 quarantined
        assert DeltaTable(lakehouse.table_uri("orders")).to_pyarrow_table().num_rows == 140
        run = instance.get_run_by_id(failed.run_id)
        assert run is not None
        assert run.tags["lakesync/contract"] == "failed"
        assert run.tags["dagster/retry_on_asset_or_op_failure"] == "false"

        # Neither the daemon's automation nor a manual run updates the feature on top of it.
        ticked = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=spend_only, cursor=ticked.cursor
        )
        assert ticked.get_num_requested(SPEND) == 0
        version = DeltaTable(lakehouse.feature_uri("spend")).version()
        manual = _run(defs, "build_spend", instance)
        assert manual.success and not manual.get_asset_materialization_events()
        blocked = instance.get_run_by_id(manual.run_id)
        assert blocked is not None and "orders: contract check failed" in blocked.tags["lakesync/blocked"]
        assert DeltaTable(lakehouse.feature_uri("spend")).version() == version

        # Good data again: the contract passes, the feature is requested and recomputed.
        write_orders_parquet(
            tmp_path / "lake" / "c.parquet", orders_rows(5000, 50), mtime=T0 + timedelta(hours=2)
        )
        assert _run(defs, "ingest_orders", instance).success
        ticked = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=spend_only, cursor=ticked.cursor
        )
        assert ticked.get_num_requested(SPEND) == 1
        rebuilt = _run(defs, "build_spend", instance)
        assert rebuilt.get_asset_materialization_events()
        assert DeltaTable(lakehouse.feature_uri("spend")).version() == version + 1
        assert lakesync.feature_values("spend", config=config_path)["orders"].sum() == 190


def test_a_run_whose_data_failed_does_not_pause_the_sensor() -> None:
    scan = DatasetScan("eu.orders", Discovery(new=(), changed=(), files=2, bytes=10, newest=None), ())
    from lakesync.state.values import FileEntry

    entry = FileEntry(path="c.parquet", size=10, modified=T0)
    scan = DatasetScan("eu.orders", Discovery((entry,), (), 2, 10, T0), ())
    limits = SensorSettings(max_files=10)
    failed = RunInfo("r1", "FAILURE", "cfg", end_time=999.0)
    assert decide(Tick(scan, "cfg", 1000.0, last=failed), lake="eu", limits=limits).skip is not None
    data_failed = RunInfo("r1", "FAILURE", "cfg", end_time=999.0, data_failed=True)
    assert decide(Tick(scan, "cfg", 1000.0, last=data_failed), lake="eu", limits=limits).new


def _history(rows: list[int], *, start: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "batch": list(range(1, len(rows) + 1)),
            "rows": rows,
            "at": [start + timedelta(days=i) for i in range(len(rows))],
        },
        schema={"batch": pl.Int64, "rows": pl.Int64, "at": pl.Datetime("us", "UTC")},
    )


def test_volume_needs_history_then_judges_batches_and_days() -> None:
    settings = VolumeSettings(tolerance=0.5, min_history=3)
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    short = volume_verdict(
        _history([100, 100], start=now - timedelta(days=2)), settings=settings, latest_batch=2, now=now
    )
    assert short.passed
    assert "batch: 1 of 3 earlier batches needed before judging" in short.description
    normal = _history([100, 110, 90, 100, 105, 95], start=now - timedelta(days=6))
    ok = volume_verdict(normal, settings=settings, latest_batch=6, now=now)
    assert ok.passed and ok.facts["batch_median"] == 100 and ok.description == "passed: within tolerance"
    spike = _history([100, 110, 90, 100, 105, 400], start=now - timedelta(days=6))
    judged = volume_verdict(spike, settings=settings, latest_batch=6, now=now)
    assert not judged.passed and judged.severity == "WARN"
    assert "batch 6 has 400 rows, median of the 5 batches before is 100" in judged.description
    assert "2026-11-19 has 400 rows, median of the 5 days before is 100" in judged.description


def test_freshness_tells_a_quiet_source_from_a_stuck_ingestion() -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    lag = 2 * 3600.0
    fresh = freshness_verdict(
        newest_file=now - timedelta(minutes=30), oldest_waiting=None, last_ingested=now, max_lag=lag, now=now
    )
    assert fresh.passed
    quiet = freshness_verdict(
        newest_file=now - timedelta(hours=5),
        oldest_waiting=None,
        last_ingested=now - timedelta(hours=5),
        max_lag=lag,
        now=now,
    )
    assert (quiet.passed, quiet.severity) == (False, "WARN")
    assert "no new file for 5.0 h (max_lag 2.0 h)" in quiet.description
    stuck = freshness_verdict(
        newest_file=now - timedelta(hours=3),
        oldest_waiting=now - timedelta(hours=3),
        last_ingested=now - timedelta(days=1),
        max_lag=lag,
        now=now,
    )
    assert (stuck.passed, stuck.severity) == (False, "ERROR")
    assert "a new file has waited 3.0 h to be ingested" in stuck.description
    unset = freshness_verdict(newest_file=now, oldest_waiting=None, last_ingested=None, max_lag=None, now=now)
    assert unset.passed and "not judged" in unset.description


def test_the_sensor_reports_freshness_when_it_changes(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "lake" / "a.parquet", orders_rows(1, 5), mtime=T0)
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                tmp_path / "lake",
                {
                    "orders": {
                        "pattern": "*.parquet",
                        "format": "parquet",
                        "table": "orders",
                        "freshness": {"max_lag": "1h"},
                    }
                },
            )
        },
        tables={"orders": orders_table()},
    )
    defs, resources = _defs(config_path)
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("watch_eu__orders")
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources, repository_def=repo) as context:
            first = sensor.evaluate_tick(context)
        (check,) = [e for e in first.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
        assert check.check_name == "freshness" and not check.passed
        assert check.severity == dg.AssetCheckSeverity.ERROR  # a.parquet has waited since T0
        with dg.build_sensor_context(
            instance=instance, resources=resources, repository_def=repo, cursor=first.cursor
        ) as context:
            again = sensor.evaluate_tick(context)
        assert not [e for e in again.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
        sync_table(
            load_config(config_path), "orders", lakehouse=lakehouse_for(load_config(config_path)), run_id="r1"
        )
        with dg.build_sensor_context(
            instance=instance, resources=resources, repository_def=repo, cursor=again.cursor
        ) as context:
            after = sensor.evaluate_tick(context)
        (check,) = [e for e in after.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
        assert check.severity == dg.AssetCheckSeverity.WARN and "no new file for" in (check.description or "")


def test_volume_is_checked_after_each_run(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                lake,
                {
                    "orders": {
                        "pattern": "*.parquet",
                        "format": "parquet",
                        "table": "orders",
                        "volume": {"min_history": 3},
                    }
                },
            )
        },
        tables={"orders": orders_table()},
    )
    defs, _ = _defs(config_path)
    with dg.instance_for_test() as instance:
        verdicts = []
        for n, rows in enumerate([50, 50, 50, 50, 500]):
            write_orders_parquet(
                lake / f"{n}.parquet", orders_rows(n * 1000, rows), mtime=T0 + timedelta(hours=n)
            )
            result = _run(defs, "ingest_orders", instance)
            (volume,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "volume"]
            verdicts.append((volume.passed, volume.metadata["batch_history"].value))
        assert verdicts[:4] == [(True, 0), (True, 1), (True, 2), (True, 3)]
        assert verdicts[4] == (False, 4)


def test_maintenance_compacts_and_vacuums_without_changing_a_row(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for n in range(6):
        write_orders_parquet(lake / f"{n}.parquet", orders_rows(n * 100, 20), mtime=T0 + timedelta(hours=n))
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                lake,
                {
                    "orders": {
                        "pattern": "*.parquet",
                        "format": "parquet",
                        "table": "orders",
                        "sensor": {"max_files": 1},
                    }
                },
            )
        },
        tables={"orders": orders_table(maintenance={"retention": "1s"})},
    )
    config = load_config(config_path)
    lakehouse = lakehouse_for(config)
    for n in range(6):  # one file per run: six small files
        sync_table(config, "orders", lakehouse=lakehouse, run_id=f"r{n}")
    before = pl.read_delta(lakehouse.table_uri("orders")).sort("order_id")
    assert len(DeltaTable(lakehouse.table_uri("orders")).file_uris()) == 6
    import time

    time.sleep(1.1)
    defs, _ = _defs(config_path)
    with dg.instance_for_test() as instance:
        result = _run(defs, "maintain_orders", instance)
        assert result.success
        (observation,) = [
            e.asset_observation_data.asset_observation
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        ]
    facts = {k: v.value for k, v in observation.metadata.items()}
    assert (facts["files_before"], facts["files_after"]) == (6, 1)
    assert facts["files_compacted"] == 6 and facts["files_vacuumed"] == 6
    assert pl.read_delta(lakehouse.table_uri("orders")).sort("order_id").equals(before)
    parquet = list(Path(lakehouse.table_uri("orders")).glob("*.parquet"))
    assert len(parquet) == 1  # the old files are gone from disk
    # exactly-once bookkeeping survives: nothing is ingested twice
    again = sync_table(config, "orders", lakehouse=lakehouse, run_id="r2")
    assert again.rows_committed == 0
    assert maintain_table(lakehouse, "missing", Maintenance()) is None


def test_a_great_expectations_suite_runs_on_the_committed_version(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_orders_parquet(lake / "a.parquet", orders_rows(1, 30), mtime=T0)
    suite = tmp_path / "suite.json"
    suite.write_text(
        json.dumps(
            {
                "name": "orders_suite",
                "expectations": [
                    {
                        "type": "expect_table_row_count_to_be_between",
                        "kwargs": {"min_value": 1, "max_value": 100},
                    },
                    {
                        "type": "expect_column_mean_to_be_between",
                        "kwargs": {"column": "amount", "min_value": 1000, "max_value": 2000},
                    },
                ],
            }
        ),
        encoding="utf-8",
    )
    config_path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                lake, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table(expectations=str(suite))},
    )
    defs, _ = _defs(config_path)
    with dg.instance_for_test() as instance:
        result = _run(defs, "ingest_orders", instance)
        assert result.success  # the suite warns; it does not block
        check = _evaluation(result, "expectations")
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert check.description == "failed: 1 of 2 expectations failed on version 1"
    assert check.metadata["verdict"].value == "failed"
    results = check.metadata["results"].value
    assert "| expect_column_mean_to_be_between | amount | FAILED | 24.5 |" in results
    assert "| expect_table_row_count_to_be_between | (table) | passed | 30 |" in results
    docs = check.metadata["data_docs"].value
    index = Path(docs.removeprefix("file://"))
    assert index == tmp_path / "lakehouse" / "_data_docs" / "index.html" and index.is_file()
    assert "orders_suite" in index.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("features", "problem"),
    [
        (
            {"f": {"inputs": ["nope"], "aggregations": {"n": "count()"}}},
            "features.f.inputs.0: 'nope' is not one of the declared tables",
        ),
        (
            {"f": {"inputs": ["orders"], "group_by": ["who"], "aggregations": {"n": "count()"}}},
            "features.f.group_by.0: 'who' is not a column of 'orders'",
        ),
        (
            {"f": {"inputs": ["orders"], "aggregations": {"n": "median(amount)"}}},
            "'median(amount)' is not an aggregation",
        ),
        ({"f": {"inputs": ["orders"]}}, "features.f: needs aggregations (with group_by) or a function"),
        (
            {
                "f": {
                    "inputs": ["orders"],
                    "group_by": ["customer_id"],
                    "entity": ["customer_id"],
                    "aggregations": {"n": "count()"},
                }
            },
            "features.f.entity: is for a function's result; an aggregation's entity is its group_by",
        ),
    ],
)
def test_feature_settings_are_checked(tmp_path: Path, features: dict[str, object], problem: str) -> None:
    from lakesync.config import ConfigError

    path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                tmp_path, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table()},
        features=features,  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert problem in str(raised.value)


def test_table_check_settings_are_checked(tmp_path: Path) -> None:
    from lakesync.config import ConfigError

    (tmp_path / "old.json").write_text(
        json.dumps({"expectations": [{"expectation_type": "expect_x"}]}), encoding="utf-8"
    )
    path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                tmp_path, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table(max_failed_rows="120%")},
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "tables.orders.max_failed_rows: '120%' must be between 0% and 100%" in str(raised.value)
    path = write_config(
        tmp_path,
        lakes={
            "eu": local_lake(
                tmp_path, {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
            )
        },
        tables={"orders": orders_table(expectations="old.json", maintenance={"cron": "daily"})},
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert "tables.orders.maintenance.cron: 'daily' is not a cron expression" in text
    assert "0.x suites used 'expectation_type'" in text

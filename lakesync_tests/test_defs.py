"""The Dagster wiring: definitions generated from the config, sensors, runs and their metadata."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData

from lakesync.config import load_config
from lakesync.config.datasets import SensorSettings
from lakesync.defs import build_definitions
from lakesync.defs.resources import LakehouseResource
from lakesync.defs.ticks import RETRY_AFTER_SECONDS, Decision, RunInfo, Tick, decide, run_requests
from lakesync.discover import Discovery
from lakesync.pipeline.scan import DatasetScan
from lakesync.state.lakehouse import lakehouse_for
from lakesync.state.ledger import Ledger
from lakesync.state.values import FileEntry
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_config, write_orders_parquet

DEMO_KEYS = {
    "lakes/eu_sales/orders",
    "lakes/eu_sales/customers",
    "lakes/us_sales/orders",
    "lakes/us_sales/customers",
    "lakes/apac_sales/orders",
    "lakehouse/orders",
    "lakehouse/customers",
    "lakehouse/_quarantine/orders",
    "lakehouse/_quarantine/customers",
    "lakehouse/_ledger",
    "lakehouse/_drift",
    "features/customer_spend",
    "lakehouse/_audit",
    "lakehouse/_catalog",
    "online/customer_spend",
}


def repository(config_path: Path) -> dg.RepositoryDefinition:
    return build_definitions(load_config(config_path)).get_repository_def()


def test_definitions_are_generated_from_the_config(demo: Path) -> None:
    repo = repository(demo)
    graph = repo.asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == DEMO_KEYS
    orders = graph.get(dg.AssetKey(["lakehouse", "orders"]))
    assert {k.to_user_string() for k in orders.parent_keys} == {
        "lakes/eu_sales/orders",
        "lakes/us_sales/orders",
        "lakes/apac_sales/orders",
    }
    assert orders.group_name == "lakehouse"
    assert graph.get(dg.AssetKey(["lakes", "us_sales", "orders"])).group_name == "us_sales"
    assert {s.name: s.default_status for s in repo.sensor_defs} == {
        **{
            f"watch_{key}": dg.DefaultSensorStatus.RUNNING
            for key in (
                "eu_sales__orders",
                "eu_sales__customers",
                "us_sales__orders",
                "us_sales__customers",
                "apac_sales__orders",
            )
        },
        "refresh_downstream": dg.DefaultSensorStatus.RUNNING,
    }
    assert {j.name for j in repo.get_all_jobs()} >= {
        "ingest_orders",
        "ingest_customers",
        "build_customer_spend",
        "maintain_orders",
        "maintain_customers",
    }
    assert {s.name: s.cron_schedule for s in repo.schedule_defs} == {
        "maintain_orders_schedule": "0 3 * * *",
        "maintain_customers_schedule": "0 3 * * *",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {
        ("lakehouse/orders", "contract"),
        ("lakehouse/orders", "conservation"),
        ("lakehouse/orders", "expectations"),
        ("lakehouse/customers", "contract"),
        ("lakes/eu_sales/orders", "drift"),
        ("lakes/eu_sales/orders", "volume"),
        ("lakes/eu_sales/orders", "freshness"),
    } <= checks
    assert ("lakehouse/customers", "expectations") not in checks  # only tables naming a suite
    contract_spec = repo.assets_defs_by_key[dg.AssetKey(["lakehouse", "orders"])].get_spec_for_check_key(
        dg.AssetCheckKey(dg.AssetKey(["lakehouse", "orders"]), "contract")
    )
    assert contract_spec.blocking
    feature = graph.get(dg.AssetKey(["features", "customer_spend"]))
    assert {k.to_user_string() for k in feature.parent_keys} == {"lakehouse/orders"}
    assert "all_deps_blocking_checks_passed" in str(feature.automation_condition)
    spec = repo.assets_defs_by_key[dg.AssetKey(["lakehouse", "orders"])].specs_by_key[
        dg.AssetKey(["lakehouse", "orders"])
    ]
    schema = spec.metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns][:5] == [
        "order_id",
        "customer_id",
        "amount",
        "currency",
        "ordered_at",
    ]
    assert schema.columns[0].constraints.nullable is False and schema.columns[0].constraints.unique is True
    lineage = spec.metadata["dagster/column_lineage"]
    sources = {(d.asset_key.path[1], d.column_name) for d in lineage.deps_by_column["order_id"]}
    assert sources == {("eu_sales", "order_no"), ("us_sales", "OrderID"), ("apac_sales", "order_id")}
    assert {"delta", "polars", "pandera"} <= set(spec.kinds)


def test_adding_a_lake_is_a_config_change(tmp_path: Path) -> None:
    datasets = {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
    lakes = {f"lake{i}": local_lake(tmp_path / f"l{i}", datasets) for i in range(3)}
    repo = repository(write_config(tmp_path, lakes=lakes, tables={"orders": orders_table()}))
    names = sorted(s.name for s in repo.sensor_defs)
    assert names == ["refresh_downstream", *(f"watch_lake{i}__orders" for i in range(3))]
    orders = repo.asset_graph.get(dg.AssetKey(["lakehouse", "orders"]))
    assert len(orders.parent_keys) == 3


def test_the_downstream_refresh_and_the_dataset_sensors_tick_as_often_as_configured(tmp_path: Path) -> None:
    datasets = {
        "orders": {
            "pattern": "*.parquet",
            "format": "parquet",
            "table": "orders",
            "sensor": {"interval": "2m"},
        }
    }
    config = write_config(
        tmp_path, lakes={"l": local_lake(tmp_path / "l", datasets)}, tables={"orders": orders_table()}
    )
    assert (
        repository(config).get_sensor_def("refresh_downstream").minimum_interval_seconds == 30
    )  # the default
    text = config.read_text(encoding="utf-8").replace(
        "uri: lakehouse", "uri: lakehouse\n  refresh_interval: 5s"
    )
    config.write_text(text, encoding="utf-8")
    repo = repository(config)
    assert repo.get_sensor_def("refresh_downstream").minimum_interval_seconds == 5
    assert repo.get_sensor_def("watch_l__orders").minimum_interval_seconds == 120


# -- sensors ---------------------------------------------------------------------------------
def tick(
    repo: dg.RepositoryDefinition,
    name: str,
    config: Path,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
) -> SensorExecutionData:
    """One tick of a sensor, evaluated as the daemon does."""
    sensor = repo.get_sensor_def(name)
    resources = {"lakehouse": LakehouseResource(uri=load_config(config).lakehouse.uri)}
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, repository_def=repo
    ) as context:
        return sensor.evaluate_tick(context)


def test_a_sensor_requests_a_run_per_batch_with_deterministic_keys(demo: Path) -> None:
    repo = repository(demo)
    with dg.instance_for_test() as instance:
        first = tick(repo, "watch_eu_sales__orders", demo, instance)
        planned = tick(repo, "watch_eu_sales__orders", demo, instance, cursor=first.cursor)
        again = tick(repo, "watch_eu_sales__orders", demo, instance, cursor=planned.cursor)
    assert len(first.run_requests or []) == 1
    request = (first.run_requests or [])[0]
    assert request.run_key == (planned.run_requests or [])[0].run_key == (again.run_requests or [])[0].run_key
    assert request.tags["lakesync/dataset"] == "eu_sales.orders"
    # The tick planned the batch in the ledger: the run ingests batch 1 and never lists the lake.
    assert request.run_config == {"ops": {"sync_orders": {"config": {"planned": {"eu_sales.orders": 1}}}}}
    assert request.run_key.startswith("eu_sales.orders:batch:1:")
    observation = first.asset_events[0]
    assert isinstance(observation, dg.AssetObservation)
    assert observation.asset_key == dg.AssetKey(["lakes", "eu_sales", "orders"])
    assert observation.metadata["files"].value == 5 and observation.metadata["files_new"].value == 5
    (seen,) = planned.asset_events  # the files are planned now: one batch pending, none new
    assert isinstance(seen, dg.AssetObservation)
    assert seen.metadata["files_new"].value == 0 and seen.metadata["batches_pending"].value == 1
    assert again.asset_events == []  # nothing changed since the last tick: no new observation


def test_a_sensor_skips_when_every_file_is_known(demo: Path) -> None:
    repo = repository(demo)
    with dg.instance_for_test() as instance:
        repo.get_job("ingest_orders").execute_in_process(
            instance=instance,
            resources={"lakehouse": LakehouseResource(uri=load_config(demo).lakehouse.uri)},
        )
        result = tick(repo, "watch_us_sales__orders", demo, instance)
    assert not result.run_requests
    assert "no new files (3 files, all known to the ledger)" in str(result.skip_message)


def test_a_sensor_lists_a_large_lake_a_page_a_tick_and_finds_every_new_file(tmp_path: Path) -> None:
    """``sensor.max_listed``: each tick lists a page and the next resumes after it; a page
    with more new files than one tick plans (5 batches) is listed again until all are planned;
    a file landing in a page already passed is found in the next pass."""
    lake = tmp_path / "l"
    for i in range(8):
        write_orders_parquet(lake / f"f{i}.parquet", orders_rows(i * 10, 2), mtime=T0 + timedelta(minutes=i))
    dataset = {
        "pattern": "*.parquet",
        "format": "parquet",
        "table": "orders",
        "sensor": {"max_listed": 6, "max_files": 1},
    }
    config = write_config(
        tmp_path, lakes={"l": local_lake(lake, {"o": dataset})}, tables={"orders": orders_table()}
    )
    repo = repository(config)
    ticks: list[SensorExecutionData] = []
    with dg.instance_for_test() as instance:

        def next_tick() -> SensorExecutionData:
            ticks.append(
                tick(repo, "watch_l__o", config, instance, cursor=ticks[-1].cursor if ticks else None)
            )
            return ticks[-1]

        def planned() -> list[str]:
            state = Ledger(lakehouse_for(load_config(config))).read("l.o")
            return sorted(state.files.filter(pl.col("status") == "planned")["path"].to_list())

        next_tick()  # f0..f5 listed, five of them planned: the page is listed again
        assert planned() == [f"f{i}.parquet" for i in range(5)]
        next_tick()  # f5 planned; on after f5
        assert planned() == [f"f{i}.parquet" for i in range(6)]
        observed = ticks[-1].asset_events[0]
        assert isinstance(observed, dg.AssetObservation)
        assert "the listing resumes after f5.parquet at the next tick" in str(
            observed.metadata["listing"].value
        )
        next_tick()  # f6, f7: the pass ends
        assert planned() == [f"f{i}.parquet" for i in range(8)]
        write_orders_parquet(lake / "f00.parquet", orders_rows(500, 2), mtime=T0)
        quiet = next_tick()  # a new pass: f0..f00..f4
        assert planned()[0] == "f0.parquet" and "f00.parquet" in planned()
        seen = next_tick()  # f5..f7: nothing new, the pass ends
        (observed,) = (e for e in seen.asset_events if isinstance(e, dg.AssetObservation))
        listing = str(observed.metadata["listing"].value)
        assert listing == "3 files listed after f4.parquet; the next tick lists from the start"
        assert observed.metadata["files"].value == 9 and observed.metadata["files_new"].value == 0
    assert quiet.run_requests and json.loads(seen.cursor or "{}")["lake"] == {
        "files": 9,
        "bytes": sum(f.stat().st_size for f in lake.iterdir()),
    }


def scan(new: int, pending: tuple[int, ...] = ()) -> DatasetScan:
    files = tuple(FileEntry(f"f{i}", 10, T0 + timedelta(minutes=i)) for i in range(new))
    return DatasetScan("eu.orders", Discovery(files, (), new, 10 * new, None), pending)


def decision(s: DatasetScan, **kwargs: object):  # type: ignore[no-untyped-def]
    tick: dict[str, object] = {"config": "c1", "now": 10_000.0}
    tick.update(kwargs)
    return decide(Tick(s, **tick), lake="eu", limits=SensorSettings(max_files=2))  # type: ignore[arg-type]


def requests(
    d: Decision, new: list[tuple[int, int]], pending: list[tuple[int, int]] | None = None
) -> list[str]:
    return [r.run_key for r in run_requests("eu.orders", d, pending=pending or [], new=new, config="c1")]


def test_tick_decisions() -> None:
    assert "no new files" in (decision(scan(0)).skip or "")
    assert [len(batch) for batch in decision(scan(5)).new] == [2, 2, 1]
    assert requests(decision(scan(5)), [(1, 2), (2, 2), (3, 1)]) == [
        "eu.orders:batch:1:c1",
        "eu.orders:batch:2:c1",
        "eu.orders:batch:3:c1",
    ]
    waiting = RunInfo("run-1", "QUEUED", "c1")
    assert "queued run run-1" in (decision(scan(5), waiting=[waiting]).skip or "")
    failed = RunInfo("run-2", "FAILURE", "c1", end_time=10_000.0 - 5)
    paused = decision(scan(5), last=failed).skip or ""
    assert paused.startswith("paused: run run-2 failed") and "lakesync sync --lake eu" in paused
    assert decision(scan(5), last=failed, config="c2").new  # the configuration changed
    old = RunInfo("run-2", "FAILURE", "c1", end_time=10_000.0 - RETRY_AFTER_SECONDS - 1)
    assert requests(decision(scan(5), last=old), [(4, 2)]) == ["eu.orders:retry:run-2"]
    recover = decision(scan(0, pending=(3,)))
    assert recover.pending == (3,) and requests(recover, [], pending=[(3, 10)]) == ["eu.orders:batch:3:c1"]
    # new batches planned behind pending ones: one run each (the first finishes the pending one)
    assert requests(decision(scan(1, pending=(3,))), [(4, 1)], pending=[(3, 10)]) == ["eu.orders:batch:4:c1"]


# -- runs ------------------------------------------------------------------------------------
def test_a_table_run_materializes_with_metadata_and_observes_its_lakes(demo: Path) -> None:
    repo = repository(demo)
    resources = {"lakehouse": LakehouseResource(uri=load_config(demo).lakehouse.uri)}
    with dg.instance_for_test() as instance:
        result = repo.get_job("ingest_orders").execute_in_process(instance=instance, resources=resources)
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "orders"]))
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == 3770
        assert metadata["delta_version"].value == 1
        assert metadata["rows_quarantined"].value == 30
        columns = [c.name for c in metadata["dagster/column_schema"].value.columns]
        assert "channel" in columns and "_lakesync_file" in columns
        assert (
            instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "_quarantine", "orders"]))
            is not None
        )
        assert instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "_ledger"])) is not None
        observed = instance.fetch_observations(dg.AssetKey(["lakes", "us_sales", "orders"]), limit=1).records
        assert observed[0].asset_observation is not None
        assert observed[0].asset_observation.metadata["rows_committed"].value == 1188
        again = repo.get_job("ingest_orders").execute_in_process(instance=instance, resources=resources)
        assert again.success
        assert not again.get_asset_materialization_events()  # nothing new: the table is not re-materialized


def test_a_run_with_an_unreachable_lake_fails_after_committing_the_others(tmp_path: Path) -> None:
    write_orders_parquet(tmp_path / "us" / "a.parquet", orders_rows(1, 3), mtime=T0)
    datasets = {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
    lakes = {"eu": local_lake(tmp_path / "missing", datasets), "us": local_lake(tmp_path / "us", datasets)}
    config_path = write_config(tmp_path, lakes=lakes, tables={"orders": orders_table()})
    repo = repository(config_path)
    with dg.instance_for_test() as instance:
        result = repo.get_job("ingest_orders").execute_in_process(
            instance=instance,
            resources={"lakehouse": LakehouseResource(uri=load_config(config_path).lakehouse.uri)},
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "eu.orders: lake 'eu': the folder" in failure.step_failure_data.error.message  # type: ignore[union-attr]
        assert instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "orders"])) is not None
    assert pl.read_delta(lakehouse_for(load_config(config_path)).table_uri("orders")).height == 3


@pytest.mark.parametrize("selected", [["us_sales.orders"], []])
def test_run_config_selects_datasets(demo: Path, selected: list[str]) -> None:
    repo = repository(demo)
    with dg.instance_for_test() as instance:
        result = repo.get_job("ingest_orders").execute_in_process(
            instance=instance,
            resources={"lakehouse": LakehouseResource(uri=load_config(demo).lakehouse.uri)},
            run_config={"ops": {"sync_orders": {"config": {"datasets": selected}}}},
        )
    lakes = set(
        pl.read_delta(lakehouse_for(load_config(demo)).table_uri("orders"))["_lakesync_file"]
        .str.split("/")
        .list.first()
        .unique()
    )
    assert result.success
    assert lakes == ({"us_sales"} if selected else {"eu_sales", "us_sales", "apac_sales"})


# -- drift, as Dagster shows it ----------------------------------------------------------------
def drift_lakes(tmp_path: Path, *, eu_policy: str = "quarantine") -> Path:
    write_orders_parquet(tmp_path / "eu" / "a.parquet", orders_rows(1, 3), mtime=T0)
    write_orders_parquet(tmp_path / "us" / "c.parquet", orders_rows(10, 3), mtime=T0)
    for lake, start in (("eu", 20), ("us", 30)):
        frame = pl.DataFrame(orders_rows(start, 2)).with_columns(channel=pl.lit("web"))
        frame.write_parquet(tmp_path / lake / "b.parquet")
    datasets = {
        "eu": local_lake(
            tmp_path / "eu",
            {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders", "drift": eu_policy}},
        ),
        "us": local_lake(
            tmp_path / "us", {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
        ),
    }
    return write_config(tmp_path, lakes=datasets, tables={"orders": orders_table(drift="evolve")})


def test_drift_is_checked_and_observed_per_dataset(tmp_path: Path) -> None:
    config_path = drift_lakes(tmp_path)
    repo = repository(config_path)
    resources = {"lakehouse": LakehouseResource(uri=load_config(config_path).lakehouse.uri)}
    with dg.instance_for_test() as instance:
        result = repo.get_job("ingest_orders").execute_in_process(instance=instance, resources=resources)
        checks = {
            e.asset_key.path[1]: e for e in result.get_asset_check_evaluations() if e.check_name == "drift"
        }
        assert (checks["eu"].passed, checks["eu"].severity) == (False, dg.AssetCheckSeverity.ERROR)
        assert checks["eu"].metadata["files_held_back"].value == 1
        # Handled drift passes with warnings: Dagster sees it passed, nothing downstream waits.
        assert checks["us"].passed and checks["us"].metadata["verdict"].value == "passed with warnings"
        assert (checks["us"].description or "").startswith(
            "passed with warnings: 1 file(s) with handled drift"
        )
        observed = instance.fetch_observations(dg.AssetKey(["lakes", "us", "orders"]), limit=1).records[0]
        metadata = observed.asset_observation.metadata  # type: ignore[union-attr]
        assert "channel" not in metadata["schema_before"].value
        assert metadata["schema_after"].value["channel"] == "string"
        # The declared check, run on its own, reports what waits for review.
        checks_job = dg.define_asset_job(
            "drift_checks",
            selection=dg.AssetSelection.checks(
                *(dg.AssetCheckKey(dg.AssetKey(["lakes", lake, "orders"]), "drift") for lake in ("eu", "us"))
            ),
        )
        defs = dg.Definitions.merge(
            build_definitions(load_config(config_path)), dg.Definitions(jobs=[checks_job])
        )
        alone = defs.resolve_job_def("drift_checks").execute_in_process(instance=instance)
        verdicts = {e.asset_key.path[1]: e.passed for e in alone.get_asset_check_evaluations()}
        assert verdicts == {"eu": False, "us": True}


def test_a_dataset_stopped_by_drift_says_why_and_resumes_after_review(tmp_path: Path) -> None:
    from lakesync.pipeline import sync_table
    from lakesync.state.drift_log import DriftLog

    config_path = drift_lakes(tmp_path, eu_policy="fail")
    config = load_config(config_path)
    sync_table(config, "orders", lakehouse=lakehouse_for(config), run_id="r1")
    write_orders_parquet(tmp_path / "eu" / "d.parquet", orders_rows(40, 1), mtime=T0 + timedelta(days=2))
    repo = repository(config_path)
    with dg.instance_for_test() as instance:
        stopped = tick(repo, "watch_eu__orders", config_path, instance)
        assert not stopped.run_requests
        assert re.match(
            r"stopped by schema drift (\w{8}) in b.parquet: new column 'channel'", stopped.skip_message or ""
        )
        (event,) = DriftLog(lakehouse_for(config)).events(dataset="eu.orders")
        DriftLog(lakehouse_for(config)).decide(event.id, "approved", actor="ada")
        resumed = tick(repo, "watch_eu__orders", config_path, instance)
        assert len(resumed.run_requests or []) == 1


def test_a_tick_with_nothing_new_in_its_page_says_where_the_listing_resumes() -> None:
    found = Discovery((), (), 1000, 10, None, started_after="a/1.csv", resume_after="b/9.csv")
    assert decision(DatasetScan("eu.orders", found, ())).skip == (
        "no new files among the 1,000 listed after a/1.csv, all known to the ledger; "
        "the listing resumes after b/9.csv at the next tick"
    )

"""The feature store: values as of any time (point-in-time correct training sets, never from a
later row) and the latest values per entity in the online store, through the CLI and Python."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

import lakesync
from lakesync.config import ConfigError, load_config
from lakesync.features import build_feature
from lakesync.features.build import FeatureError, feature_frame
from lakesync.features.online import lag, publish_feature, store_for, store_path
from lakesync.features.timeline import Labels, training_set
from lakesync.governance.erase import erase_subject
from lakesync.pipeline import sync_table
from lakesync.state.lakehouse import Lakehouse, lakehouse_for
from lakesync_tests.commands import cli
from lakesync_tests.lakes import T0, local_lake, touch, write_config, write_orders_parquet

AGGREGATIONS = {
    "orders": "count()",
    "paid": "count(amount)",
    "total": "sum(amount)",
    "average": "mean(amount)",
    "largest": "max(amount)",
    "smallest": "min(amount)",
    "currencies": "n_unique(currency)",
    "first_currency": "first(currency)",
    "last_at": "max(ordered_at)",
}
CONTRACT = {
    "columns": {
        "order_id": {"type": "int64", "nullable": False},
        "customer_id": {"type": "int64", "nullable": False, "subject_key": "customer"},
        "amount": {"type": "float64"},
        "currency": {"type": "string"},
        "ordered_at": {"type": "datetime"},
    }
}


def _project(root: Path, rows: list[dict[str, Any]], **lakes: Any) -> Path:
    write_orders_parquet(root / "lake" / "a.parquet", rows, mtime=T0)
    datasets = {"orders": {"pattern": "*.parquet", "format": "parquet", "table": "orders"}}
    return write_config(
        root,
        lakes={"shop": local_lake(root / "lake", datasets), **lakes},
        tables={"orders": {"contract": CONTRACT}},
        features={
            "spend": {
                "inputs": ["orders"],
                "group_by": ["customer_id"],
                "timestamp": "ordered_at",
                "aggregations": AGGREGATIONS,
            }
        },
        lakehouse=str(root / "lakehouse"),
    )


def _random_orders(seed: int, count: int, customers: int = 6) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "order_id": n,
            "customer_id": rng.randint(1, customers),
            "amount": None if rng.random() < 0.15 else float(rng.randint(0, 500)),
            "currency": rng.choice(["EUR", "USD", "GBP", None]),
            # few distinct minutes: many events share their time with others
            "ordered_at": T0 + timedelta(minutes=rng.randint(0, 60)),
        }
        for n in range(count)
    ]


def _sync(config_path: Path) -> None:
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri)
    for table in config.tables:
        sync_table(config, table, lakehouse=lakehouse, run_id="test")
    for feature in config.features:
        build_feature(config, feature, lakehouse, run_id="test")
        publish_feature(config, feature, lakehouse)


def _as_of_by_hand(orders: pl.DataFrame, customer: int, at: datetime) -> dict[str, Any]:
    """What the aggregations say over the rows up to ``at``: the definition, row by row."""
    past = orders.filter((pl.col("customer_id") == customer) & (pl.col("ordered_at") <= at))
    past = past.sort("ordered_at", maintain_order=True)
    amounts = past["amount"]
    return {
        "orders": past.height,
        "paid": amounts.count(),
        "total": amounts.sum() if amounts.count() else None,
        "average": amounts.mean(),
        "largest": amounts.max(),
        "smallest": amounts.min(),
        "currencies": past["currency"].n_unique() if past.height else 0,
        "first_currency": past["currency"][0] if past.height else None,
        "last_at": past["ordered_at"].max(),
    }


def test_values_as_of_each_label_equal_the_aggregation_of_the_rows_up_to_it(tmp_path: Path) -> None:
    rows = _random_orders(7, 400)
    config_path = _project(tmp_path, rows)
    _sync(config_path)
    config = load_config(config_path)
    orders = pl.read_delta(str(tmp_path / "lakehouse" / "orders"))
    event_times = orders["ordered_at"].unique().to_list()
    rng = random.Random(3)
    label_times = [
        *(rng.choice(event_times) for _ in range(80)),  # exactly at an event's time
        *(T0 + timedelta(seconds=rng.randint(-600, 4200)) for _ in range(120)),  # between, before, after
    ]
    labels = pl.DataFrame(
        {"customer_id": [rng.randint(0, 7) for _ in label_times], "label_time": label_times}
    )
    got = training_set(config, lakehouse_for(config), Labels(labels, "label_time"), ["spend"]).frame
    assert got.height == labels.height and got.select("customer_id", "label_time").equals(labels)
    for row in got.iter_rows(named=True):
        expected = _as_of_by_hand(orders, row["customer_id"], row["label_time"])
        for name, value in expected.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value), (name, row)
            else:
                assert row[name] == value, (name, row)


def test_a_point_in_time_join_does_not_leak_what_a_latest_value_join_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"order_id": 1, "customer_id": 42, "amount": 10.0, "currency": "EUR", "ordered_at": T0},
        {
            "order_id": 2,
            "customer_id": 42,
            "amount": 100.0,
            "currency": "USD",
            "ordered_at": T0 + timedelta(days=2),
        },
    ]
    config_path = _project(tmp_path, rows)
    _sync(config_path)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "customer_id,label_time,churned\n"
        "42,2026-10-31T23:59:59Z,0\n"  # before the first order
        "42,2026-11-01T00:00:00Z,0\n"  # at it
        "42,2026-11-02T00:00:00Z,1\n"  # between the two
        "42,2026-11-03T02:00:00+01:00,1\n"  # after both (01:00 UTC on the 3rd)
    )
    out = tmp_path / "training.parquet"
    done = cli(
        capsys, "features", "training-set", "--labels", str(labels), "--at", "label_time", "--features", "spend",
        "--out", str(out), "--config", str(config_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "spend: as of each row's label_time, from orders version 1" in done.stderr
    training = pl.read_parquet(out)
    assert training["orders"].to_list() == [0, 1, 1, 2]
    assert training["total"].to_list() == [None, 10.0, 10.0, 110.0]
    assert training["churned"].to_list() == [0, 0, 1, 1]
    latest = lakesync.feature_values("spend", config=config_path)
    naive = pl.read_csv(labels).join(latest, on="customer_id")
    assert naive["total"].to_list() == [110.0] * 4  # what a latest-value join would have taught the model


def test_a_feature_with_a_ttl_gives_nulls_for_labels_longer_than_it_after_the_last_event(
    tmp_path: Path,
) -> None:
    day = timedelta(days=1)
    rows = [
        {"order_id": 1, "customer_id": 42, "amount": 10.0, "currency": "EUR", "ordered_at": T0},
        {"order_id": 2, "customer_id": 42, "amount": 5.0, "currency": "USD", "ordered_at": T0 + 3 * day},
    ]
    config_path = _project(tmp_path, rows)
    spec = yaml.safe_load(config_path.read_text())
    spec["features"]["spend"]["ttl"] = "1d"
    config_path.write_text(yaml.safe_dump(spec))
    _sync(config_path)
    config = load_config(config_path)
    assert config.features["spend"].ttl == 86400.0
    at = [
        T0 - timedelta(seconds=1),  # before the first order: counts 0, as without a ttl
        T0,
        T0 + day,  # exactly the ttl after it: still valid
        T0 + day + timedelta(seconds=1),  # past it: not known to be current
        T0 + 3 * day + timedelta(hours=12),  # within a day of the second order
        T0 + 5 * day,
    ]
    labels = pl.DataFrame({"customer_id": [42] * len(at), "label_time": at})
    got = training_set(config, lakehouse_for(config), Labels(labels, "label_time"), ["spend"]).frame
    assert got["orders"].to_list() == [0, 1, 1, None, 2, None]
    assert got["total"].to_list() == [None, 10.0, 10.0, None, 15.0, None]
    assert got["last_at"].to_list() == [None, T0, T0, None, T0 + 3 * day, None]
    # The table is the same with or without it: the ttl is how old a value may be when read.
    assert lakesync.feature_values("spend", config=config_path)["orders"].to_list() == [2]
    del spec["features"]["spend"]["timestamp"]
    config_path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"features\.spend.*`ttl` needs `timestamp`"):
        load_config(config_path)


def test_lakes_with_different_clocks_meet_on_one_utc_timeline(tmp_path: Path) -> None:
    """An order written in New York local time and one in UTC land on one timeline."""
    us = tmp_path / "us"
    us.mkdir()
    (us / "orders.csv").write_text(
        "order_id,customer_id,amount,currency,ordered_at\n7,42,5.0,USD,2026-11-01 10:00\n"
    )  # 10:00 in New York is 15:00 UTC
    lake = local_lake(
        us,
        {"orders": {"pattern": "*.csv", "format": "csv", "table": "orders", "timezone": "America/New_York"}},
    )
    utc_order = {
        "order_id": 1,
        "customer_id": 42,
        "amount": 10.0,
        "currency": "EUR",
        "ordered_at": T0 + timedelta(hours=12),
    }
    config_path = _project(tmp_path, [utc_order], us=lake)
    _sync(config_path)
    config = load_config(config_path)
    labels = pl.DataFrame(
        {
            "customer_id": [42, 42, 42],
            "at": ["2026-11-01T09:59:00", "2026-11-01T10:00:00", "2026-11-01T14:59:59"],  # New York time
        }
    )
    got = training_set(
        config, lakehouse_for(config), Labels(labels, "at", timezone="America/New_York"), ["spend"]
    )
    # 09:59 NY = 14:59 UTC: the UTC order of 12:00 only; 10:00 NY = 15:00 UTC: both.
    assert got.frame["orders"].to_list() == [1, 2, 2]
    assert got.frame["total"].to_list() == [10.0, 15.0, 15.0]


def test_bad_training_set_requests_are_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = _project(tmp_path, _random_orders(1, 20))
    _sync(config_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("client,when\n1,2026-11-01T00:10:00Z\n2,yesterday\n")
    cases = {
        ("--at", "when"): "feature 'spend' is keyed by customer_id: the labels have no column 'customer_id'",
        ("--at", "label_time", "--entity", "customer_id=client"): "the labels have no column 'label_time'",
        (
            "--at",
            "when",
            "--entity",
            "customer_id=client",
        ): "label column 'when': 'yesterday' is not a date/time",
    }
    for extra, said in cases.items():
        done = cli(
            capsys, "features", "training-set", "--labels", str(labels), "--features", "spend", *extra,
            "--config", str(config_path),
        )  # fmt: skip
        assert done.returncode == 2 and done.stderr.startswith(said), done.stderr
    config = load_config(config_path)
    with pytest.raises(FeatureError, match="unknown feature"):
        training_set(config, lakehouse_for(config), Labels(pl.DataFrame({"at": []}), "at"), ["nope"])


def test_the_online_store_serves_the_latest_committed_values_and_forgets_erased_subjects(
    demo: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "sync", "--config", str(demo)).returncode == 0
    config = load_config(demo)
    path = store_path(config)
    assert path is not None and path.exists()
    feature = lakesync.feature_values("customer_spend", config=config)
    some = feature.sort("customer_id").head(3)
    got = lakesync.get_online_features(
        "customer_spend",
        {"customer_id": some["customer_id"].to_list(), "currency": some["currency"].to_list()},
        config=demo,
    )
    assert got.equals(some.select(got.columns))
    customer, currency = some.row(0, named=True)["customer_id"], some.row(0, named=True)["currency"]
    shown = cli(
        capsys, "features", "get", "customer_spend", "--entity", f"customer_id={customer}",
        "--entity", f"currency={currency}", "--format", "json", "--config", str(demo),
    )  # fmt: skip
    assert json.loads(shown.stdout)["orders"] == some.row(0, named=True)["orders"]
    store = store_for(config)
    assert store is not None
    before = store.published("customer_spend")
    assert before is not None and before.rows == feature.height
    # In Dagster: inputs -> features/customer_spend -> online/customer_spend, materialized by its run.
    recorded = dg.DagsterInstance.get().get_latest_materialization_event(
        dg.AssetKey(["online", "customer_spend"])
    )
    assert recorded is not None and recorded.asset_materialization is not None
    assert recorded.asset_materialization.metadata["feature_version"].value == before.version

    # A new file: the next sync's feature build is published.
    orders = demo.parent / "data" / "lakes" / "apac_sales" / "orders" / "orders-new.ndjson"
    orders.write_text(
        json.dumps({"order_id": 990001, "customer_id": customer, "amount": 1.0, "currency": currency,
                    "ordered_at": "2026-11-20T10:00:00Z"}) + "\n"
    )  # fmt: skip
    assert cli(capsys, "sync", "--config", str(demo)).returncode == 0
    after = store.published("customer_spend")
    assert after is not None and after.version is not None and before.version is not None
    assert after.version > before.version
    again = lakesync.get_online_features(
        "customer_spend", {"customer_id": [customer], "currency": [currency]}, config=demo
    )
    assert again["orders"].to_list() == [some.row(0, named=True)["orders"] + 1]

    erase_subject(config, lakehouse_for(config), "customer", str(customer))
    gone = lakesync.get_online_features(
        "customer_spend", {"customer_id": [customer], "currency": [currency]}, config=demo
    )
    assert gone["orders"].to_list() == [None]  # not served any more
    with pytest.raises(FeatureError, match="is looked up by customer_id, currency, not customer_id"):
        lakesync.get_online_features("customer_spend", {"customer_id": [customer]}, config=demo)


def test_training_set_from_python_on_the_demo(
    demo: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "sync", "--config", str(demo)).returncode == 0
    labels = pl.DataFrame(
        {
            "customer_id": [1, 1],
            "currency": ["EUR", "EUR"],
            "label_time": [datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)],
        }
    )
    got = lakesync.training_set(labels, features=["customer_spend"], at="label_time", config=demo)
    assert got["orders"].to_list()[0] <= got["orders"].to_list()[1]
    assert got.columns[:3] == ["customer_id", "currency", "label_time"]


def _full(config_path: Path, name: str) -> pl.DataFrame:
    """The feature computed whole from its input's current version (in memory)."""

    config = load_config(config_path)
    feature = config.features[name]
    table = feature.inputs[0]
    return feature_frame(feature, {table: pl.scan_delta(str(Path(config.lakehouse.uri) / table))}).collect()


def _served_everything(config: Any, name: str, stored: pl.DataFrame) -> pl.DataFrame:
    """Every entity of the feature table (and one it never had) looked up in the online store."""
    store = store_for(config)
    assert store is not None
    asked = [*stored["customer_id"].to_list(), 10**9]
    got = store.get(name, {"customer_id": asked})
    assert got.row(-1, named=True) == {c: (10**9 if c == "customer_id" else None) for c in got.columns}
    return got.head(-1)


@pytest.mark.parametrize(("mode", "store"), [("append", "sqlite"), ("merge", "redis")])
def test_incremental_updates_equal_a_full_recompute_after_appends_merges_and_erasures(
    tmp_path: Path, mode: str, store: str, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(11 if mode == "append" else 12)
    rows = _random_orders(5, 600, customers=300)
    config_path = _project(tmp_path, rows)
    text = config_path.read_text()
    if mode == "merge":
        text = text.replace(
            "  orders:\n    contract:", "  orders:\n    mode: merge\n    keys: [order_id]\n    contract:", 1
        )
    combinable = {"orders": "count()", "paid": "count(amount)", "total": "sum(amount)", "largest": "max(amount)",
                  "smallest": "min(amount)", "last_at": "max(ordered_at)"}  # fmt: skip
    document = yaml.safe_load(text)
    document["features"]["combined"] = {
        "inputs": ["orders"],
        "group_by": ["customer_id"],
        "aggregations": combinable,
    }
    if store == "redis":  # a real server; the store written as a user writes it
        server = request.getfixturevalue("redis_server")
        document["lakehouse"]["online_store"] = {"redis": f"{server.url}/3", "prefix": "t"}
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri)
    hows: dict[str, list[str]] = {"spend": [], "combined": []}
    publishes: dict[str, list[str]] = {"spend": [], "combined": []}
    earlier: dict[str, list[tuple[datetime, pl.DataFrame]]] = {"spend": [], "combined": []}

    def step() -> None:
        sync_table(config, "orders", lakehouse=lakehouse, run_id="t")
        for name in ("spend", "combined"):
            built = build_feature(config, name, lakehouse, run_id="t")
            hows[name].append(built.how)
            stored = lakesync.feature_values(name, config=config)
            assert built.rows == stored.height
            # The history holds what was current after each earlier build (erased subjects gone).
            for when, then in earlier[name]:
                kept = then.join(stored.select("customer_id"), on="customer_id", how="semi")
                as_of = lakesync.feature_values(name, config=config, as_of=when)
                assert_frame_equal(as_of.join(kept.select("customer_id"), on="customer_id", how="semi"), kept)
            earlier[name].append((datetime.now(tz=UTC), stored))
            whole = _full(config_path, name).select(
                [pl.col(c).cast(stored.schema[c]) for c in stored.columns]
            )
            assert_frame_equal(stored, whole.sort("customer_id"), check_exact=False, rel_tol=1e-9)
            # The online store, updated with only the touched entities where it can, serves the same.
            done = publish_feature(config, name, lakehouse, built)
            assert done is not None and done.version == built.delta_version and done.rows == stored.height
            publishes[name].append(done.how)
            assert_frame_equal(
                _served_everything(config, name, stored), stored, check_exact=False, rel_tol=1e-9
            )
            behind = lag(config, name, lakehouse)
            assert behind is not None and behind.versions_behind == 0

    step()
    next_id, latest = 10_000, rows
    for n in range(9):
        kind = ("append", "update", "erase")[n % 3]
        if kind == "append":
            latest = _random_orders(100 + n, 30, customers=400)  # some customers only here
            for row in latest:
                row["order_id"], next_id = next_id, next_id + 1
            write_orders_parquet(tmp_path / "lake" / f"new-{n}.parquet", latest)
            touch(tmp_path / "lake" / f"new-{n}.parquet", T0 + timedelta(hours=n + 1))
        elif kind == "update" and mode == "merge":  # new versions of keys of the last file only
            changed = [{**r, "amount": float(rng.randint(0, 9))} for r in rng.sample(latest, 5)]
            write_orders_parquet(tmp_path / "lake" / f"update-{n}.parquet", changed)
            touch(tmp_path / "lake" / f"update-{n}.parquet", T0 + timedelta(hours=n + 1))
        else:  # a customer of the last file: its rows are rewritten, not the whole table's
            erase_subject(config, lakehouse, "customer", str(rng.choice(latest)["customer_id"]))
        step()
    for name, built in hows.items():  # every change only touched a few entities: none computed whole
        assert built[0] == "full" and built[1:3] == ["incremental", "incremental"], hows
        # ... and the store took each incremental build's touched entities alone
        assert publishes[name][0] == "whole", publishes
        applied = [p for p, h in zip(publishes[name], built, strict=True) if h == "incremental"]
        assert applied == ["incremental"] * built.count("incremental"), publishes
        if mode == "merge":  # (an erasure in the append table rewrites its first, largest file)
            assert set(built[1:]) == {"incremental"}, hows
        # Each build appended only the entities whose values changed, not every entity again.
        history = pl.read_delta(lakehouse.feature_uri(name))
        assert history.height < 2 * earlier[name][-1][1].height, history.height


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_both_online_stores_publish_apply_a_change_and_refuse_one_they_cannot_apply(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    from lakesync.config.storage import RedisOnlineStore
    from lakesync.features.incremental import Change
    from lakesync.features.serving import Release
    from lakesync.features.store_sqlite import SQLiteStore

    if kind == "redis":
        from lakesync.features.store_redis import RedisStore

        server = request.getfixturevalue("redis_server")
        store: Any = RedisStore(RedisOnlineStore(redis=f"{server.url}/1", prefix="unit"))
    else:
        store = SQLiteStore(tmp_path / "online.sqlite")
    at = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "customer_id": [1, 2, 3, 4],
            "currency": ["EUR", "USD", None, "GBP"],
            "orders": pl.Series([3, 1, 0, 7], dtype=pl.UInt32),
            "total": [12.5, None, None, 0.1 + 0.2],
            "vip": [True, False, None, True],
            "last_at": [at, at + timedelta(seconds=1), None, at - timedelta(days=400)],
        }
    )
    first = store.publish(Release("spend", ("customer_id",), 4, {"orders": 9}), frame)
    assert (first.how, first.version, first.rows) == ("whole", 4, 4)
    every = {"customer_id": [1, 2, 3, 4, 5]}
    assert_frame_equal(store.get("spend", every).head(4), frame)
    assert store.get("spend", every).row(4) == (5, None, None, None, None, None)

    # An incremental build on top of version 4: customer 2 changed, 5 is new, 4 has no row left.
    rows = frame.filter(pl.col("customer_id") == 2).with_columns(
        orders=pl.lit(2, pl.UInt32), total=pl.lit(9.75)
    )
    rows = pl.concat(
        [rows, frame.filter(pl.col("customer_id") == 3).with_columns(customer_id=pl.lit(5, pl.Int64))]
    )
    gone = pl.DataFrame({"customer_id": [4]})
    change = Change(since=4, rows=rows, gone=gone, total=4)
    assert (
        store.apply(Release("spend", ("customer_id",), 6, {"orders": 10}), Change(3, rows, gone, 4)) is None
    )
    retyped = Change(4, rows.with_columns(pl.col("orders").cast(pl.Int64)), gone, 4)
    assert store.apply(Release("spend", ("customer_id",), 6, {"orders": 10}), retyped) is None  # types differ
    done = store.apply(Release("spend", ("customer_id",), 5, {"orders": 10}), change)
    assert done is not None and (done.how, done.version, done.rows) == ("incremental", 5, 4)
    expected = pl.concat([frame.filter(pl.col("customer_id").is_in([1, 3])), rows]).sort("customer_id")
    got = store.get("spend", every)
    assert got.filter(pl.col("customer_id") == 4).row(0) == (4, None, None, None, None, None)  # gone
    assert_frame_equal(got.filter(pl.col("customer_id") != 4), expected)
    held = store.published("spend")
    assert held is not None and (held.version, held.inputs, held.rows) == (5, {"orders": 10}, 4)

    # Published whole again: nothing of the former version is left behind.
    store.publish(Release("spend", ("customer_id",), 6, {"orders": 11}), frame.head(1))
    assert store.get("spend", {"customer_id": [1, 2, 5]})["orders"].to_list() == [3, None, None]
    if kind == "redis":
        import redis

        keys = redis.Redis.from_url(f"{server.url}/1").keys("unit:spend:*")
        assert len(keys) == 2  # meta and the one entity


def test_a_redis_online_store_through_lakesync_sync_shows_its_lag_when_the_server_is_down(
    demo: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str], redis_server: Any, tmp_path: Path
) -> None:
    """The demo with its online store on a real Redis server: served after a sync, updated with
    only the touched entities after a new file, and when the server is down the feature table is
    still committed, its online_store_in_sync check fails with the reason and the next sync
    catches the store up."""
    from lakesync.demo.databases import start_redis

    document = yaml.safe_load(demo.read_text())
    document["lakehouse"]["online_store"] = {
        "redis": f"{redis_server.url}/0",
        "password": {"env": "T_REDIS_PW"},
    }
    demo.write_text(yaml.safe_dump(document, sort_keys=False))
    refused = cli(capsys, "sync", "--config", str(demo))  # the password's variable is not set
    assert "needs its password in $T_REDIS_PW, which is not set" in refused.stdout + refused.stderr
    document["lakehouse"]["online_store"] = {"redis": f"{redis_server.url}/0", "prefix": "demo"}
    demo.write_text(yaml.safe_dump(document, sort_keys=False))
    assert cli(capsys, "sync", "--config", str(demo)).returncode == 0
    config = load_config(demo)
    feature = lakesync.feature_values("customer_spend", config=config)
    keys = {"customer_id": feature["customer_id"].to_list(), "currency": feature["currency"].to_list()}
    assert_frame_equal(lakesync.get_online_features("customer_spend", keys, config=demo), feature)
    instance = dg.DagsterInstance.get()

    def check() -> dict[str, Any]:
        key = dg.AssetCheckKey(dg.AssetKey(["features", "customer_spend"]), "online_store_in_sync")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.event is not None and record.event.dagster_event is not None
        evaluation = record.event.dagster_event.event_specific_data
        values = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
        return {"passed": evaluation.passed, **values}

    assert check()["passed"] and check()["versions_behind"] == 0

    lake = demo.parent / "data" / "lakes" / "apac_sales" / "orders"
    customer, currency = feature.row(0, named=True)["customer_id"], feature.row(0, named=True)["currency"]
    order = {
        "customer_id": customer,
        "amount": 1.0,
        "currency": currency,
        "ordered_at": "2026-11-20T10:00:00Z",
    }
    (lake / "orders-new.ndjson").write_text(json.dumps({"order_id": 990001, **order}) + "\n")
    assert cli(capsys, "sync", "--config", str(demo)).returncode == 0
    online = instance.get_latest_materialization_event(dg.AssetKey(["online", "customer_spend"]))
    assert online is not None and online.asset_materialization is not None
    assert online.asset_materialization.metadata["published"].value == "incremental"
    one = {"customer_id": [customer], "currency": [currency]}
    got = lakesync.get_online_features("customer_spend", one, config=demo)
    assert got["orders"].to_list() == [feature.row(0, named=True)["orders"] + 1]

    # The server goes away: the feature is still committed, the check says how far behind and why.
    port = int(redis_server.url.rsplit(":", 1)[1])
    redis_server.stop()
    (lake / "orders-newer.ndjson").write_text(json.dumps({"order_id": 990002, **order}) + "\n")
    down = cli(capsys, "sync", "--config", str(demo))
    assert down.returncode == 0, down.stdout + down.stderr
    said = f"updated; online store not updated: {redis_server.url}/0 (keys demo:*) failed while"
    assert said in down.stdout and "Connection refused" in down.stdout, down.stdout
    failed = check()
    assert not failed["passed"] and failed["feature_version"] == 2 and "failed while" in failed["error"]
    stored = lakesync.feature_values("customer_spend", config=config)
    assert stored.filter(pl.col("customer_id") == customer)["orders"].to_list()[0] == got["orders"][0] + 1

    # Back (empty, on the same port): the next sync, with nothing new to ingest, publishes it.
    back = start_redis(tmp_path / "redis-again", port=port)
    try:
        assert cli(capsys, "sync", "--config", str(demo)).returncode == 0
        assert check()["passed"]
        again = lakesync.get_online_features("customer_spend", one, config=demo)
        assert again["orders"].to_list() == [got["orders"][0] + 1]
    finally:
        back.stop()


def test_the_feature_table_keeps_each_entitys_values_with_the_time_they_became_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build appends only the entities whose values changed, a removal for an entity left
    without rows, nothing for a forced build that changes nothing; values as of any earlier
    time read back; a new definition starts the history again; many updates are compacted."""
    from deltalake import DeltaTable, write_deltalake

    from lakesync.features import build

    orders = str(tmp_path / "lakehouse" / "orders")

    def rows(*triples: tuple[int, int, float]) -> pl.DataFrame:
        schema = {"order_id": pl.Int64, "customer_id": pl.Int64, "amount": pl.Float64}
        return pl.DataFrame(list(triples), schema=schema, orient="row")

    for part in (
        rows((1, 1, 10.0), (2, 1, 5.0)),
        rows((3, 2, 7.0)),
        rows((5, 3, 3.0), (6, 4, 4.0), (7, 5, 5.0)),
    ):
        write_deltalake(orders, part.to_arrow(), mode="append")  # a file each: a merge rewrites one
    others = [(3, 1, 3.0), (4, 1, 4.0), (5, 1, 5.0)]
    columns = {"order_id": "int64", "customer_id": "int64", "amount": "float64"}
    aggregations = {"orders": "count()", "total": "sum(amount)"}
    config_path = write_config(
        tmp_path,
        lakes={"shop": local_lake(tmp_path / "lake", {})},
        tables={"orders": {"contract": {"columns": {c: {"type": t} for c, t in columns.items()}}}},
        features={"spend": {"inputs": ["orders"], "group_by": ["customer_id"], "aggregations": aggregations}},
        lakehouse=str(tmp_path / "lakehouse"),
    )
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri)
    uri = lakehouse.feature_uri("spend")

    def values(**when: Any) -> list[tuple[Any, ...]]:
        return lakesync.feature_values("spend", config=config, **when).rows()

    first = build_feature(config, "spend", lakehouse, run_id="t")
    initial = [(1, 2, 15.0), (2, 1, 7.0), *others]
    assert first.how == "full" and first.rows == 5 and values() == initial
    after_first = datetime.now(tz=UTC)
    # Customer 2's only order moves to customer 1 (a merge rewrites that order's file).
    DeltaTable(orders).merge(
        rows((3, 1, 7.0)).to_arrow(), "t.order_id = s.order_id", source_alias="s", target_alias="t"
    ).when_matched_update_all().execute()
    moved = build_feature(config, "spend", lakehouse, run_id="t")
    assert moved.how == "incremental" and moved.rows == 4 and values() == [(1, 3, 22.0), *others]
    assert moved.change is not None and moved.change.gone["customer_id"].to_list() == [2]
    history = pl.read_delta(uri).sort("_lakesync_valid_from", "customer_id")
    assert history.height == 7, history  # the first values, customer 1's new ones, 2's removal
    assert history["_lakesync_removed"].to_list() == [False] * 6 + [True]
    assert history.tail(2)["customer_id"].to_list() == [1, 2]
    assert values(as_of=after_first) == initial
    assert values(version=first.delta_version) == initial
    # A forced build from the whole input that changes no value appends nothing, but commits
    # the input versions it was computed from.
    forced = build_feature(config, "spend", lakehouse, run_id="t", force=True)
    assert forced.how == "full" and forced.delta_version == moved.delta_version + 1
    assert pl.read_delta(uri).height == 7 and values() == [(1, 3, 22.0), *others]
    # Customer 2 comes back: a row of its new values after its removal.
    write_deltalake(orders, rows((4, 2, 1.0)).to_arrow(), mode="append")
    assert build_feature(config, "spend", lakehouse, run_id="t").how == "incremental"
    assert values() == [(1, 3, 22.0), (2, 1, 1.0), *others]
    # Many small updates: the table's files are compacted, its history unchanged.
    monkeypatch.setattr(build, "COMPACT_ABOVE_FILES", 3)
    before = pl.read_delta(uri).sort("_lakesync_valid_from", "customer_id")
    for n in range(4):
        write_deltalake(orders, rows((10 + n, 1, 1.0)).to_arrow(), mode="append")
        build_feature(config, "spend", lakehouse, run_id="t")
    assert len(DeltaTable(uri).file_uris()) <= 3
    grown = pl.read_delta(uri).sort("_lakesync_valid_from", "customer_id")
    assert grown.height == before.height + 4 and grown.head(before.height).equals(before)
    assert values() == [(1, 7, 26.0), (2, 1, 1.0), *others]
    # A new definition: the table is rewritten whole, its history starts again.
    changed = config.model_copy(deep=True)
    changed.features["spend"].aggregations["largest"] = "max(amount)"
    rebuilt = build_feature(changed, "spend", lakehouse, run_id="t")
    assert rebuilt.how == "full" and pl.read_delta(uri).height == 5
    largest = [(1, 7, 26.0, 10.0), (2, 1, 1.0, 1.0), *[(*o, o[2]) for o in others]]
    assert lakesync.feature_values("spend", config=changed).rows() == largest


def customer_profile(inputs: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    """A feature function (``lakesync_tests.test_feature_store:customer_profile``)."""
    orders = inputs["orders"]
    return orders.group_by("customer_id").agg(pl.len().alias("orders"), pl.col("amount").sum().alias("total"))


def wider_profile(inputs: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    """``customer_profile`` with one more column."""
    return customer_profile(inputs).with_columns(largest=pl.col("total"))


def every_order(inputs: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    """A function whose rows are orders, not customers."""
    return inputs["orders"].select("customer_id", "amount")


def test_a_function_feature_with_an_entity_keeps_its_history_and_is_served_online(tmp_path: Path) -> None:
    """``entity`` on a function: its result is computed whole at each build and only the
    entities whose values changed are appended (values as of an earlier time read back, the
    online store follows); a result with two rows for an entity, or without the entity's
    column, is refused with a sentence; without ``entity`` the table is rewritten whole."""
    from deltalake import write_deltalake

    orders = str(tmp_path / "lakehouse" / "orders")

    def rows(*triples: tuple[int, int, float]) -> pl.DataFrame:
        schema = {"order_id": pl.Int64, "customer_id": pl.Int64, "amount": pl.Float64}
        return pl.DataFrame(list(triples), schema=schema, orient="row")

    write_deltalake(orders, rows((1, 1, 10.0), (2, 1, 5.0), (3, 2, 7.0), (4, 3, 1.0)).to_arrow())
    columns = {"order_id": "int64", "customer_id": "int64", "amount": "float64"}
    here = "lakesync_tests.test_feature_store"
    config_path = write_config(
        tmp_path,
        lakes={"shop": local_lake(tmp_path / "lake", {})},
        tables={"orders": {"contract": {"columns": {c: {"type": t} for c, t in columns.items()}}}},
        features={
            "profile": {
                "inputs": ["orders"],
                "function": f"{here}:customer_profile",
                "entity": ["customer_id"],
            },
            "plain": {"inputs": ["orders"], "function": f"{here}:customer_profile"},
        },
        lakehouse=str(tmp_path / "lakehouse"),
    )
    config = load_config(config_path)
    lakehouse = Lakehouse(config.lakehouse.uri)
    uri = lakehouse.feature_uri("profile")

    def values(**when: Any) -> list[tuple[Any, ...]]:
        return lakesync.feature_values("profile", config=config, **when).sort("customer_id").rows()

    first = build_feature(config, "profile", lakehouse, run_id="t")
    publish_feature(config, "profile", lakehouse)
    assert first.how == "full" and first.rows == 3
    assert values() == [(1, 2, 15.0), (2, 1, 7.0), (3, 1, 1.0)]
    after_first = datetime.now(tz=UTC)
    write_deltalake(orders, rows((5, 2, 3.0), (6, 4, 2.0)).to_arrow(), mode="append")
    second = build_feature(config, "profile", lakehouse, run_id="t")
    publish_feature(config, "profile", lakehouse)
    assert second.how == "full" and second.rows == 4
    history = pl.read_delta(uri)
    assert history.height == 3 + 2  # customer 2's new values and customer 4: nothing for 1 and 3
    assert values() == [(1, 2, 15.0), (2, 2, 10.0), (3, 1, 1.0), (4, 1, 2.0)]
    assert values(as_of=after_first) == [(1, 2, 15.0), (2, 1, 7.0), (3, 1, 1.0)]
    served = lakesync.get_online_features("profile", {"customer_id": [2, 4, 9]}, config=config)
    assert served.sort("customer_id").select("customer_id", "orders", "total").rows()[:2] == [
        (2, 2, 10.0),
        (4, 1, 2.0),
    ]
    # The function now returns another column: the history starts again, nothing dropped.
    wider = config.model_copy(deep=True)
    wider.features["profile"] = config.features["profile"].model_copy(
        update={"function": f"{here}:wider_profile"}
    )
    restarted = build_feature(wider, "profile", lakehouse, run_id="t")
    assert restarted.how == "full" and pl.read_delta(uri).height == 4
    assert "largest" in pl.read_delta(uri).columns
    # Without an entity: rewritten whole, no history.
    build_feature(config, "plain", lakehouse, run_id="t")
    assert "_lakesync_valid_from" not in pl.read_delta(lakehouse.feature_uri("plain")).columns
    # A result with an entity's rows twice, or without its column.
    broken = config.model_copy(deep=True)
    profile = broken.features["profile"]
    broken.features["profile"] = profile.model_copy(update={"function": f"{here}:every_order"})
    with pytest.raises(FeatureError, match=r"returned 4 rows sharing an entity \(e\.g\. customer_id=[12]\)"):
        build_feature(broken, "profile", lakehouse, run_id="t")
    broken.features["profile"] = profile.model_copy(update={"entity": ["client"]})
    with pytest.raises(FeatureError, match=r"returned no column client \(its entity\)"):
        build_feature(broken, "profile", lakehouse, run_id="t")

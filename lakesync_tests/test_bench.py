"""`make bench` cases run and count what they should (their timings are the bench's business)."""

from __future__ import annotations

from pathlib import Path

from bench import merge


def test_the_merge_bench_loads_and_upserts_every_row_beside_delta_rs(tmp_path: Path) -> None:
    results = merge.measure(rows=20_000, files=4, changes=2_000, repeat=1, data=tmp_path)
    by_case = {r["case"]: r for r in results}
    assert set(by_case) == set(merge.CASES)
    assert by_case["floor"]["rows_committed"] == by_case["append"]["rows_committed"] == 20_000
    assert by_case["merge-first"]["rows_committed"] == 20_000
    # 1,800 new versions of keys the table holds and 200 new keys, by lakesync and by delta-rs
    assert by_case["upsert"]["rows_committed"] == by_case["delta-merge"]["rows_committed"] == 2_000
    assert all(r["peak_rss_mb"] > 0 for r in results)
    merge.report(results)
    assert by_case["upsert"]["ratio_to"] == "delta-merge"


def test_the_many_datasets_bench_syncs_every_dataset_then_finds_nothing_new() -> None:
    from bench import fixed

    result = fixed.measure(lakes=2, datasets=2, tables=2, repeat=1)
    assert (result["datasets"], result["rows"]) == (4, 4_000)
    names = ("floor", "first sync", "nothing new", "first sync (Postgres)", "nothing new (Postgres)")
    assert all(result[name] > 0 for name in names)
    fixed.report(result)


def test_the_small_files_bench_times_the_floor_the_engine_and_the_cli() -> None:
    from bench import fixed

    result = fixed.small_files(files=30, rows=100, repeat=1)
    assert (result["files"], result["rows"]) == (30, 3_000)
    assert all(result[name] > 0 for name in ("floor", "engine", "lakesync sync"))
    fixed.report_small(result)


def test_the_live_sync_bench_times_files_from_landing_to_commit() -> None:
    from bench import events

    result = events.measure(files=4, seconds=2.0, interval=1.0)
    assert result["ingested"] == 4
    assert 0 < result["p50_s"] <= result["p95_s"] <= result["max_s"]
    events.report(result)


def test_the_ledger_bench_finds_the_new_files_among_the_known_ones() -> None:
    from bench import ledger

    whole, page = ledger.measure([3_000], new=7, repeat=1, page=1_000)
    assert (whole["known"], whole["new"]) == (3_000, 7)  # the child asserts it found exactly 7
    assert whole["tick_s"] >= whole["read_s"] > 0 and whole["peak_rss_mb"] > 0
    # A sensor's listing resumed across ticks: the pass's last page, where the 7 new files are.
    assert (whole["listed"], page["listed"], page["page"]) == (3_007, 1_000, 1_000)
    ledger.report([whole, page])


def test_the_query_bench_answers_like_polars_and_prunes_by_statistics(tmp_path: Path) -> None:
    from bench import query

    result = query.measure(200_000, 10, 1, data=tmp_path)
    key_range, everything = result["cases"]["key range"], result["cases"]["aggregate"]
    assert key_range["rows_out"] == 10_000 and everything["rows_out"] == 20  # the child compares answers
    # A key range reads one file of ten (its statistics), the aggregate all of its two columns.
    assert key_range["lakesync query MB read"] < everything["lakesync query MB read"] / 2
    query.report(result)


def test_the_online_bench_publishes_updates_and_looks_every_entity_up_in_both_stores() -> None:
    from bench import online

    results = online.measure(2_000, 50)  # each lookup's value (updated or not) is checked in the bench
    assert set(results) == {"sqlite", "redis"}  # make setup-test installs redis-server
    for result in results.values():
        assert result["entities"] == 2_000 and 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert result["update_100_s"] > 0 and result["publish_s"] > 0
    online.report(results)


def test_the_feature_bench_updates_incrementally_beside_whole(tmp_path: Path) -> None:
    from bench import features

    result = features.measure(20_000, 1, data=tmp_path)  # the child asserts each update was incremental
    assert result["entities"] > 0 and result["incremental_s"] > 0 and result["full_s"] > 0
    alone = result["incremental_alone"]  # each in its own process: the build's peak is its own
    assert alone["s"] > 0 and alone["before_build_mb"] <= alone["peak_rss_mb"]
    features.report(result)


def test_the_events_scale_bench_ingests_the_new_files_without_listing() -> None:
    from bench import events_scale

    (result,) = events_scale.measure([300], new=5)  # a moto server, seeded, in a child process
    assert (result["objects"], result["files_ingested"], result["list_calls"]) == (300, 5, 0)
    events_scale.report([result])


def test_the_contention_bench_commits_every_row_once_and_counts_lost_races() -> None:
    from bench import contention

    result = contention.measure(3, 1)  # three processes at once on a moto lakehouse, then alone
    assert result["errors"] == [] and result["committed"] == 3 * contention.ROWS
    assert (result["duplicate_rows"], result["missing_rows"], result["paths_done_twice"]) == (0, 0, 0)
    assert result["done_events"] == 3 and result["lost_races_total"] == sum(result["lost_races"].values())
    contention.report(result)

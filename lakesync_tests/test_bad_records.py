"""A messy field lake through `lakesync sync`: one bad record never costs its file's good rows, and
every rescued value and broken promise is visible (tables read back after each sync)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakesync.config import load_config
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.commands import cli
from lakesync_tests.lakes import T0, local_lake, touch, write_config

READINGS = {
    "columns": {
        "sensor_id": {"type": "int64", "nullable": False},
        "value": {"type": "float64"},
        "note": {"type": "string"},
    }
}


def readings_lake(
    root: Path,
    files: dict[str, str | bytes],
    *,
    fmt: str,
    pii: str | None = None,
    unique: bool = False,
    **dataset: Any,
) -> Path:
    folder = root / "lake"
    folder.mkdir(parents=True, exist_ok=True)
    for n, (name, content) in enumerate(files.items()):
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        touch(path, T0.replace(minute=n))
    pattern = {"ndjson": "*.ndjson", "csv": "*.csv", "parquet": "*.parquet"}[fmt]
    spec = {"pattern": pattern, "format": fmt, "table": "readings", **dataset}
    # A field lake: a few bad records are normal (the contract check warns below 20%).
    table = {"drift": "rescue", "max_failed_rows": "20%", "contract": copy.deepcopy(READINGS)}
    if pii is not None:
        table["contract"]["columns"]["note"]["pii"] = pii
    if unique:
        table["contract"]["columns"]["sensor_id"]["unique"] = True
    return write_config(
        root, lakes={"field": local_lake(folder, {"readings": spec})}, tables={"readings": table}
    )


def stored(config: Path, kind: str = "") -> pl.DataFrame:
    lakehouse = lakehouse_for(load_config(config))
    uri = lakehouse.quarantine_uri("readings") if kind == "quarantine" else lakehouse.table_uri("readings")
    return pl.read_delta(uri)


def lines(count: int, broken: dict[int, str] | None = None) -> str:
    text = [json.dumps({"sensor_id": i, "value": float(i), "note": f"n{i}"}) for i in range(1, count + 1)]
    for number, line in (broken or {}).items():
        text[number - 1] = line
    return "\n".join(text) + "\n"


def test_a_json_line_that_is_not_json_costs_only_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    config = readings_lake(
        tmp_path, {"a.ndjson": lines(10, {5: '{"sensor_id": 5, "value": 5.0'})}, fmt="ndjson"
    )
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert sorted(stored(config)["sensor_id"].to_list()) == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    (record,) = stored(config, "quarantine").iter_rows(named=True)
    assert (record["level"], record["row"], record["rules"]) == ("row", 5, ["malformed_record"])
    assert record["reason"].startswith("line 5: not valid JSON: Expecting ',' delimiter")
    assert json.loads(record["raw"]) == {"(record)": '{"sensor_id": 5, "value": 5.0'}
    # rows read = committed + quarantined, counting the broken line as read
    assert re.search(r"field\s+readings\s+1\s+1\s+0\s+10\s+9\s+1\n", result.stdout), result.stdout


def test_bad_records_quarantine_file_keeps_the_whole_file_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    files = {"a.ndjson": lines(10, {5: "{oops"}), "b.ndjson": lines(2)}
    config = readings_lake(tmp_path, files, fmt="ndjson", bad_records="quarantine_file")
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    assert sorted(stored(config)["sensor_id"].to_list()) == [1, 2]
    (record,) = stored(config, "quarantine").iter_rows(named=True)
    assert (record["file"], record["level"]) == ("a.ndjson", "file")


def test_an_object_where_a_number_belongs_is_rescued_and_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    nested = json.dumps({"sensor_id": 3, "value": {"reading": 1.0}, "note": "n3"})
    config = readings_lake(tmp_path, {"a.ndjson": lines(10, {3: nested})}, fmt="ndjson")
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rows = stored(config)
    assert rows.height == 10 and not _has_quarantine(config)  # rescued, not quarantined
    (three,) = rows.filter(pl.col("sensor_id") == 3).iter_rows(named=True)
    assert three["value"] is None and json.loads(three["_rescued_data"]) == {"value": '{"reading": 1.0}'}
    assert "Values that did not fit their column, kept in _rescued_data" in result.stdout
    assert "field.readings: 1 row(s); value 1" in result.stdout
    events = DriftLog(lakehouse_for(load_config(config))).events(dataset="field.readings")
    rescued = [e for e in events if e.report.changes[0].change == "rescued"]
    assert rescued and rescued[0].status == "handled"
    assert "1 value(s) of 'value' did not fit float64: kept in _rescued_data" in rescued[0].report.summary()
    listed = cli(capsys, "drift", "list", "--all", "--config", str(config))
    assert "did not fit float64" in listed.stdout


def _has_quarantine(config: Path) -> bool:
    return Path(lakehouse_for(load_config(config)).quarantine_uri("readings"), "_delta_log").exists()


def test_a_csv_record_with_extra_fields_costs_only_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    good = "".join(f"{i},{i}.5,n{i}\n" for i in range(3, 11))
    text = "sensor_id,value,note\n1,1.5,a\n2,2.5,b,x,y\n" + good
    config = readings_lake(tmp_path, {"a.csv": text}, fmt="csv")
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    assert sorted(stored(config)["sensor_id"].to_list()) == [1, *range(3, 11)]
    (record,) = stored(config, "quarantine").iter_rows(named=True)
    assert record["row"] == 2
    assert record["reason"] == "line 3: a record has more fields than the header (5 fields, the header has 3)"
    assert json.loads(record["raw"]) == {"(record)": "2,2.5,b,x,y"}


def test_text_in_a_float_column_of_parquet_is_type_drift_with_the_values_rescued_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    folder = tmp_path / "lake"
    folder.mkdir()
    table = pa.table({"sensor_id": [1, 2, 3], "value": ["1.5", "n/a", "2.5"], "note": ["a", "b", "c"]})
    pq.write_table(table, folder / "a.parquet")
    touch(folder / "a.parquet", T0)
    config = readings_lake(tmp_path, {}, fmt="parquet")
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rows = stored(config).sort("sensor_id")
    assert rows["value"].to_list() == [1.5, None, 2.5]
    assert rows["_rescued_data"].to_list() == [None, '{"value":"n/a"}', None]
    assert "'value' is string, the table has float64: each value is checked" in result.stdout
    assert "field.readings: 1 row(s); value 1" in result.stdout
    checks = [
        line for line in result.stdout.splitlines() if line.startswith("readings") and " contract " in line
    ]
    assert (
        checks
        and "passed with warnings  all 3 rows passed; 1 row(s) with values kept in _rescued_data" in checks[0]
    )


def test_a_short_pii_key_is_one_sentence_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = readings_lake(tmp_path, {"a.ndjson": lines(2)}, fmt="ndjson", pii="hash")
    monkeypatch.setenv("LAKESYNC_PII_KEY", "short")
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "readings:" in line]
    assert "column(s) note are `pii: hash`" in line and "is shorter than 16 characters" in line
    assert "Traceback" not in result.stderr and "DagsterExecutionStepExecutionError" not in result.stderr


def test_a_unique_key_that_comes_again_in_a_later_file_is_quarantined_naming_its_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path
) -> None:
    config = readings_lake(tmp_path, {"a.ndjson": lines(10)}, fmt="ndjson", unique=True)
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    again = [json.dumps({"sensor_id": i, "value": 0.5, "note": "again"}) for i in (3, *range(11, 20))]
    twice = [
        json.dumps({"sensor_id": 12, "value": 0.7, "note": "c"}),
        json.dumps({"sensor_id": 20, "value": 1.0}),
    ]
    folder = tmp_path / "lake"
    (folder / "b.ndjson").write_text("\n".join(again) + "\n")
    touch(folder / "b.ndjson", T0.replace(hour=1))
    (folder / "c.ndjson").write_text("\n".join(twice) + "\n")  # 12 again, in the same sync as b.ndjson
    touch(folder / "c.ndjson", T0.replace(hour=2))
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rows = stored(config)
    assert sorted(rows["sensor_id"].to_list()) == [*range(1, 21)]  # each key once
    assert rows.filter(pl.col("sensor_id") == 3)["note"].to_list() == ["n3"]  # the first one stays
    records = stored(config, "quarantine").sort("file")
    assert records.select("file", "row", "rules").rows() == [
        ("b.ndjson", 1, ["duplicate_key"]),
        ("c.ndjson", 1, ["duplicate_key"]),
    ]
    held, earlier = records["reason"].to_list()
    assert (
        held
        == "sensor_id: duplicate key '3': the table already holds it (field/a.ndjson record 3, Delta version 1)"
    )
    assert (
        earlier
        == "sensor_id: duplicate key '12': an earlier file of this sync holds it (field/b.ndjson record 3)"
    )
    assert json.loads(records["raw"][0])["note"] == "again"
    assert re.search(r"field\s+readings\s+3\s+2\s+0\s+12\s+10\s+2\n", result.stdout), result.stdout


def test_the_values_a_round_holds_are_found_in_its_sorted_part_and_its_tail() -> None:
    from lakesync.pipeline.key_index import Seen

    seen = Seen()
    for start, file in ((0, "a"), (30_000, "b"), (60_000, "c")):  # a and b get merged and sorted
        values = pa.array(range(start + 29_999, start - 1, -1), pa.int64())  # descending: sorting matters
        rows = pa.array(range(1, 30_001), pa.int64())
        seen.add(values, rows, file, (start, start + 29_999))
    candidates = pl.DataFrame({"row": [1, 2, 3, 4], "value": [5, 45_000, 61_000, 95_000]})
    hits = seen.holders(candidates).sort("row")  # the first lookup sorts what the round holds
    assert seen.sorted is not None and seen.sorted.height == 90_000 and not seen.tail
    assert hits.rows() == [(1, 5, 29_995, "a"), (2, 45_000, 15_000, "b"), (3, 61_000, 29_000, "c")]
    seen.add(pa.array([95_000], pa.int64()), pa.array([7], pa.int64()), "d", (95_000, 95_000))
    later = seen.holders(candidates).sort("row")  # the new batch waits in the tail
    assert len(seen.tail) == 1 and later.rows()[-1] == (4, 95_000, 7, "d")

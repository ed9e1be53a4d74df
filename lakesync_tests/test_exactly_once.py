"""Exactly once, proven: kill a sync at every stage boundary, retry, and compare with a clean run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakesync.config import LakesyncConfig, load_config
from lakesync.demo.generate import generate
from lakesync.pipeline import sync_table
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.lakes import (
    T0,
    local_lake,
    orders_rows,
    orders_table,
    write_config,
    write_orders_csv,
    write_orders_parquet,
)

# Each kill point patches one place of the pipeline to SIGKILL the process there.
KILL_POINTS = {
    "after_plan": """
        import lakesync.pipeline.sync as sync
        def patched(*a, **k):
            die()
        sync.commit_round = patched
    """,
    "after_read": """
        import lakesync.pipeline.files as files
        original = files.read_file
        def patched(*a, **k):
            yield from original(*a, **k)
            die()
        files.read_file = patched
    """,
    "after_validation": """
        import lakesync.pipeline.files as files
        original = files.validate_chunk
        def patched(*a, **k):
            result = original(*a, **k)
            die()
            return result
        files.validate_chunk = patched
    """,
    "during_delta_commit": """
        import pyarrow as pa
        import lakesync.commit.delta as delta
        def killing(original):
            def patched(target, rows, stamp, *a, **k):
                reader = rows.to_reader() if isinstance(rows, pa.Table) else rows
                def batches():  # delta-rs reads the rows while it writes: die when it asks again
                    for batch in reader:
                        yield batch
                        break
                    die()
                return original(target, pa.RecordBatchReader.from_batches(reader.schema, batches()), stamp, *a, **k)
            return patched
        delta.append = killing(delta.append)  # append tables, and first loads of merge tables
        delta.merge = killing(delta.merge)
    """,
    "after_delta_commit": """
        import lakesync.state.quarantine as quarantine
        def patched(*a, **k):
            die()
        quarantine.write = patched
    """,
    "during_quarantine_write": """
        import pyarrow as pa
        from lakesync.state.lakehouse import Lakehouse
        original = Lakehouse.append
        def patched(self, target, data, **k):
            uri = target if isinstance(target, str) else target.table_uri
            if "_quarantine" in uri:
                table = data if isinstance(data, pa.Table) else data.read_all()
                def batches():
                    yield from table.to_batches(max_chunksize=max(1, table.num_rows // 2))[:1]
                    die()
                data = pa.RecordBatchReader.from_batches(table.schema, batches())
            return original(self, target, data, **k)
        Lakehouse.append = patched
    """,
    "before_ledger_write": """
        from lakesync.state.ledger import Ledger
        def patched(*a, **k):
            die()
        Ledger.record_many = patched
    """,
}

SCRIPT = """
import os, signal, sys

def die():
    os.kill(os.getpid(), signal.SIGKILL)

{patch}

from lakesync.config import load_config
from lakesync.state.lakehouse import lakehouse_for
from lakesync.pipeline import sync_table
config = load_config(sys.argv[1])
for table in config.tables:
    sync_table(config, table, lakehouse=lakehouse_for(config), run_id="killed")
sys.exit(3)  # the kill point was never reached
"""


def sync_all(config: LakesyncConfig, run: str) -> None:
    for table in config.tables:
        sync_table(config, table, lakehouse=lakehouse_for(config), run_id=run)


def read(uri: str) -> pl.DataFrame:
    return pl.read_delta(uri) if Path(uri, "_delta_log").is_dir() else pl.DataFrame()


def state(config: LakesyncConfig) -> dict[str, Any]:
    """Everything a sync leaves behind, without what differs by run (ids, times)."""
    lakehouse = lakehouse_for(config)
    out: dict[str, Any] = {}
    for table in config.tables:
        rows = read(lakehouse.table_uri(table))
        if rows.height:
            rows = rows.drop("_lakesync_ingested_at")
        out[table] = sorted(map(str, rows.rows()))
        rejected = read(lakehouse.quarantine_uri(table))
        if rejected.height:
            rejected = rejected.drop("run_id", "quarantined_at")
        out[f"quarantine/{table}"] = sorted(map(str, rejected.rows()))
    ledger = pl.read_delta(lakehouse.ledger_uri).filter(pl.col("event") != "planned")
    out["ledger"] = sorted(
        ledger.select(
            "dataset", "batch", "event", "path", "rows_read", "rows_committed", "rows_quarantined"
        ).rows()
    )
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = load_config(generate(tmp_path_factory.mktemp("reference")).config)
    sync_all(config, "clean")
    return state(config)


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_sync_killed_at_a_stage_boundary_and_retried_equals_a_clean_run(
    tmp_path: Path, point: str, reference: dict[str, Any]
) -> None:
    config_path = generate(tmp_path / "demo").config
    script = tmp_path / "kill.py"
    script.write_text(SCRIPT.format(patch=textwrap.dedent(KILL_POINTS[point])))
    killed = subprocess.run(
        [sys.executable, str(script), str(config_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    config = load_config(config_path)
    sync_all(config, "retry")
    assert state(config) == reference


# -- random lakes, random drift, random kill points (in-process) -------------------------------
class Crash(BaseException):
    """The process dying at this point: nothing in lakesync may catch it."""


IN_PROCESS_POINTS = {
    "after_read": ("lakesync.pipeline.files", "read_file"),
    "after_validation": ("lakesync.pipeline.files", "validate_chunk"),
    "after_delta_commit": ("lakesync.state.quarantine", "write"),
    "before_ledger_write": ("lakesync.state.ledger.Ledger", "record_many"),
    "before_plan": ("lakesync.state.ledger.Ledger", "plan"),
}


def crash_at(monkeypatch: pytest.MonkeyPatch, point: str, after: int) -> None:
    """Make the ``after``-th call of the point's function crash."""
    module_name, name = IN_PROCESS_POINTS[point]
    module_path, _, owner_name = (
        module_name.rpartition(".") if module_name.endswith("Ledger") else (module_name, "", "")
    )
    module = __import__(module_path, fromlist=["x"])
    owner = getattr(module, owner_name) if owner_name else module
    original = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == after:
            raise Crash(point)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


files = st.lists(
    st.tuples(
        st.sampled_from(["parquet", "csv"]),
        st.integers(1, 6),  # rows
        st.booleans(),  # a row breaking the contract
        st.booleans(),  # an extra column (drift)
    ),
    min_size=1,
    max_size=4,
)


def build(root: Path, spec: list[tuple[str, int, bool, bool]], policy: str) -> LakesyncConfig:
    lake = root / "lake"
    lake.mkdir(parents=True, exist_ok=True)
    start = 1
    for n, (fmt, count, bad, extra) in enumerate(spec):
        rows = orders_rows(start, count)
        start += count
        if bad:
            rows[0]["currency"] = "XXX"
        path = lake / f"f{n}.{fmt}"
        if extra:
            frame = pl.DataFrame(rows).with_columns(channel=pl.lit(f"c{n}"))
            if fmt == "csv":
                frame.write_csv(path)
            else:
                frame.write_parquet(path)
        elif fmt == "csv":
            write_orders_csv(path, rows)
        else:
            write_orders_parquet(path, rows)
        stamp = (T0 + timedelta(minutes=n)).timestamp()
        import os

        os.utime(path, (stamp, stamp))
    datasets = {
        "orders": {
            "pattern": "*.parquet",
            "format": "parquet",
            "table": "orders",
            "sensor": {"max_files": 2},
        },
        "exports": {"pattern": "*.csv", "format": "csv", "table": "orders", "sensor": {"max_files": 2}},
    }
    return load_config(
        write_config(
            root, lakes={"lake": local_lake(lake, datasets)}, tables={"orders": orders_table(drift=policy)}
        )
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    spec=files,
    policy=st.sampled_from(["evolve", "rescue", "quarantine"]),
    point=st.sampled_from(sorted(IN_PROCESS_POINTS)),
    after=st.integers(1, 3),
)
def test_random_lakes_killed_anywhere_end_as_a_clean_run(
    tmp_path_factory: pytest.TempPathFactory,
    spec: list[tuple[str, int, bool, bool]],
    policy: str,
    point: str,
    after: int,
) -> None:
    root = tmp_path_factory.mktemp("property")
    clean = build(root / "clean", spec, policy)
    for _ in range(3):  # max_files 2: a few runs take everything
        sync_all(clean, "clean")
    crashed = build(root / "crashed", spec, policy)
    with pytest.MonkeyPatch.context() as monkeypatch:
        crash_at(monkeypatch, point, after)
        try:
            for _ in range(3):
                sync_all(crashed, "crashing")
        except (Crash, Exception):  # noqa: BLE001 - a crash inside the Delta writer arrives wrapped
            pass
    for _ in range(4):
        sync_all(crashed, "retry")
    assert state(crashed) == state(clean)
    shutil.rmtree(root, ignore_errors=True)


def test_two_sync_processes_at_the_same_time_equal_one_clean_run(
    tmp_path: Path, reference: dict[str, Any], cli_env: dict[str, str]
) -> None:
    config_path = generate(tmp_path / "demo").config
    command = [str(Path(sys.executable).parent / "lakesync"), "sync", "--config", str(config_path)]
    racers = [
        subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    for racer, (_, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err[-2000:]
    assert state(load_config(config_path)) == reference

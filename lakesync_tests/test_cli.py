"""The commands a data engineer types, run as real subprocesses against real folders (the longest
review flow in this process: it proves the commands, the others prove the installed entry point)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lakesync.config import load_config
from lakesync.state.lakehouse import lakehouse_for
from lakesync_tests.commands import cli
from lakesync_tests.lakes import T0, local_lake, orders_rows, orders_table, write_config, write_orders_parquet

BIN = Path(sys.executable).parent


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def lakesync(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "lakesync"), *args], env, cwd)


def test_demo_then_sync_prints_the_summary_and_records_runs_for_the_ui(
    tmp_path: Path, cli_env: dict[str, str], dagster_home: Path
) -> None:
    made = lakesync("demo", "--dir", str(tmp_path / "d"), env=cli_env)
    assert made.returncode == 0, made.stderr
    config = tmp_path / "d" / "lakesync.yaml"
    first = lakesync("sync", "--config", str(config), env=cli_env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split() == [
        "lake",
        "dataset",
        "files",
        "seen",
        "ingested",
        "quarantined",
        "rows",
        "read",
        "committed",
        "quarantined",
    ]
    assert (
        "eu_sales    orders              5         4            1       2000       1988           12"
        in first.stdout
    )
    # committed = rows + superseded (merge losers), per table
    assert "orders                 1  3770           0                  31" in first.stdout
    assert "customers              1   399          51                   2" in first.stdout
    assert re.search(
        r"orders +contract +passed with warnings +30 of 3800 rows \(0\.79%\) and 1 file\(s\) quarantined, "
        r"within max_failed_rows 5\.00%",
        first.stdout,
    )
    assert "WARN" not in first.stdout and "ERROR" not in first.stdout
    # The file quarantined whole is named, with why.
    assert re.search(
        r"eu_sales\.orders: eu_sales/orders/2026/11/part-0004\.parquet: not a readable parquet file: "
        "Parquet magic bytes not found",
        first.stdout,
    )
    assert re.search(
        r"orders +conservation +passed +3800 rows read = 3770 committed \+ 30 quarantined", first.stdout
    )
    assert re.search(r"orders +expectations +passed +all 4 expectations passed on version 1", first.stdout)
    assert re.search(r"customer_spend +0 +\d+ +updated", first.stdout)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {"ingest_orders", "ingest_customers", "build_customer_spend"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert instance.get_latest_materialization_event(dg.AssetKey(["lakehouse", "orders"])) is not None
    second = lakesync("sync", "--config", str(config), env=cli_env)
    assert second.returncode == 0
    assert re.search(r"customer_spend +0 +\d+ +up to date", second.stdout)
    assert (
        "eu_sales    orders              5         0            0          0          0            0"
        in second.stdout
    )
    assert "orders                 1  3770           0                  31" in second.stdout
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert len(instance.get_runs()) == len(runs)  # nothing new: every dataset looked at, no run
    drift = lakesync("drift", "list", "--all", "--config", str(config), env=cli_env)
    handled = [line for line in drift.stdout.splitlines() if " handled " in line]
    assert len(handled) == 2 and all("approve" not in line for line in handled), drift.stdout
    assert all("nothing to do (handled by the drift policy:" in line for line in handled)
    status = lakesync("status", "--config", str(config), env=cli_env)
    assert status.returncode == 0, status.stderr
    assert (
        "apac_sales  orders     orders                 2      2         2            0    0                0"
        in status.stdout
    )
    # The README's Python for reading the tables back runs as written, from the project's folder.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("**Reading the tables back.**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    block = (
        block.replace("demo/", "d/") + "\nprint(orders.height, rejected.height, spend.height, history.height)"
    )
    read = run([sys.executable, "-c", block], cli_env, tmp_path)
    assert read.returncode == 0, read.stderr
    counts = [int(n) for n in read.stdout.split()]
    assert counts[:2] == [3770, 31] and 0 < counts[2] <= counts[3], read.stdout


def test_the_config_path_defaults_to_the_environment_then_the_working_folder(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    assert lakesync("demo", "--dir", str(tmp_path), env=cli_env).returncode == 0
    by_cwd = lakesync("validate", env=cli_env, cwd=tmp_path)
    assert by_cwd.returncode == 0 and "OK — 3 lake(s), 5 dataset(s), 2 table(s)" in by_cwd.stdout
    assert "personal data: customers.email (mask)" in by_cwd.stdout
    assert "data subjects: customer (orders.customer_id), customer (customers.customer_id)" in by_cwd.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_env = lakesync(
        "validate", env={**cli_env, "LAKESYNC_CONFIG": str(tmp_path / "lakesync.yaml")}, cwd=elsewhere
    )
    assert by_env.returncode == 0
    missing = lakesync("validate", env=cli_env, cwd=elsewhere)
    assert missing.returncode == 1 and "no configuration at lakesync.yaml" in missing.stderr


def test_validate_prints_every_problem_with_its_key_path(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = tmp_path / "lakesync.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            lakehouse: {uri: ./lh}
            lakes:
              us_sales:
                provider: local
                root: ./us
                datasets:
                  orders: {pattern: "*.xlsx", format: xlsx, table: orders, colums: {}}
            tables:
              orders:
                contract: {columns: {order_id: {type: int64}}}
            """
        )
    )
    result = lakesync("validate", "--config", str(config), env=cli_env)
    assert result.returncode == 1
    assert (
        "lakes.us_sales.datasets.orders.format: 'xlsx' is not one of parquet, csv, ndjson, json (line 7)"
        in result.stderr
    )
    assert "lakes.us_sales.datasets.orders.colums: unknown key (did you mean 'columns'?)" in result.stderr


def test_sync_exits_non_zero_when_a_lake_cannot_be_synced(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "demo", "--dir", str(tmp_path)).returncode == 0
    config = tmp_path / "lakesync.yaml"
    config.write_text(config.read_text().replace("root: ./data/lakes/apac_sales", "root: ./data/lakes/gone"))
    result = cli(capsys, "sync", "--config", str(config))
    assert result.returncode == 1
    assert "apac_sales.orders: lake 'apac_sales': the folder" in result.stdout
    assert "orders: " in result.stderr and "does not exist" in result.stderr
    assert "eu_sales    orders              5         4" in result.stdout  # the other lakes were synced
    only = cli(capsys, "sync", "--config", str(config), "--lake", "eu_sales")
    assert only.returncode == 0


def test_dagster_asset_materialize_ingests_whatever_is_new(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert lakesync("demo", "--dir", str(tmp_path), env=cli_env).returncode == 0
    env = {**cli_env, "LAKESYNC_CONFIG": str(tmp_path / "lakesync.yaml")}
    result = run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "lakesync.definitions",
            "--select",
            "lakehouse/orders",
        ],
        env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pl.read_delta(lakehouse_for(load_config(tmp_path / "lakesync.yaml")).table_uri("orders"))
    assert rows.height == 3770


KILL_BEFORE_LEDGER = textwrap.dedent(
    """\
    import os, signal, sys
    from lakesync.state.ledger import Ledger

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)  # the data and quarantine are committed; the ledger is not

    Ledger.record_many = die
    from lakesync.cli import main
    sys.exit(main(["sync", "--config", sys.argv[1]]))
    """
)


def snapshot(config: Path) -> tuple[list[tuple[object, ...]], int, list[tuple[object, ...]]]:
    lakehouse = lakehouse_for(load_config(config))
    rows = (
        pl.read_delta(lakehouse.table_uri("orders"))
        .select("order_id", "amount", "_lakesync_file", "_lakesync_row")
        .sort("order_id")
    )
    rejected = pl.read_delta(lakehouse.quarantine_uri("orders"))
    ledger = pl.read_delta(lakehouse.ledger_uri).filter(pl.col("event") != "planned")
    return (
        rows.rows(),
        rejected.height,
        sorted(ledger.select("dataset", "path", "event", "rows_committed").rows()),
    )


def test_a_sync_killed_between_the_delta_commit_and_the_ledger_write_then_retried_adds_nothing(
    tmp_path: Path, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("killed", "reference"):
        assert cli(capsys, "demo", "--dir", str(tmp_path / name)).returncode == 0
    script = tmp_path / "kill.py"
    script.write_text(KILL_BEFORE_LEDGER)
    killed_config = tmp_path / "killed" / "lakesync.yaml"
    killed = run([sys.executable, str(script), str(killed_config)], cli_env)
    assert killed.returncode == -signal.SIGKILL
    lakehouse = lakehouse_for(load_config(killed_config))
    assert pl.read_delta(lakehouse.table_uri("orders")).height == 3770  # committed before the kill
    retried = cli(capsys, "sync", "--config", str(killed_config))  # the retry need not be a new process
    assert retried.returncode == 0, retried.stderr
    reference = cli(capsys, "sync", "--config", str(tmp_path / "reference" / "lakesync.yaml"))
    assert reference.returncode == 0
    assert snapshot(killed_config) == snapshot(tmp_path / "reference" / "lakesync.yaml")


def test_drift_review_and_quarantine_replay_from_the_command_line(
    tmp_path: Path, dagster_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process: each step is a command of its own, but none needs a fresh interpreter.
    assert cli(capsys, "demo", "--dir", str(tmp_path)).returncode == 0
    config = tmp_path / "lakesync.yaml"
    text = config.read_text()
    config.write_text(
        text.replace(
            "format: ndjson\n        table: orders",
            "format: ndjson\n        table: orders\n        drift: quarantine",
        )
    )
    assert cli(capsys, "sync", "--config", str(config)).returncode == 0
    listed = cli(capsys, "drift", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "apac_sales.orders" in line)
    event_id = row.split()[0]
    assert "open" in row and "new column 'channel' (string)" in row and "approve to add channel" in row
    approved = cli(capsys, "drift", "approve", event_id, "--note", "channel is fine", "--config", str(config))
    assert approved.returncode == 0, approved.stderr
    assert f"approved drift {event_id} of apac_sales.orders" in approved.stdout
    assert (
        "apac_sales  orders            2         2            0        600        594            6"
        in approved.stdout
    )
    lakehouse = lakehouse_for(load_config(config))
    assert pl.read_delta(lakehouse.table_uri("orders")).height == 3770
    reviewed = cli(capsys, "drift", "list", "--all", "--config", str(config))
    assert f"{event_id}  apac_sales.orders  approved" in reviewed.stdout
    # The corrupt EU file: its owner fixes it, then it is replayed, once.
    corrupt = tmp_path / "data" / "lakes" / "eu_sales" / "orders" / "2026" / "11" / "part-0004.parquet"
    corrupt.write_bytes((corrupt.parent / "part-0000.parquet").read_bytes())
    waiting = cli(capsys, "quarantine", "list", "--config", str(config))
    line = next(x for x in waiting.stdout.splitlines() if "orders/2026/11/part-0004.parquet" in x)
    assert "unreadable_file" in line
    group = line.split()[0]
    replayed = cli(capsys, "quarantine", "replay", group, "--config", str(config))
    assert replayed.returncode == 0, replayed.stderr
    assert "eu_sales.orders: replaying batch 1 as batch 2 (1 file(s), all rows)" in replayed.stdout
    again = cli(capsys, "quarantine", "replay", group, "--config", str(config))
    assert again.returncode == 1
    assert (
        f"quarantine {group} (eu_sales/orders/2026/11/part-0004.parquet) was already replayed in batch 2"
        in again.stderr
    )


def test_validate_checks_the_environment_a_sync_will_need(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "lakesync.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            lakehouse: {uri: ./lh}
            lakes:
              eu_sales:
                provider: s3
                bucket: eu-raw
                credentials: {access_key_id: {env: EU_KEY_ID}, secret_access_key: {env: EU_SECRET}}
                datasets: {orders: {pattern: "*.csv", format: csv, table: orders}}
              onprem:
                provider: local
                root: ./nowhere
                datasets: {orders: {pattern: "*.csv", format: csv, table: orders}}
            tables:
              orders:
                contract: {columns: {order_id: {type: int64}, email: {type: string, pii: hash}}}
            """
        )
    )
    for name in ("EU_KEY_ID", "EU_SECRET", "LAKESYNC_PII_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EU_KEY_ID", "AKIA-present")
    monkeypatch.setenv("LAKESYNC_PII_KEY", "short")
    result = cli(capsys, "validate", "--config", str(config))
    assert result.returncode == 1
    assert "3 problem(s) in the environment" in result.stderr
    assert (
        "lakes.eu_sales.credentials.secret_access_key: $EU_SECRET is not set (a secret of lake 'eu_sales')"
        in result.stderr
    )
    assert (
        f"lakes.onprem.root: {tmp_path / 'nowhere'} does not exist or is not a folder (lake 'onprem')"
        in result.stderr
    )
    assert "lakehouse.pii_key: $LAKESYNC_PII_KEY is shorter than 16 characters" in result.stderr
    assert "AKIA-present" not in result.stderr + result.stdout  # a value is never shown
    (tmp_path / "nowhere").mkdir()
    monkeypatch.setenv("EU_SECRET", "s3cr3t")
    monkeypatch.setenv("LAKESYNC_PII_KEY", "a-long-random-value-0123456789")
    assert cli(capsys, "validate", "--config", str(config)).returncode == 0


def test_lakesync_says_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli(capsys, "--version")
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == "lakesync 0.1.0"


def test_help_answers_without_importing_the_pipeline() -> None:
    """`lakesync --help` (and a mistyped option) must not wait for Dagster, polars or pandera:
    commands import their stages when they run (`make bench` times it)."""
    probe = (
        "import sys\n"
        "from lakesync.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('dagster', 'polars', 'pandera', 'deltalake', 'pyarrow') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "none", done.stdout
    assert "sync" in done.stdout and "quarantine" in done.stdout


def test_sync_catches_up_in_as_many_batches_as_the_limits_need(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    lake = tmp_path / "eu"
    for i in range(25):
        write_orders_parquet(
            lake / f"part-{i:03d}.parquet", orders_rows(1 + i * 4, 4), mtime=T0 + timedelta(minutes=i)
        )
    dataset = {"pattern": "*.parquet", "format": "parquet", "table": "orders", "sensor": {"max_files": 10}}
    config = write_config(
        tmp_path, lakes={"eu": local_lake(lake, {"orders": dataset})}, tables={"orders": orders_table()}
    )
    done = lakesync("sync", "--config", str(config), env=cli_env)
    assert done.returncode == 0, done.stderr
    (row,) = [line.split() for line in done.stdout.splitlines() if line.startswith("eu ")]
    assert row == ["eu", "orders", "25", "25", "0", "100", "100", "0"]
    assert "Caught up in several batches" in done.stdout and "eu.orders: 3 batches (25 files)" in done.stdout
    progress = [
        line.strip() for line in done.stderr.splitlines() if line.strip().startswith("eu.orders: batch")
    ]
    assert [line.split(":")[1].strip() for line in progress] == ["batch 1", "batch 2", "batch 3"]
    assert progress[0].split("; ")[-1] == "15 file(s) left" and progress[-1].endswith("; 0 file(s) left")
    assert "10 file(s)" in progress[0] and "5 file(s)" in progress[2]
    assert pl.read_delta(str(tmp_path / "lakehouse" / "orders")).height == 100
    again = lakesync("sync", "--config", str(config), env=cli_env)
    assert "Caught up" not in again.stdout and "eu.orders: batch" not in again.stderr
    assert pl.read_delta(str(tmp_path / "lakehouse" / "orders")).height == 100


def test_sync_with_the_lakehouse_secret_unset_says_which_variable_and_stops(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    (tmp_path / "eu").mkdir()
    config = tmp_path / "lakesync.yaml"
    config.write_text(
        "lakehouse:\n"
        "  uri: s3://central/house\n"
        "  region: eu-west-1\n"
        "  credentials: {access_key_id: {env: LS_TEST_KEY_ID}, secret_access_key: {env: LS_TEST_SECRET}}\n"
        "lakes:\n"
        "  eu:\n"
        "    provider: local\n"
        f"    root: {tmp_path / 'eu'}\n"
        "    datasets: {orders: {pattern: '*.parquet', format: parquet, table: orders}}\n"
        "tables:\n"
        "  orders: {mode: append, contract: {columns: {order_id: {type: int64}}}}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in cli_env.items() if not k.startswith("LS_TEST_")}
    done = lakesync("sync", "--config", str(config), env=env)
    assert done.returncode == 1
    assert "lakehouse: not opened:" in done.stderr and "LS_TEST_" in done.stderr
    assert "Traceback" not in done.stderr

"""lakesync as a Dagster Component: `dg check defs` / `dg list defs` load the same definitions as
`lakesync.definitions`, in this repository and in a user's own dg project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lakesync.config import load_config
from lakesync.defs import build_definitions
from lakesync.demo.generate import generate
from lakesync_tests.conftest import PROJECT

DG = Path(sys.executable).parent / "dg"


def dg(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DG), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def dg_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}


def asset_keys(listing: str) -> set[str]:
    return {asset["asset_key"] for asset in json.loads(listing)["assets"]}


def test_dg_checks_and_lists_the_lake_lakehouse_and_feature_assets(
    demo: Path, dg_env: dict[str, str]
) -> None:
    env = {**dg_env, "LAKESYNC_CONFIG": str(demo)}
    checked = dg("check", "defs", cwd=PROJECT, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = dg("list", "defs", "--json", cwd=PROJECT, env=env)
    assert listed.returncode == 0, listed.stderr
    keys = asset_keys(listed.stdout)
    assert {"lakes/eu_sales/orders", "lakehouse/orders", "lakehouse/_quarantine/orders"} <= keys
    assert "features/customer_spend" in keys
    expected = build_definitions(load_config(demo)).resolve_asset_graph().get_all_asset_keys()
    assert keys == {key.to_user_string() for key in expected}  # the same as `-m lakesync.definitions`
    sensors = {s["name"] for s in json.loads(listed.stdout)["sensors"]}
    assert "watch_eu_sales__orders" in sensors


def test_a_config_problem_reaches_dg_with_its_key_path_and_line(demo: Path, dg_env: dict[str, str]) -> None:
    demo.write_text(demo.read_text().replace('pattern: "orders/**/*.parquet"', 'patern: "x"', 1))
    checked = dg("check", "defs", cwd=PROJECT, env={**dg_env, "LAKESYNC_CONFIG": str(demo)})
    output = checked.stdout + checked.stderr
    assert checked.returncode != 0
    assert "lakes.eu_sales.datasets.orders.patern: unknown key (did you mean 'pattern'?)" in output
    assert "(line " in output


def test_a_users_dg_project_names_its_lakesync_yaml_beside_its_defs_yaml(
    tmp_path: Path, dg_env: dict[str, str]
) -> None:
    project = tmp_path / "acme"
    folder = project / "src" / "acme" / "defs" / "lakes"
    generate(folder)  # lakesync.yaml (relative paths) and its lakes, in the component's folder
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "acme"
            version = "0.1.0"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "acme"
            """
        )
    )
    for package in (project / "src" / "acme", project / "src" / "acme" / "defs"):
        (package / "__init__.py").write_text("")
    (project / "src" / "acme" / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (folder / "defs.yaml").write_text(
        "type: lakesync.defs.component.LakesyncComponent\nattributes:\n  config: lakesync.yaml\n"
    )
    env = {k: v for k, v in dg_env.items() if k != "LAKESYNC_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(project / "src"), env.get("PYTHONPATH", "")])
    listed = dg("list", "defs", "--json", cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    expected = (
        build_definitions(load_config(folder / "lakesync.yaml")).resolve_asset_graph().get_all_asset_keys()
    )
    assert asset_keys(listed.stdout) == {key.to_user_string() for key in expected}

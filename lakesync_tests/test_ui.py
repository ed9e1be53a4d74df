"""The Dagster UI on a synced lakehouse, in a real browser (Debian's chromium, driven by Playwright),
and the same facts through Dagster's GraphQL API so a UI change fails loudly.

The fixture writes the demo lakes plus an APAC file whose every row breaks the contract (10% of
the run's rows: above the orders table's max_failed_rows of 5%), syncs them with `lakesync sync`,
and starts `dagster dev` on a free loopback port. Screenshots go to ``$LAKESYNC_ARTIFACTS``
(default ``test-artifacts/``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

import lakesync
from lakesync.demo.servers import Launch, Server, free_port, start_server

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LAKESYNC_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _bad_apac_file(demo: Path) -> None:
    rows = [
        {
            "order_id": 900_000 + i,
            "customer_id": 5,
            "amount": -5.0,
            "currency": "EUR",
            "ordered_at": "2026-11-05T10:00:00Z",
        }
        for i in range(400)
    ]
    path = demo / "data" / "lakes" / "apac_sales" / "orders" / "orders-bad.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def _quick_sensors(config: Path) -> None:
    """The APAC orders' sensor every 3 s and the downstream refresh every 5 s (30 s each by
    default): the daemon test waits for both, not for the defaults."""
    text = config.read_text(encoding="utf-8")
    quick = text.replace("  uri: ./data/lakehouse\n", "  uri: ./data/lakehouse\n  refresh_interval: 5s\n", 1)
    quick = quick.replace(
        '        pattern: "orders/*.ndjson*"\n',
        '        pattern: "orders/*.ndjson*"\n        sensor: {interval: 3s}\n',
        1,
    )
    assert quick.count("refresh_interval") == 1 and "interval: 3s" in quick, "the demo's config changed"
    config.write_text(quick, encoding="utf-8")


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="module")
def ui(ui_root: Path) -> Iterator[Server]:
    root = ui_root
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    env = {**os.environ, "DAGSTER_HOME": str(home), "LAKESYNC_CONFIG": str(root / "demo" / "lakesync.yaml")}
    subprocess.run(
        [BIN / "lakesync", "demo", "--dir", str(root / "demo")], env=env, check=True, capture_output=True
    )
    _quick_sensors(root / "demo" / "lakesync.yaml")
    _bad_apac_file(root / "demo")
    synced = subprocess.run([BIN / "lakesync", "sync"], env=env, capture_output=True, text=True, check=False)
    assert synced.returncode == 1, synced.stdout + synced.stderr  # the orders contract failed
    assert "orders: contract check failed: 10.24% of rows failed" in synced.stderr
    port = free_port()
    launch = Launch(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")],
        f"http://127.0.0.1:{port}",
        probe=f"http://127.0.0.1:{port}/server_info",
        env=env,
        timeout=180,
        stop_signal=signal.SIGKILL,
    )
    server = start_server("dagster-dev", launch, root / "logs")
    try:
        deadline = time.monotonic() + 120
        while not _asset_edges(server) and time.monotonic() < deadline:  # code location loading
            time.sleep(1)
        yield server
    finally:
        server.stop()
        assert not server.running


def graphql(server: Server, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{server.url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def _asset_edges(server: Server) -> set[tuple[str, str]]:
    try:
        data = graphql(server, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    except (OSError, AssertionError):
        return set()
    return {
        ("/".join(dep["path"]), "/".join(node["assetKey"]["path"]))
        for node in data["assetNodes"]
        for dep in node["dependencyKeys"]
    }


ASSET = """
query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks {
    name blocking executionForLatestMaterialization { status evaluation { severity description } } } } }
  assetMaterializations(limit: 1) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } }
} } }
"""


def test_graphql_shows_the_lineage_the_checks_and_the_blocked_feature(ui: Server) -> None:
    edges = _asset_edges(ui)
    for lake in ("eu_sales", "us_sales", "apac_sales"):
        assert (f"lakes/{lake}/orders", "lakehouse/orders") in edges
    for lake in ("eu_sales", "us_sales"):
        assert (f"lakes/{lake}/customers", "lakehouse/customers") in edges
    assert ("lakehouse/orders", "features/customer_spend") in edges
    node = graphql(ui, ASSET, {"path": ["lakehouse", "orders"]})["assetNodeOrError"]
    checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
    contract = checks["contract"]["executionForLatestMaterialization"]
    assert checks["contract"]["blocking"] and contract["status"] == "FAILED"
    assert contract["evaluation"]["severity"] == "ERROR"
    assert "10.24% of rows failed" in contract["evaluation"]["description"]
    assert checks["conservation"]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
    assert checks["expectations"]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
    (latest,) = node["assetMaterializations"]
    values = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}
    assert values["dagster/row_count"] == 3770 and values["rows_quarantined"] == 430
    # The demo masks customers' email: the column schema says so.
    columns = graphql(
        ui,
        """{ assetNodeOrError(assetKey: {path: ["lakehouse", "customers"]}) { ... on AssetNode {
          metadataEntries { label ... on TableSchemaMetadataEntry { schema { columns {
            name description tags { key value } } } } } } } }""",
    )["assetNodeOrError"]["metadataEntries"]
    (schema,) = [e["schema"]["columns"] for e in columns if e["label"] == "dagster/column_schema"]
    email = next(c for c in schema if c["name"] == "email")
    assert email["tags"] == [{"key": "pii", "value": "mask"}]
    assert "PII: masked (keeps the first 2 and last 12 characters)" in email["description"]
    feature = graphql(ui, ASSET, {"path": ["features", "customer_spend"]})["assetNodeOrError"]
    assert feature["assetMaterializations"] == []  # blocked by the failed contract
    runs = graphql(
        ui,
        '{ runsOrError(filter: {pipelineName: "build_customer_spend"}) { ... on Runs { results { status tags { key value } } } } }',
    )["runsOrError"]["results"]
    (run,) = runs
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS" and tags["lakesync/blocked"].startswith(
        "orders: contract check failed in run"
    )


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    assert CHROMIUM.exists(), "Debian's chromium is installed by `make test` (make browser)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            yield page
        finally:
            browser.close()


def _open(page: Page, url: str) -> None:
    page.goto(url)
    skip = page.get_by_role("button", name="Skip")  # Dagster's one-time community dialog
    try:
        skip.wait_for(timeout=5000)
        skip.click()
    except Exception:  # noqa: BLE001 - the dialog only shows once per browser profile
        pass


def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path)
    return path


def test_the_browser_shows_lakes_flowing_into_the_table_and_on_to_the_feature(
    ui: Server, browser_page: Page
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1800, "height": 1300})  # the graph fits without zooming out
    _open(page, f"{ui.url}/assets/lakehouse/orders?view=lineage&lineageScope=neighbors")
    feature = page.locator('[data-tooltip="customer_spend"]')
    feature.first.wait_for(timeout=60_000)
    page.get_by_text("_catalog", exact=True).first.wait_for(timeout=30_000)
    for group in ("apac_sales", "eu_sales", "us_sales", "lakehouse", "features"):
        assert page.get_by_text(group, exact=True).count() >= 1, group
    page.get_by_text("Never materialized").wait_for(timeout=30_000)  # the feature, blocked
    assert page.get_by_text("Never materialized").count() == 1
    assert page.locator("svg path").count() >= 4  # the four edges are drawn
    assert _shot(page, "lineage.png").stat().st_size > 10_000
    # The overview lists the lakes upstream and the feature downstream.
    _open(page, f"{ui.url}/assets/lakehouse/orders")
    page.get_by_text("Row count").wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "3,770" in body
    for column in ("order_id", "customer_id", "amount", "currency", "ordered_at", "_lakesync_file"):
        assert column in body
    assert "greater_than_or_equal_to(0)" in body  # constraints from the contract
    for upstream in ("lakes / eu_sales / orders", "lakes / us_sales / orders", "lakes / apac_sales / orders"):
        assert upstream in body
    assert "features / customer_spend" in body


def test_the_browser_shows_the_failed_contract_check(ui: Server, browser_page: Page) -> None:
    page = browser_page
    _open(page, f"{ui.url}/assets/lakehouse/orders?view=checks")
    page.get_by_text("contract", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("contract", exact=True).first.click()
    page.get_by_text("This is a blocking asset check.").wait_for(timeout=30_000)
    body = page.inner_text("body")
    assert "Checks (3)" in body
    statuses = body.split("Execute all", 1)[1]
    assert "conservation\nconservation\nSucceeded" in statuses
    assert "contract\ncontract\nFailed" in statuses
    assert "expectations\nexpectations\nSucceeded" in statuses
    assert "10.24% of rows failed" in body
    assert _shot(page, "contract-check.png").stat().st_size > 10_000


def _few_bad_apac_rows(demo: Path) -> Path:
    """200 good APAC orders and 3 with a negative amount: 1.5% of the run's rows, within the
    orders table's max_failed_rows of 5%."""
    rows = [
        {
            "order_id": 950_000 + i,
            "customer_id": 7,
            "amount": -5.0 if i in (10, 20, 30) else 12.5,
            "currency": "JPY",
            "ordered_at": "2026-11-06T10:00:00+09:00",
        }
        for i in range(203)
    ]
    path = demo / "data" / "lakes" / "apac_sales" / "orders" / "orders-few-bad.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _materializations(server: Server, path: list[str]) -> list[dict[str, Any]]:
    node = graphql(server, ASSET, {"path": path})["assetNodeOrError"]
    return node["assetMaterializations"]  # type: ignore[no-any-return]


# Runs last: it changes the lakehouse the tests above read.
def test_a_file_with_a_few_bad_rows_refreshes_the_feature_under_the_daemon_and_shows_its_quarantine(
    ui: Server, ui_root: Path, browser_page: Page
) -> None:
    before = _materializations(ui, ["lakehouse", "orders"])[0]["runId"]
    assert _materializations(ui, ["features", "customer_spend"]) == []  # blocked by the failed contract
    _few_bad_apac_rows(ui_root / "demo")
    deadline = time.monotonic() + 300
    while not _materializations(ui, ["features", "customer_spend"]):
        assert time.monotonic() < deadline, "the daemon did not refresh features/customer_spend"
        time.sleep(3)
    # The dataset's sensor ingested the file; its contract passed with warnings (3 of 203 rows),
    # which Dagster's automation treats as passed: the feature followed, as `lakesync sync` does.
    latest = _materializations(ui, ["lakehouse", "orders"])[0]
    assert latest["runId"] != before
    # ... and its run published the new values to the online store, where a lookup finds them.
    assert _materializations(ui, ["online", "customer_spend"]), "the feature's run did not publish online"
    config = ui_root / "demo" / "lakesync.yaml"
    feature = lakesync.feature_values("customer_spend", config=config)
    some = feature.sort("customer_id").head(5)
    served = lakesync.get_online_features(
        "customer_spend",
        {"customer_id": some["customer_id"].to_list(), "currency": some["currency"].to_list()},
        config=config,
    )
    assert served.equals(some.select(served.columns))
    node = graphql(ui, ASSET, {"path": ["lakehouse", "orders"]})["assetNodeOrError"]
    checks = {c["name"]: c["executionForLatestMaterialization"] for c in node["assetChecksOrError"]["checks"]}
    assert checks["contract"]["status"] == "SUCCEEDED"
    assert checks["contract"]["evaluation"]["description"].startswith(
        "passed with warnings: 3 of 203 rows (1.48%) quarantined"
    )
    # The quarantine's page names the file, the lines, the rule and the reason, and how to replay.
    page = browser_page
    _open(page, f"{ui.url}/assets/lakehouse/_quarantine/orders")
    page.get_by_text("quarantined_rows").first.wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "apac_sales.orders\torders/orders-few-bad.ndjson\trows\t3\tgreater_than_or_equal_to(0)" in body
    for line in (11, 21, 31):  # the lines of the file, as an editor numbers them
        assert (
            f"apac_sales/orders/orders-few-bad.ndjson\t{line}\tamount\tgreater_than_or_equal_to(0)\t"
            "amount: '-5.0' fails greater_than_or_equal_to(0)"
        ) in body
    assert "lakesync quarantine replay" in body and "lakehouse / orders" in body  # link to the table
    assert _shot(page, "quarantine.png").stat().st_size > 10_000

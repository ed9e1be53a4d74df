"""The configuration is the user's interface: it must accept the documented example and
explain every mistake with its key path."""

from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from lakesync.config import ConfigError, load_config, parse_config, resolve_contract
from lakesync.config.units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent

# The example from the local end-to-end issue (and the README), verbatim.
EXAMPLE = textwrap.dedent(
    """\
    lakehouse:
      uri: ./data/lakehouse            # a local folder here
    lakes:
      eu_sales:
        provider: local
        root: ./data/lakes/eu_sales
        datasets:
          orders:
            pattern: "orders/**/*.parquet"
            format: parquet
            table: orders
            columns: {order_no: order_id}         # source name -> canonical name
      us_sales:
        provider: local
        root: ./data/lakes/us_sales
        datasets:
          orders:
            pattern: "exports/*.csv"
            format: csv
            options: {delimiter: ";", encoding: utf8, header: true}
            table: orders
            columns: {OrderID: order_id, CustomerID: customer_id, Amount: amount, Currency: currency, OrderedAt: ordered_at}
    tables:
      orders:
        keys: [order_id]                  # with mode: merge, rows upsert on these
        mode: merge                       # append | merge
        drift: evolve                     # evolve | rescue | quarantine | fail
        contract:                         # either inline columns, or `model: package.module:ClassName`
          columns:
            order_id:    {type: int64, nullable: false, unique: true}
            customer_id: {type: int64, nullable: false}
            amount:      {type: float64, checks: {ge: 0}}
            currency:    {type: string, checks: {isin: [EUR, USD, GBP, JPY]}}
            ordered_at:  {type: datetime}
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="lakesync.yaml", base_dir=Path("/cfg"))
    return [str(p) for p in caught.value.problems]


def test_the_documented_example_validates_and_resolves_paths_against_the_config_folder() -> None:
    config = parse_config(EXAMPLE, source="lakesync.yaml", base_dir=Path("/cfg"))
    assert config.lakehouse.uri == "/cfg/data/lakehouse"
    assert config.lakes["eu_sales"].root == "/cfg/data/lakes/eu_sales"
    assert config.lakes["us_sales"].datasets["orders"].options.delimiter == ";"
    contract = resolve_contract("orders", config.tables["orders"])
    assert contract.names == ("order_id", "customer_id", "amount", "currency", "ordered_at")


def test_a_wrong_format_names_its_key_path_and_the_allowed_values() -> None:
    found = problems(EXAMPLE.replace("format: csv", "format: xlsx"))
    assert found == [
        "lakes.us_sales.datasets.orders.format: 'xlsx' is not one of parquet, csv, ndjson, json (line 19)"
    ]


def test_every_problem_is_reported_at_once_with_suggestions_for_typos() -> None:
    text = EXAMPLE.replace('pattern: "exports', 'patern: "exports').replace("mode: merge ", "mode: upsert ")
    found = problems(text)
    assert (
        "lakes.us_sales.datasets.orders.patern: unknown key (did you mean 'pattern'?); remove it or fix the spelling (line 18)"
        in found
    )
    assert "lakes.us_sales.datasets.orders.pattern: required key is missing (line 17)" in found
    assert "tables.orders.mode: 'upsert' is not one of append, merge (line 26)" in found


def test_an_unknown_provider_is_an_error_naming_the_known_ones() -> None:
    found = problems(
        EXAMPLE.replace(
            "provider: local\n    root: ./data/lakes/us", "provider: ftp\n    root: ./data/lakes/us"
        )
    )
    assert found == ["lakes.us_sales.provider: 'ftp' is not one of local, s3, azure, gcs (line 14)"]


def test_duplicate_yaml_keys_are_refused_instead_of_silently_keeping_the_last() -> None:
    found = problems(
        EXAMPLE.replace(
            "        table: orders\n        columns: {order_no",
            "        table: orders\n        table: other\n        columns: {order_no",
        )
    )
    assert len(found) == 1
    assert "duplicate key 'table'" in found[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("table: orders\n        columns: {order_no", "table: order\n        columns: {order_no"),
            "lakes.eu_sales.datasets.orders.table: 'order' is not one of the declared tables (orders)",
        ),
        (
            ("{order_no: order_id}", "{order_no: order_key}"),
            "lakes.eu_sales.datasets.orders.columns.order_no: maps to 'order_key', which is not a column of table 'orders'",
        ),
        (
            ("keys: [order_id]", "keys: [amount]"),
            "tables.orders.keys.0: key column 'amount' must be declared nullable: false in the contract",
        ),
        (("keys: [order_id]", "keys: []"), "tables.orders.keys: mode: merge needs keys to upsert on"),
        (
            ("{ge: 0}", "{regex: '^x'}"),
            "tables.orders.contract.columns.amount.checks.regex: regex applies to string columns; 'amount' is float64",
        ),
        (
            ("isin: [EUR, USD, GBP, JPY]", "isin: [EUR, 3]"),
            "tables.orders.contract.columns.currency.checks.isin.1: 3 is not a string value",
        ),
        (
            ("type: float64", "type: money"),
            "tables.orders.contract.columns.amount.type: 'money' is not one of int8, int16",
        ),
        (
            ("encoding: utf8", "encoding: klingon"),
            "lakes.us_sales.datasets.orders.options.encoding: 'klingon' is not a known text encoding",
        ),
        (
            (
                "format: parquet\n        table: orders",
                "format: parquet\n        options: {delimiter: ';'}\n        table: orders",
            ),
            "lakes.eu_sales.datasets.orders.options.delimiter: applies to csv files only (format is parquet)",
        ),
        (
            ('pattern: "orders/**', 'pattern: "../orders/**'),
            "lakes.eu_sales.datasets.orders.pattern: must be relative to the lake root",
        ),
        (
            ("nullable: false, unique: true}", "nullable: false, unique: true, pii: mask}"),
            "tables.orders.contract.columns.order_id.pii: 'order_id' is a merge key: it can be hashed",
        ),
        (
            ("{type: datetime}\n", "{type: datetime, pii: hash}\n    latest_by: ordered_at\n"),
            "tables.orders.contract.columns.ordered_at.pii: 'ordered_at' is the table's latest_by",
        ),
        (
            (
                "customer_id: {type: int64, nullable: false}",
                "customer_id: {type: int64, subject_key: c, pii: drop}",
            ),
            "tables.orders.contract.columns.customer_id.pii: 'customer_id' is a subject key",
        ),
        (
            ("{type: float64, checks: {ge: 0}}", "{type: float64, mask: {keep_suffix: 2}}"),
            "tables.orders.contract.columns.amount: `mask` settings apply to `pii: mask` only",
        ),
        (
            ("  uri: ./data/lakehouse ", "  online_store: redis://cache:6379/0\n  uri: ./data/lakehouse "),
            "lakehouse.online_store: write a Redis online store as {redis: 'redis://cache:6379/0'}",
        ),
        (
            (
                "  uri: ./data/lakehouse ",
                "  online_store: {redis: 'redis://u:pw@cache:6379/0'}\n  uri: ./data/lakehouse ",
            ),
            "lakehouse.online_store.redis: put the password in password: {env: NAME}, not in the URL",
        ),
    ],
)
def test_cross_field_rules_name_the_key_and_what_to_do(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in EXAMPLE
    found = problems(EXAMPLE.replace(old, new, 1))
    assert any(p.startswith(expected) for p in found), found


def test_a_contract_can_be_a_pandera_model_named_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_contracts.py").write_text(
        textwrap.dedent(
            """\
            import pandera.polars as pa
            import polars as pl

            class Orders(pa.DataFrameModel):
                order_id: pl.Int64 = pa.Field(unique=True, description="the order", metadata={"subject_key": "who"})
                amount: pl.Float64 = pa.Field(ge=0, nullable=True)
                email: pl.String = pa.Field(nullable=True, metadata={"pii": "mask", "mask": {"keep_prefix": 1}})
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = EXAMPLE.split("    contract:")[0] + "    contract:\n      model: my_contracts:Orders\n"
    text = text.replace(
        "{OrderID: order_id, CustomerID: customer_id, Amount: amount, Currency: currency, OrderedAt: ordered_at}",
        "{OrderID: order_id, Amount: amount}",
    )
    config = parse_config(text, source="x", base_dir=tmp_path)
    contract = resolve_contract("orders", config.tables["orders"])
    assert contract.names == ("order_id", "amount", "email")
    assert contract.subjects == {"order_id": "who"}
    assert [(r.treatment, r.keep_prefix) for r in contract.pii.values()] == [("mask", 1)]
    order_id = contract.column("order_id")
    assert order_id is not None and order_id.unique and not order_id.nullable
    assert order_id.description == "the order"
    assert [str(c.name) for c in contract.columns[1].checks] == ["greater_than_or_equal_to"]


def test_a_contract_model_that_cannot_be_imported_is_a_problem_at_its_key() -> None:
    text = EXAMPLE.split("    contract:")[0] + "    contract:\n      model: no_such_module:Orders\n"
    found = problems(text)
    assert found[0].startswith("tables.orders.contract.model: cannot import module 'no_such_module'")


def test_load_config_explains_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no configuration at .*nope.yaml .*lakesync demo"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), (45, 45), ("1.5m", 90)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("1GB", 10**9), ("512MiB", 512 * 2**20), (1024, 1024), ("10 kb", 10_000)]
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_contract_fingerprint_changes_with_what_is_enforced() -> None:
    config = parse_config(EXAMPLE, source="x", base_dir=Path("/cfg"))
    same = parse_config(EXAMPLE.replace("# rows upsert on these", ""), source="x", base_dir=Path("/cfg"))
    other = parse_config(EXAMPLE.replace("{ge: 0}", "{ge: 1}"), source="x", base_dir=Path("/cfg"))
    first = resolve_contract("orders", config.tables["orders"]).fingerprint
    assert first == resolve_contract("orders", same.tables["orders"]).fingerprint
    assert first != resolve_contract("orders", other.tables["orders"]).fingerprint


def test_the_readme_example_validates_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("**Your first lake.**", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(block, source="README.md", base_dir=tmp_path)
    assert set(config.lakes) == {"eu_sales"}
    assert config.tables["orders"].mode == "merge"
    assert config.lakes["eu_sales"].datasets["orders"].columns == {"order_no": "order_id"}


def test_the_configuration_reference_example_validates_as_written(tmp_path: Path) -> None:
    commands = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    for doc in ("configuration.md", "cloud.md", "events.md"):
        text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
        blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
        full = [b for b in blocks if b.startswith("lakehouse:") and "lakes:" in b]
        assert full, doc
        for block in full:
            tables = set(re.findall(r"table: (\w+)", block))
            stub = "tables:\n" + "".join(
                f"  {t}: {{mode: merge, keys: [id], contract: {{columns: {{id: {{type: int64, nullable: false}}}}}}}}\n"
                for t in sorted(tables)
            )
            parse_config(block if "\ntables:" in block else block + stub, source=doc, base_dir=tmp_path)
    assert "lakesync validate" in commands


def test_the_readme_and_docs_link_only_to_files_that_exist() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


CLOUD = textwrap.dedent(
    """\
    lakehouse:
      uri: s3://central-lakehouse/warehouse
      credentials: {access_key_id: {env: LAKEHOUSE_AWS_KEY_ID}, secret_access_key: {env: LAKEHOUSE_AWS_SECRET}}
    lakes:
      eu_sales:
        provider: s3
        bucket: eu-sales-raw
        prefix: landing/
        region: eu-west-1
        endpoint_url: null
        credentials: {access_key_id: {env: EU_AWS_KEY_ID}, secret_access_key: {env: EU_AWS_SECRET}}
        datasets: {orders: {pattern: "orders/*.parquet", format: parquet, table: orders}}
      us_crm:
        provider: azure
        account: uscrmlake
        container: exports
        credentials: {account_key: {env: US_AZURE_KEY}}
        datasets: {orders: {pattern: "*.csv", format: csv, table: orders}}
      apac_events:
        provider: gcs
        bucket: apac-events
        project: apac-analytics
        credentials: {service_account_json: {env: APAC_GCP_SA_JSON}}
        datasets: {orders: {pattern: "*.ndjson", format: ndjson, table: orders, ordered_keys: true}}
      onprem:
        provider: local
        root: /mnt/nfs/exports
        datasets: {orders: {pattern: "*.csv", format: csv, table: orders}}
    tables:
      orders:
        contract: {columns: {order_id: {type: int64, nullable: false}}}
    """
)


def test_lakes_on_every_provider_validate_with_secrets_named_by_variable() -> None:
    config = parse_config(CLOUD, source="x", base_dir=Path("/cfg"))
    assert [lake.provider for lake in config.lakes.values()] == ["s3", "azure", "gcs", "local"]
    assert config.lakes["eu_sales"].credentials.secret_access_key.env == "EU_AWS_SECRET"  # type: ignore[union-attr]
    assert config.lakehouse.scheme == "s3"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("endpoint_url: null", "endpoint_url: http://minio:9000"),
            "lakes.eu_sales.endpoint_url: is plain http: set allow_http: true",
        ),
        (
            ("{account_key: {env: US_AZURE_KEY}}", "{account_key: {env: A}, sas_token: {env: B}}"),
            "lakes.us_crm.credentials: give one of account_key, sas_token or a service principal",
        ),
        (
            ("{account_key: {env: US_AZURE_KEY}}", "{client_id: {env: A}}"),
            "lakes.us_crm.credentials: a service principal needs client_id, client_secret and tenant_id",
        ),
        (
            ("uri: s3://central-lakehouse/warehouse", "uri: az://lakehouse/warehouse"),
            "lakehouse.credentials: do not fit a az:// lakehouse",
        ),
        (
            ("uri: s3://central-lakehouse/warehouse", "uri: hdfs://x/y"),
            "lakehouse.uri: hdfs:// is not supported",
        ),
        (("{env: EU_AWS_SECRET}", "{env: 1BAD}"), "lakes.eu_sales.credentials.secret_access_key.env"),
        (
            ("format: parquet, table: orders}", "format: parquet, table: orders, changed: reingest}"),
            "lakes.eu_sales.datasets.orders.changed: reingest needs a merge table",
        ),
    ],
)
def test_cloud_settings_are_checked(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in CLOUD
    found = problems(CLOUD.replace(old, new, 1))
    assert any(p.startswith(expected) for p in found), found


def test_inline_checks_are_pandera_checks_built_only_when_pandera_judges_rows(tmp_path: Path) -> None:
    """An inline check says what pandera's would (name, statistics, error: the validate stage
    and the contract fingerprint read them), and loading a config never imports pandera."""
    import subprocess
    import sys

    import pandera.polars as pa

    from lakesync.config.contracts import InlineCheck, _fingerprint, _inline_checks
    from lakesync.config.models import ColumnSpec, Table

    spec = ColumnSpec.model_validate(
        {
            "type": "string",
            "checks": {
                "ge": 0,
                "gt": 1.5,
                "le": 3,
                "lt": 4,
                "isin": ["a", "b"],
                "regex": "^x",
                "str_length": {"max": 5},
            },
        }
    )
    inline = _inline_checks(spec)
    expected = [
        pa.Check.ge(0), pa.Check.gt(1.5), pa.Check.le(3), pa.Check.lt(4),
        pa.Check.isin(["a", "b"]), pa.Check.str_matches("^x"), pa.Check.str_length(None, 5),
    ]  # fmt: skip
    assert len(inline) == len(expected)
    for ours, theirs in zip(inline, expected, strict=True):
        assert isinstance(ours, InlineCheck)
        assert (ours.name, ours.statistics, ours.error, ours.ignore_na) == (
            theirs.name, theirs.statistics, theirs.error, theirs.ignore_na
        )  # fmt: skip
        assert ours.build().statistics == theirs.statistics
    contract = resolve_contract(
        "t", Table.model_validate({"contract": {"columns": {"c": spec.model_dump()}}})
    )
    built = [replace(c, checks=tuple(k.build() for k in c.checks)) for c in contract.columns]
    assert contract.fingerprint == _fingerprint(built, [])  # the same fingerprint as before
    assert next(iter(contract.schema.columns["c"].checks)).name == "greater_than_or_equal_to"
    probe = (
        "import sys\n"
        "from lakesync.config import load_config, resolve_contract\n"
        f"config = load_config({str(tmp_path / 'lakesync.yaml')!r})\n"
        "[resolve_contract(n, t) for n, t in config.tables.items()]\n"
        "print('pandera' in sys.modules)\n"
    )
    (tmp_path / "eu").mkdir()
    (tmp_path / "lakesync.yaml").write_text(
        EXAMPLE_FOR_IMPORTS.format(root=tmp_path / "eu"), encoding="utf-8"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr


EXAMPLE_FOR_IMPORTS = """
lakehouse: {{uri: {root}/../lakehouse}}
lakes:
  eu: {{provider: local, root: {root}, datasets: {{orders: {{pattern: "*.csv", format: csv, table: orders}}}}}}
tables:
  orders:
    contract:
      columns:
        order_id: {{type: int64, nullable: false, unique: true}}
        amount: {{type: float64, checks: {{ge: 0}}}}
        currency: {{type: string, checks: {{isin: [EUR, USD]}}}}
"""

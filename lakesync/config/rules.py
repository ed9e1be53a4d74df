"""Cross-field rules of a configuration that a per-field model cannot express."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from pathlib import PurePosixPath

from lakesync.config.contracts import ContractError, ResolvedContract, resolve_contract
from lakesync.config.datasets import CSV_ONLY_OPTIONS, Dataset
from lakesync.config.datatypes import FLOAT_TYPES, INTEGER_TYPES
from lakesync.config.expectations import suite_problems
from lakesync.config.models import AGGREGATION, Feature, LakesyncConfig, Table
from lakesync.config.storage import AzureCredentials

Problem = tuple[tuple[str, ...], str]
_CRON = re.compile(r"^\s*([\d*/,\-A-Za-z?]+\s+){4}[\d*/,\-A-Za-z?]+\s*$")
_NUMERIC = (*INTEGER_TYPES, *FLOAT_TYPES)


def check_rules(config: LakesyncConfig) -> list[Problem]:
    """Every cross-field problem of ``config``, each with its key path."""
    problems: list[Problem] = []
    contracts: dict[str, ResolvedContract] = {}
    for name, table in config.tables.items():
        path: tuple[str, ...] = ("tables", name)
        try:
            contracts[name] = resolve_contract(name, table)
        except ContractError as exc:
            where: tuple[str, ...] = ("contract", "model") if table.contract.model else ("contract",)
            problems.append(((*path, *where), str(exc)))
            continue
        problems.extend(_table_rules(path, table, contracts[name]))
        clash = sorted(set(contracts[name].names) & set(config.lakehouse.provenance.columns()))
        if clash:
            problems.append(
                ((*path, "contract"), f"{', '.join(clash)}: also a provenance column (lakehouse.provenance)")
            )
    for lake_name, lake in config.lakes.items():
        problems.extend(_connection_rules(("lakes", lake_name), lake))
        for ds_name, dataset in lake.datasets.items():
            path = ("lakes", lake_name, "datasets", ds_name)
            problems.extend(_dataset_rules(path, dataset, config, contracts))
    problems.extend(_connection_rules(("lakehouse",), config.lakehouse))
    names = config.lakehouse.provenance.columns()
    if len(set(names)) != len(names):
        problems.append((("lakehouse", "provenance"), "two provenance columns have the same name"))
    for name, feature in config.features.items():
        problems.extend(_feature_rules(("features", name), feature, config, contracts))
    return problems


def _feature_rules(
    path: tuple[str, ...], feature: Feature, config: LakesyncConfig, contracts: dict[str, ResolvedContract]
) -> Iterator[Problem]:
    for index, table in enumerate(feature.inputs):
        if table not in config.tables:
            known = ", ".join(config.tables) or "none declared"
            yield (*path, "inputs", str(index)), f"{table!r} is not one of the declared tables ({known})"
    if feature.function is not None:
        if feature.aggregations or feature.group_by:
            yield path, "give either function or group_by + aggregations, not both"
        return
    if feature.entity:
        yield (*path, "entity"), "is for a function's result; an aggregation's entity is its group_by"
    if not feature.aggregations:
        yield path, "needs aggregations (with group_by) or a function (package.module:name)"
        return
    if len(feature.inputs) != 1:
        yield (*path, "inputs"), "group_by + aggregations read one table; use a function to combine tables"
        return
    contract = contracts.get(feature.inputs[0])
    if contract is None:
        return
    columns = set(contract.names) - {n for n, r in contract.pii.items() if r.treatment == "drop"}
    columns |= set(config.lakehouse.provenance.columns())
    for index, name in enumerate(feature.group_by):
        if name not in columns:
            yield (*path, "group_by", str(index)), f"{name!r} is not a column of {feature.inputs[0]!r}"
    for output, text in feature.aggregations.items():
        match = AGGREGATION.match(text)
        source = match.group(2) if match else None
        if source is not None and source not in columns:
            yield (*path, "aggregations", output), f"{source!r} is not a column of {feature.inputs[0]!r}"
    yield from _timestamp_rules(path, feature, contract)


def _timestamp_rules(
    path: tuple[str, ...], feature: Feature, contract: ResolvedContract
) -> Iterator[Problem]:
    """A feature's event-time column: a datetime or date of its input, with an entity to describe."""
    if feature.timestamp is None:
        return
    column = contract.column(feature.timestamp)
    if column is None:
        yield (*path, "timestamp"), f"{feature.timestamp!r} is not a column of {feature.inputs[0]!r}"
    elif column.type.name not in ("datetime", "date"):
        yield (*path, "timestamp"), f"{feature.timestamp!r} is {column.type.name}, not a datetime or date"
    if not feature.group_by:
        yield (*path, "group_by"), "a feature with a timestamp needs group_by: the entity it describes"


def _connection_rules(path: tuple[str, ...], where: object) -> Iterator[Problem]:
    """http only when allowed; Azure credentials of one kind."""
    endpoint = getattr(where, "endpoint_url", None)
    if endpoint and endpoint.startswith("http://") and not getattr(where, "allow_http", False):
        yield (*path, "endpoint_url"), "is plain http: set allow_http: true to allow it (https otherwise)"
    credentials = getattr(where, "credentials", None)
    if isinstance(credentials, AzureCredentials):
        principal = [credentials.client_id, credentials.client_secret, credentials.tenant_id]
        kinds = [credentials.account_key is not None, credentials.sas_token is not None, any(principal)]
        if sum(kinds) != 1:
            yield (*path, "credentials"), "give one of account_key, sas_token or a service principal"
        elif any(principal) and not all(principal):
            yield (*path, "credentials"), "a service principal needs client_id, client_secret and tenant_id"


def _table_rules(path: tuple[str, ...], table: Table, contract: ResolvedContract) -> Iterator[Problem]:
    yield from _key_rules(path, table, contract)
    yield from _pii_rules(path, table, contract)
    if not _CRON.match(table.maintenance.cron):
        yield (*path, "maintenance", "cron"), f"{table.maintenance.cron!r} is not a cron expression"
    if table.expectations is not None:
        yield from (((*path, "expectations"), problem) for problem in suite_problems(table.expectations))
    if table.contract.columns:
        for column_name, spec in table.contract.columns.items():
            yield from _check_rules_for(
                (*path, "contract", "columns", column_name, "checks"), contract, column_name, spec
            )


def _key_rules(path: tuple[str, ...], table: Table, contract: ResolvedContract) -> Iterator[Problem]:
    """Keys, latest_by and partition columns name contract columns that can do those jobs."""
    names = contract.names
    if table.mode == "merge" and not table.keys:
        yield (*path, "keys"), "mode: merge needs keys to upsert on (e.g. keys: [order_id])"
    for index, key in enumerate(table.keys):
        column = contract.column(key)
        if column is None:
            yield (*path, "keys", str(index)), f"{key!r} is not a contract column ({', '.join(names)})"
        elif column.nullable:
            yield (
                (*path, "keys", str(index)),
                f"key column {key!r} must be declared nullable: false in the contract",
            )
    if table.latest_by is not None:
        if table.mode != "merge":
            yield (*path, "latest_by"), "only applies to mode: merge"
        elif table.latest_by not in names:
            yield (*path, "latest_by"), f"{table.latest_by!r} is not a contract column ({', '.join(names)})"
    for index, column_name in enumerate(table.partition_by):
        if column_name not in names:
            yield (
                (*path, "partition_by", str(index)),
                f"{column_name!r} is not a contract column ({', '.join(names)})",
            )


def _pii_rules(path: tuple[str, ...], table: Table, contract: ResolvedContract) -> Iterator[Problem]:
    """Personal-data columns must still do the jobs the table gives them."""
    where = ("contract", "columns") if table.contract.columns else ("contract", "model")
    for name, rule in contract.pii.items():
        at = (*path, *where, name, "pii") if table.contract.columns else (*path, *where)
        if name in table.keys and rule.treatment != "hash":
            yield at, f"{name!r} is a merge key: it can be hashed (stable), not {rule.treatment}ed"
        if name == table.latest_by or name in table.partition_by:
            role = "latest_by" if name == table.latest_by else "partition_by"
            yield at, f"{name!r} is the table's {role}: personal data cannot order or partition rows"
        if contract.subjects.get(name) and rule.treatment != "hash":
            yield (
                at,
                (
                    f"{name!r} is a subject key: `lakesync erase` finds a subject by it, so it can be "
                    f"hashed but not {rule.treatment}ed"
                ),
            )


def _check_rules_for(
    path: tuple[str, ...], contract: ResolvedContract, column_name: str, spec: object
) -> Iterator[Problem]:
    column = contract.column(column_name)
    assert column is not None
    checks = getattr(spec, "checks", None)
    if checks is None:
        return
    kind = column.type.name
    numeric = kind in _NUMERIC or kind.startswith("decimal")
    for bound in ("ge", "gt", "le", "lt"):
        if getattr(checks, bound) is not None and not numeric:
            yield (*path, bound), f"{bound} applies to numeric columns; {column_name!r} is {kind}"
    if checks.regex is not None:
        if kind != "string":
            yield (*path, "regex"), f"regex applies to string columns; {column_name!r} is {kind}"
        try:
            re.compile(checks.regex)
        except re.error as exc:
            yield (*path, "regex"), f"not a valid regular expression: {exc}"
    if checks.str_length is not None and kind != "string":
        yield (*path, "str_length"), f"str_length applies to string columns; {column_name!r} is {kind}"
    if checks.isin is not None:
        for index, value in enumerate(checks.isin):
            if not _fits(kind, value):
                yield (*path, "isin", str(index)), f"{value!r} is not a {kind} value"


def _fits(kind: str, value: object) -> bool:
    if value is None:
        return True
    if kind in INTEGER_TYPES:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in FLOAT_TYPES or kind.startswith("decimal"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def _dataset_rules(
    path: tuple[str, ...],
    dataset: Dataset,
    config: LakesyncConfig,
    contracts: dict[str, ResolvedContract],
) -> Iterator[Problem]:
    table = config.tables.get(dataset.table)
    if dataset.changed == "reingest" and table is not None and table.mode != "merge":
        yield (*path, "changed"), "reingest needs a merge table (an append table would hold both versions)"
    if dataset.table not in config.tables:
        known = ", ".join(config.tables) or "none declared"
        yield (*path, "table"), f"{dataset.table!r} is not one of the declared tables ({known})"
    pattern = PurePosixPath(dataset.pattern)
    if pattern.is_absolute() or ".." in pattern.parts:
        yield (*path, "pattern"), "must be relative to the lake root and must not contain '..'"
    yield from _option_rules(path, dataset)
    try:
        zoneinfo.ZoneInfo(dataset.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        yield (*path, "timezone"), f"{dataset.timezone!r} is not a known time zone (e.g. UTC, Europe/Paris)"
    yield from _mapping_rules(path, dataset, contracts.get(dataset.table))


def _option_rules(path: tuple[str, ...], dataset: Dataset) -> Iterator[Problem]:
    """Reader options the dataset's format has no use for."""
    if dataset.format != "csv":
        for option in CSV_ONLY_OPTIONS:
            if option in dataset.options.model_fields_set:
                yield (*path, "options", option), f"applies to csv files only (format is {dataset.format})"
    if dataset.format == "parquet":
        for option in ("timestamp_format", "date_format"):
            if option in dataset.options.model_fields_set:
                yield (*path, "options", option), "applies to text formats only (parquet stores types)"


def _mapping_rules(
    path: tuple[str, ...], dataset: Dataset, contract: ResolvedContract | None
) -> Iterator[Problem]:
    """The column mapping names each canonical column once, and only columns of the table."""
    seen: dict[str, str] = {}
    for source, canonical in dataset.columns.items():
        if canonical in seen:
            yield (
                (*path, "columns", source),
                f"{source!r} and {seen[canonical]!r} both map to {canonical!r}",
            )
        seen[canonical] = source
        if contract is not None and canonical not in contract.names:
            yield (
                (*path, "columns", source),
                f"maps to {canonical!r}, which is not a column of table "
                f"{dataset.table!r} ({', '.join(contract.names)})",
            )

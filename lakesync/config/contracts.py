"""Turn a table's contract (inline columns or a pandera model) into one pandera schema.

Both forms resolve to a :class:`ResolvedContract`: the pandera ``DataFrameSchema`` that
validates every batch, plus the per-column facts (type, nullability, description) that the
conform stage and the Dagster metadata need.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl

from lakesync.config.datatypes import LogicalType, logical_name, parse_type
from lakesync.config.models import ColumnSpec, Table


class ContractError(ValueError):
    """A contract that cannot be turned into a pandera schema."""


@dataclass(frozen=True)
class ContractColumn:
    name: str
    type: LogicalType
    nullable: bool
    unique: bool
    description: str | None
    checks: tuple[pa.Check, ...]

    def check_names(self) -> tuple[str, ...]:
        return tuple(str(check.error or check.name) for check in self.checks)


@dataclass(frozen=True)
class ResolvedContract:
    """A table's contract, ready for conform and validate."""

    table: str
    columns: tuple[ContractColumn, ...]
    schema: pa.DataFrameSchema
    fingerprint: str

    def column(self, name: str) -> ContractColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _inline_checks(spec: ColumnSpec) -> list[pa.Check]:
    checks: list[pa.Check] = []
    c = spec.checks
    if c.ge is not None:
        checks.append(pa.Check.ge(_number(c.ge)))
    if c.gt is not None:
        checks.append(pa.Check.gt(_number(c.gt)))
    if c.le is not None:
        checks.append(pa.Check.le(_number(c.le)))
    if c.lt is not None:
        checks.append(pa.Check.lt(_number(c.lt)))
    if c.isin is not None:
        checks.append(pa.Check.isin(list(c.isin)))
    if c.regex is not None:
        checks.append(pa.Check.str_matches(c.regex))
    if c.str_length is not None:
        checks.append(pa.Check.str_length(c.str_length.min, c.str_length.max))
    return checks


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _from_inline(name: str, columns: dict[str, ColumnSpec]) -> ResolvedContract:
    resolved = []
    for column, spec in columns.items():
        resolved.append(
            ContractColumn(
                name=column,
                type=parse_type(spec.type),
                nullable=spec.nullable,
                unique=spec.unique,
                description=spec.description,
                checks=tuple(_inline_checks(spec)),
            )
        )
    return _finish(name, resolved)


def load_model(path: str) -> type[pa.DataFrameModel]:
    """Import ``package.module:ClassName`` and check it is a pandera polars model."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        msg = f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        raise ContractError(msg) from exc
    model = getattr(module, class_name, None)
    if model is None:
        msg = f"module {module_name!r} has no {class_name!r}"
        raise ContractError(msg)
    if not (isinstance(model, type) and issubclass(model, pa.DataFrameModel)):
        msg = f"{path!r} is not a pandera.polars.DataFrameModel"
        raise ContractError(msg)
    return model


def _from_model(name: str, path: str) -> ResolvedContract:
    model = load_model(path)
    schema = model.to_schema()
    resolved = []
    for column, spec in schema.columns.items():
        dtype = getattr(spec.dtype, "type", None)
        if isinstance(dtype, type) and issubclass(dtype, pl.DataType):
            dtype = dtype()
        if not isinstance(dtype, pl.DataType):
            msg = f"column {column!r} of {path!r} has no polars dtype"
            raise ContractError(msg)
        try:
            logical = parse_type(logical_name(dtype))
        except ValueError as exc:
            msg = f"column {column!r} of {path!r}: {exc}"
            raise ContractError(msg) from exc
        resolved.append(
            ContractColumn(
                name=str(column),
                type=logical,
                nullable=bool(spec.nullable),
                unique=bool(spec.unique),
                description=spec.description,
                checks=tuple(spec.checks),
            )
        )
    return _finish(name, resolved, frame_checks=list(schema.checks))


def _finish(
    name: str, columns: list[ContractColumn], *, frame_checks: list[pa.Check] | None = None
) -> ResolvedContract:
    # Uniqueness is enforced per file by the validate stage (it streams, so it tracks keys
    # across chunks itself); the pandera schema carries everything else.
    schema = pa.DataFrameSchema(
        {
            c.name: pa.Column(
                c.type.dtype,
                nullable=c.nullable,
                checks=list(c.checks),
                description=c.description,
                required=True,
            )
            for c in columns
        },
        checks=frame_checks or [],
        name=name,
        strict=False,
        coerce=False,
    )
    return ResolvedContract(
        table=name,
        columns=tuple(columns),
        schema=schema,
        fingerprint=_fingerprint(columns, frame_checks or []),
    )


def _fingerprint(columns: list[ContractColumn], frame_checks: list[pa.Check]) -> str:
    """A short stable hash of what the contract enforces (recorded with every commit)."""
    canonical: list[Any] = [
        {
            "name": c.name,
            "type": c.type.name,
            "nullable": c.nullable,
            "unique": c.unique,
            "checks": sorted(
                [str(ch.name), json.dumps(ch.statistics, sort_keys=True, default=str)] for ch in c.checks
            ),
        }
        for c in columns
    ]
    canonical.append(sorted(str(ch.name) for ch in frame_checks))
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def resolve_contract(name: str, table: Table) -> ResolvedContract:
    """Resolve a table's contract; raise :class:`ContractError` with a readable reason."""
    contract = table.contract
    if (contract.columns is None) == (contract.model is None):
        msg = "give either 'columns' or 'model', not both and not neither"
        raise ContractError(msg)
    if contract.model is not None:
        return _from_model(name, contract.model)
    assert contract.columns is not None
    if not contract.columns:
        msg = "a contract needs at least one column"
        raise ContractError(msg)
    return _from_inline(name, contract.columns)

"""Turn a table's contract (inline columns or a pandera model) into one pandera schema.

Both forms resolve to a :class:`ResolvedContract`: the pandera ``DataFrameSchema`` that
validates every batch, plus the per-column facts (type, nullability, description) that the
conform stage and the Dagster metadata need.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, get_args

import polars as pl

from lakesync.config.datatypes import LogicalType, logical_name, parse_type
from lakesync.config.models import ColumnSpec, LakesyncConfig, MaskSettings, PiiTreatment, Table

if TYPE_CHECKING:
    import pandera.polars as pa


class ContractError(ValueError):
    """A contract that cannot be turned into a pandera schema."""


@dataclass(frozen=True)
class PiiRule:
    """How a personal-data column is treated before anything is written."""

    treatment: PiiTreatment
    keep_prefix: int = 0
    keep_suffix: int = 0

    def describe(self) -> str:
        if self.treatment == "hash":
            return "hashed (keyed SHA-256, hex)"
        if self.treatment == "drop":
            return "dropped (checked by the contract, never stored)"
        kept = [f"first {self.keep_prefix}"] if self.keep_prefix else []
        kept += [f"last {self.keep_suffix}"] if self.keep_suffix else []
        return f"masked (keeps the {' and '.join(kept)} characters)" if kept else "masked (***)"


_FACTORIES = {
    "greater_than_or_equal_to": "ge",
    "greater_than": "gt",
    "less_than_or_equal_to": "le",
    "less_than": "lt",
    "isin": "isin",
    "str_matches": "str_matches",
    "str_length": "str_length",
}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity, as pandera's checks are
class InlineCheck:
    """A check of an inline contract, named as pandera names it (``name``, ``statistics``,
    ``error``): the validate stage compiles it to polars, and the pandera ``Check`` is built only
    when pandera itself must judge rows — importing pandera costs ~1 s that a command which never
    validates a row should not pay."""

    name: str
    statistics: dict[str, Any]
    args: tuple[Any, ...]
    ignore_na: bool = True

    @property
    def error(self) -> str:
        return f"{self.name}({', '.join(repr(a) for a in self.args)})"

    def build(self) -> pa.Check:
        import pandera.polars as pa  # noqa: PLC0415 - lazy: seconds to import

        check: pa.Check = getattr(pa.Check, _FACTORIES[self.name])(*self.args)
        return check


@dataclass(frozen=True)
class ContractColumn:
    name: str
    type: LogicalType
    nullable: bool
    unique: bool
    description: str | None
    checks: tuple[InlineCheck | pa.Check, ...]
    """Inline checks, or a model's pandera checks."""
    subject_key: str | None = None
    """The data subject the column identifies (``lakesync erase --subject <subject>=<key>``)."""
    pii: PiiRule | None = None

    def check_names(self) -> tuple[str, ...]:
        return tuple(str(check.error or check.name) for check in self.checks)


@dataclass(frozen=True)
class ResolvedContract:
    """A table's contract, ready for conform and validate."""

    table: str
    columns: tuple[ContractColumn, ...]
    fingerprint: str
    frame_checks: tuple[pa.Check, ...] = field(default=())
    """A model's dataframe-wide checks (only pandera knows them)."""

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema (built, and pandera imported, when pandera must judge rows).

        Uniqueness is enforced per file by the validate stage (it streams, so it tracks keys
        across chunks itself); the schema carries everything else."""
        import pandera.polars as pa  # noqa: PLC0415 - lazy: seconds to import

        return pa.DataFrameSchema(
            {
                c.name: pa.Column(
                    c.type.dtype,
                    nullable=c.nullable,
                    checks=[k.build() if isinstance(k, InlineCheck) else k for k in c.checks],
                    description=c.description,
                    required=True,
                )
                for c in self.columns
            },
            checks=list(self.frame_checks),
            name=self.table,
            strict=False,
            coerce=False,
        )

    def column(self, name: str) -> ContractColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def pii(self) -> dict[str, PiiRule]:
        """Column -> its treatment, for the personal-data columns."""
        return {c.name: c.pii for c in self.columns if c.pii is not None}

    @property
    def hashed(self) -> list[str]:
        """The ``pii: hash`` columns (they need the lakehouse's secret key)."""
        return [name for name, rule in self.pii.items() if rule.treatment == "hash"]

    @property
    def subjects(self) -> dict[str, str]:
        """Column -> the data subject it identifies."""
        return {c.name: c.subject_key for c in self.columns if c.subject_key is not None}


def _inline_checks(spec: ColumnSpec) -> list[InlineCheck]:
    checks: list[InlineCheck] = []
    c = spec.checks
    if c.ge is not None:
        checks.append(InlineCheck("greater_than_or_equal_to", {"min_value": _number(c.ge)}, (_number(c.ge),)))
    if c.gt is not None:
        checks.append(InlineCheck("greater_than", {"min_value": _number(c.gt)}, (_number(c.gt),)))
    if c.le is not None:
        checks.append(InlineCheck("less_than_or_equal_to", {"max_value": _number(c.le)}, (_number(c.le),)))
    if c.lt is not None:
        checks.append(InlineCheck("less_than", {"max_value": _number(c.lt)}, (_number(c.lt),)))
    if c.isin is not None:
        checks.append(InlineCheck("isin", {"allowed_values": list(c.isin)}, (list(c.isin),)))
    if c.regex is not None:
        checks.append(InlineCheck("str_matches", {"pattern": c.regex}, (c.regex,)))
    if c.str_length is not None:
        low, high = c.str_length.min, c.str_length.max
        stats = {"min_value": low, "max_value": high, "exact_value": None}
        checks.append(InlineCheck("str_length", stats, (low, high)))
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
                subject_key=spec.subject_key,
                pii=_pii_rule(spec.pii, spec.mask),
            )
        )
    return _finish(name, resolved)


def _pii_rule(treatment: PiiTreatment | None, mask: MaskSettings | None) -> PiiRule | None:
    if treatment is None:
        return None
    mask = mask or MaskSettings()
    return PiiRule(treatment, keep_prefix=mask.keep_prefix, keep_suffix=mask.keep_suffix)


def _model_governance(
    path: str, column: str, metadata: dict[str, Any] | None
) -> tuple[str | None, PiiRule | None]:
    """``subject_key`` and ``pii`` of a model column, from ``pa.Field(metadata={...})``."""
    metadata = metadata or {}
    subject = metadata.get("subject_key")
    treatment = metadata.get("pii")
    if subject is not None and not (isinstance(subject, str) and subject.isidentifier()):
        msg = f"column {column!r} of {path!r}: metadata subject_key must be a name, not {subject!r}"
        raise ContractError(msg)
    if treatment is not None and treatment not in get_args(PiiTreatment):
        msg = f"column {column!r} of {path!r}: metadata pii must be hash, mask or drop, not {treatment!r}"
        raise ContractError(msg)
    try:
        mask = MaskSettings.model_validate(metadata["mask"]) if "mask" in metadata else None
    except ValueError as exc:
        msg = f"column {column!r} of {path!r}: metadata mask: {exc}"
        raise ContractError(msg) from None
    return subject, _pii_rule(treatment, mask)


def load_model(path: str) -> type[pa.DataFrameModel]:
    """Import ``package.module:ClassName`` and check it is a pandera polars model."""
    import pandera.polars as pa  # noqa: PLC0415 - lazy: seconds to import

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
        subject, pii = _model_governance(path, str(column), spec.metadata)
        resolved.append(
            ContractColumn(
                name=str(column),
                type=logical,
                nullable=bool(spec.nullable),
                unique=bool(spec.unique),
                description=spec.description,
                checks=tuple(spec.checks),
                subject_key=subject,
                pii=pii,
            )
        )
    return _finish(name, resolved, frame_checks=list(schema.checks))


def _finish(
    name: str, columns: list[ContractColumn], *, frame_checks: list[pa.Check] | None = None
) -> ResolvedContract:
    return ResolvedContract(
        table=name,
        columns=tuple(columns),
        fingerprint=_fingerprint(columns, frame_checks or []),
        frame_checks=tuple(frame_checks or ()),
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
            # Only when set, so contracts without personal data keep their fingerprints.
            **({"pii": [c.pii.treatment, c.pii.keep_prefix, c.pii.keep_suffix]} if c.pii else {}),
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


def hashes_pii(config: LakesyncConfig) -> bool:
    """Whether some table's contract hashes a column (then the lakehouse needs its secret key)."""
    for name, table in config.tables.items():
        try:
            contract = resolve_contract(name, table)
        except ContractError:
            continue  # reported by the config check
        if contract.hashed:
            return True
    return False


def never_automatic(settings: Table, contract: ResolvedContract) -> frozenset[str]:
    """The columns lakesync never maps by itself (``autonomy``): the table's keys, its
    ``latest_by``, subject keys and personal data."""
    latest = [settings.latest_by] if settings.latest_by else []
    return frozenset([*settings.keys, *latest, *contract.subjects, *contract.pii])

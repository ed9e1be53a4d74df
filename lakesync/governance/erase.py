"""Right to erasure: delete a data subject's rows from every table that holds them.

Columns marked ``subject_key: <subject>`` in a contract name where a subject's key lives. An
erasure deletes, for one ``<subject>=<value>``:

- the rows of each unified table whose subject column equals the value, and rows whose
  ``_rescued_data`` holds it for that column;
- the versions of those rows a merge kept in ``_superseded/<table>``;
- quarantine records whose raw source values hold it (under the dataset's source column name);
- the rows of feature tables computed from those tables that carry the subject column.

Each delete is one Delta commit (copy-on-write: files holding the subject are rewritten
without it). The old files stay readable through time travel until VACUUM; ``purge`` vacuums
the affected tables at once with a zero retention, which ends time travel before that point.
The subject is recorded as being erased (by a hash, never by its key) before any row is
deleted, so a run stopped half way still keeps the subject's late rows out
(:mod:`lakesync.state.erasures`); the receipt, written last, names the subject the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
from deltalake import DeltaTable

from lakesync.commit.maintenance import purge_history
from lakesync.commit.provenance import Provenance
from lakesync.config.contracts import ContractColumn, ResolvedContract, resolve_contract
from lakesync.config.models import LakesyncConfig
from lakesync.conform.pii import hash_text
from lakesync.conform.target import RESCUED
from lakesync.features.online import publish_feature
from lakesync.governance.errors import ErasureError
from lakesync.governance.rewrite import Rewrite, refuse_while_syncing
from lakesync.state.audit import AuditLog
from lakesync.state.drift_log import DriftLog
from lakesync.state.erasures import RECEIPT, Erasures, subject_hash
from lakesync.state.lakehouse import Lakehouse, Stamp


@dataclass(frozen=True)
class Target:
    """One table to erase from and how its rows name the subject."""

    name: str
    """As shown: ``orders``, ``_quarantine/orders``, ``_superseded/orders``, ``features/spend``."""
    uri: str
    expr: pl.Expr
    predicate: str
    """The same condition in Delta's SQL."""
    source: pl.Expr | None
    """The source file of each row (``<lake>/<path>``), for the receipt."""


@dataclass(frozen=True)
class Erased:
    table: str
    rows: int
    version_before: int
    version_after: int | None
    """``None`` on a dry run or when nothing matched."""


@dataclass(frozen=True)
class Receipt:
    subject: str
    subject_hash: str
    dry_run: bool
    purged: bool
    at: datetime
    tables: tuple[Erased, ...]
    source_files: tuple[str, ...]
    """Files in the source lakes that held the subject (lakesync never writes there)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def _contracts(config: LakesyncConfig) -> dict[str, ResolvedContract]:
    """Every table's resolved contract (inline columns or a pandera model)."""
    return {name: resolve_contract(name, table) for name, table in config.tables.items()}


def subject_columns(config: LakesyncConfig, subject: str) -> dict[str, ContractColumn]:
    """Table -> the contract column holding ``subject``."""
    found: dict[str, ContractColumn] = {}
    for table, contract in _contracts(config).items():
        for column in contract.columns:
            if column.subject_key == subject:
                found[table] = column
    return found


def known_subjects(config: LakesyncConfig) -> list[str]:
    return sorted({s for contract in _contracts(config).values() for s in contract.subjects.values()})


def _typed(table: str, column: ContractColumn, value: str) -> Any:
    """The key in the column's type (one spelling per key: ``0042`` and ``42`` are one customer)."""
    if column.type.name.startswith("int"):
        try:
            return int(value)
        except ValueError:
            msg = f"{table}.{column.name} is {column.type.name}: {value!r} is not a whole number"
            raise ErasureError(msg) from None
    if column.type.name != "string":
        msg = f"{table}.{column.name} is {column.type.name}: erasure supports string and integer subject keys"
        raise ErasureError(msg)
    return value


def _stored(table: str, column: ContractColumn, value: str, key: str | None) -> tuple[Any, str, str]:
    """How the key is stored: the value in the table, as a SQL literal, and as raw/rescued text."""
    typed = _typed(table, column, value)
    if column.pii is None:
        literal = str(typed) if isinstance(typed, int) else "'" + typed.replace("'", "''") + "'"
        return typed, literal, value
    if key is None:
        msg = (
            f"{table}.{column.name} is stored hashed (pii: hash): erasing needs the lakehouse's secret "
            "key (lakehouse.pii_key, default $LAKESYNC_PII_KEY)"
        )
        raise ErasureError(msg)
    hashed = hash_text(key.encode(), str(typed))
    return hashed, f"'{hashed}'", hash_text(key.encode(), value)


def _json_pair(column: str, value: str) -> str:
    """How ``column: value`` appears in lakesync's JSON of text values (raw, rescued)."""
    return json.dumps({column: value}, separators=(",", ":"))[1:-1]


def _like(column: str, fragment: str) -> str:
    escaped = fragment.replace("'", "''")
    return f"{column} LIKE '%{escaped}%'"


def _targets(config: LakesyncConfig, lakehouse: Lakehouse, subject: str, value: str) -> Iterator[Target]:
    source_column = Provenance.of(config).file
    drift_log = DriftLog(lakehouse)
    for table, spec in subject_columns(config, subject).items():
        column = spec.name
        typed, literal, text = _stored(table, spec, value, lakehouse.pii_key)
        # Raw and rescued values are kept under the name the column has in each lake's files.
        renamed = {
            s for s, canonical in drift_log.source_columns(config, table).items() if canonical == column
        }
        fragments = [_json_pair(s, text) for s in sorted({column, *renamed})]
        data_expr = pl.col(column) == typed
        data_sql = f"{column} = {literal}"
        for name, uri in (
            (table, lakehouse.table_uri(table)),
            (f"_superseded/{table}", lakehouse.superseded_uri(table)),
        ):
            snapshot = lakehouse.open(uri)
            if snapshot is None:
                continue
            names = {f.name for f in snapshot.schema().fields}
            expr, sql = data_expr, data_sql
            if RESCUED in names:
                held = [pl.col(RESCUED).str.contains(f, literal=True).fill_null(False) for f in fragments]
                expr = expr | pl.any_horizontal(held)
                sql = " OR ".join([f"({sql})", *(_like(RESCUED, f) for f in fragments)])
            yield Target(name, uri, expr, sql, pl.col(source_column) if source_column in names else None)
        uri = lakehouse.quarantine_uri(table)
        if lakehouse.open(uri) is not None:
            yield Target(
                f"_quarantine/{table}",
                uri,
                pl.any_horizontal(
                    [pl.col("raw").str.contains(f, literal=True).fill_null(False) for f in fragments]
                ),
                " OR ".join(_like("raw", f) for f in fragments),
                pl.concat_str([pl.col("lake"), pl.lit("/"), pl.col("file")]),
            )
        for feature, settings in config.features.items():
            uri = lakehouse.feature_uri(feature)
            snapshot = lakehouse.open(uri) if table in settings.inputs else None
            if snapshot is not None and column in {f.name for f in snapshot.schema().fields}:
                yield Target(f"features/{feature}", uri, data_expr, data_sql, None)


def erase_subject(
    config: LakesyncConfig, lakehouse: Lakehouse, subject: str, value: str, how: Rewrite | None = None
) -> Receipt:
    """Delete every row of ``subject=value`` (see the module doc); returns the receipt, which is
    also appended to the audit table (unless a dry run)."""
    how = how or Rewrite()
    value = _spelled(config, subject, value)
    if how.purges:
        refuse_while_syncing(config, lakehouse, subject_columns(config, subject))
    # Remembered before anything is deleted: from now on the subject's late rows stay out.
    digest = (
        subject_hash(subject, value)
        if how.dry_run
        else Erasures(lakehouse).request(subject, value, actor=how.actor)
    )
    erased, files = _delete(config, lakehouse, (subject, value, digest), how)
    if not how.dry_run:  # the online store serves the feature tables as they now are
        for feature in config.features:
            publish_feature(config, feature, lakehouse)
    receipt = Receipt(
        subject=subject,
        subject_hash=digest,
        dry_run=how.dry_run,
        purged=how.purges,
        at=datetime.now(tz=UTC),
        tables=tuple(erased),
        source_files=tuple(sorted(files)),
        notes=_notes(how, bool(files)),
    )
    if not how.dry_run:
        AuditLog(lakehouse).append(
            [
                {
                    "kind": RECEIPT,
                    "status": "purged" if how.purge else "deleted (recoverable until VACUUM)",
                    "rows_committed": -receipt.rows,
                    "actor": how.actor,
                    "detail": json.dumps(receipt.to_dict(), default=str),
                }
            ],
            what=f"the erasure receipt of a {subject} (its rows are deleted)",
        )
    return receipt


def _spelled(config: LakesyncConfig, subject: str, value: str) -> str:
    """The key as every table spells it (``0042`` and ``42`` are one integer customer)."""
    if subject not in known_subjects(config):
        known = ", ".join(known_subjects(config)) or "none: mark a contract column with subject_key"
        msg = f"unknown subject {subject!r} (subjects: {known})"
        raise ErasureError(msg)
    for table, column in subject_columns(config, subject).items():
        value = str(_typed(table, column, value))
    return value


def _delete(
    config: LakesyncConfig, lakehouse: Lakehouse, who: tuple[str, str, str], how: Rewrite
) -> tuple[list[Erased], set[str]]:
    """Delete the subject's rows from every table that holds them (``who``: subject, key, hash);
    returns what was deleted where, and the source files that held the subject."""
    subject, value, digest = who
    erased: list[Erased] = []
    files: set[str] = set()
    seen: set[str] = set()
    options = dict(lakehouse.storage_options) or None
    for target in _targets(config, lakehouse, subject, value):
        if target.name in seen:
            continue
        seen.add(target.name)
        snapshot = DeltaTable(target.uri, storage_options=options)
        matches = (  # only the subject's rows are read (filters pushed into the scan)
            pl.scan_delta(target.uri, version=snapshot.version(), storage_options=options)
            .filter(target.expr)
            .collect()
        )
        if target.source is not None and matches.height:
            files.update(str(f) for f in matches.select(target.source.alias("f"))["f"].drop_nulls().to_list())
        before, after = snapshot.version(), None
        if matches.height and not how.dry_run:
            stamp = Stamp(metadata={"lakesync.operation": "erasure", "lakesync.subject": digest})
            snapshot.delete(target.predicate, commit_properties=stamp.properties())
            after = snapshot.version()
        if how.purges:  # also where an earlier erasure without --purge left history
            purge_history(snapshot)
        erased.append(Erased(target.name, matches.height, before, after))
    return erased, files


def _notes(how: Rewrite, held_in_lakes: bool) -> tuple[str, ...]:
    notes = []
    if how.dry_run:
        notes.append("dry run: nothing was deleted")
    elif how.purge:
        notes.append(
            "purged: the files that held the subject were vacuumed, and the earlier commits (their "
            "file statistics) and change data files removed; time travel and the change data feed "
            "before this erasure are no longer possible for the tables listed"
        )
    else:
        notes.append(
            "the deleted rows remain readable through Delta time travel until VACUUM (the tables' "
            "maintenance schedule, or lakesync erase --purge)"
        )
    if held_in_lakes:
        notes.append(
            "the source lakes are read-only to lakesync: ask their owners to delete the files listed"
        )
    return tuple(notes)

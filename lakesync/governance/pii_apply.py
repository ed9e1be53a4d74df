"""Treat personal data already stored: ``lakesync pii apply --table T``.

A contract that marks a column ``pii`` after its table already holds rows would store new rows
treated beside old ones in the clear, so syncs of that table stop (see
:meth:`lakesync.conform.pii.PiiPolicy.check_table`) until the stored rows are treated too:

- the table and ``_superseded/<table>``: the columns stored untreated are hashed or masked (or
  dropped), and ``_rescued_data`` values of personal columns too; one overwrite commit each,
  against the snapshot read (application transactions are kept, so exactly-once bookkeeping is
  untouched);
- ``_quarantine/<table>``: personal values in the raw JSON of rejected rows (under each lake's
  source column name) and the reasons quoting them;
- feature tables computed from the table are rebuilt.

Values that already look treated (a 64-hex hash, a ``***`` mask) are kept, so running it twice
changes nothing. The old versions keep the values until VACUUM; ``purge`` removes them at once
(see :func:`lakesync.commit.maintenance.purge_history`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
from deltalake import DeltaTable, write_deltalake

from lakesync.commit.maintenance import purge_history
from lakesync.commit.provenance import Provenance
from lakesync.config.contracts import resolve_contract
from lakesync.config.models import LakesyncConfig
from lakesync.conform.pii import PiiError, PiiPolicy, redact
from lakesync.conform.target import RESCUED
from lakesync.features import build_feature
from lakesync.governance.rewrite import Rewrite, refuse_while_syncing
from lakesync.state.audit import AuditLog
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Lakehouse, commit_properties


@dataclass(frozen=True)
class Treated:
    table: str
    """As shown: ``customers``, ``_superseded/customers``, ``_quarantine/customers``, ``features/x``."""
    rows: int
    """Rows rewritten (feature tables: rows rebuilt)."""
    columns: tuple[str, ...]
    version_before: int | None
    version_after: int | None
    """``None`` on a dry run or when nothing needed treating."""


@dataclass(frozen=True)
class PiiApplyReport:
    table: str
    changes: tuple[str, ...]
    """What the contract asks that the stored rows do not have yet."""
    tables: tuple[Treated, ...]
    dry_run: bool
    purged: bool
    at: datetime
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def _source_names(
    config: LakesyncConfig, lakehouse: Lakehouse, table: str, columns: Mapping[str, Any]
) -> dict[str, str]:
    """Every name a personal column has in the source files of ``table`` -> its canonical name."""
    names = {name: name for name in columns}
    names |= {s: c for s, c in DriftLog(lakehouse).source_columns(config, table).items() if c in columns}
    return names


def _treat_json(text: str | None, policy: PiiPolicy, names: Mapping[str, str]) -> str | None:
    """A JSON object of text values (raw or rescued) with its personal values treated (the
    text as it was when none needed treating)."""
    if not text:
        return text
    values = json.loads(text)
    changed = False
    for key in [k for k in values if k in names and values[k] is not None]:
        treated = policy.treat_value(names[key], str(values[key]))
        if treated != values[key]:
            changed = True
            if treated is None:
                del values[key]
            else:
                values[key] = treated
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False) if changed else text


def _treat_reason(
    reason: str | None, raw: str | None, policy: PiiPolicy, names: Mapping[str, str]
) -> str | None:
    """A quarantine reason with the personal values of its row (quoted from ``raw``) treated."""
    if not reason or not raw:
        return reason
    values = json.loads(raw)
    pairs = []
    for key, value in values.items():
        if key in names and value:
            treated = policy.treat_value(names[key], str(value))
            if treated != value:
                pairs.append((str(value), treated or "***"))
    return redact(reason, pairs)


def _rewrite(
    lakehouse: Lakehouse,
    uri: str,
    frame: pl.DataFrame,
    snapshot: DeltaTable,
    policy: PiiPolicy,
    **kwargs: Any,
) -> int:
    """Overwrite the table at ``uri`` with ``frame`` (its personal columns marked), against
    ``snapshot``; returns the new version."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    data = table.cast(policy.marked(table.schema))
    write_deltalake(
        snapshot,
        data,
        mode="overwrite",
        schema_mode="overwrite",
        commit_properties=commit_properties(None, {"lakesync.operation": "pii-apply"}),
        **kwargs,
    )
    written = lakehouse.open(uri)
    assert written is not None
    return written.version()


def _data_tables(
    config: LakesyncConfig, lakehouse: Lakehouse, table: str, policy: PiiPolicy, *, dry_run: bool
) -> Iterator[Treated]:
    """The table and its superseded versions, treated where the contract says."""
    names = _source_names(config, lakehouse, table, policy.rules)
    settings = config.tables[table]
    options = dict(lakehouse.storage_options) or None
    for shown, uri in (
        (table, lakehouse.table_uri(table)),
        (f"_superseded/{table}", lakehouse.superseded_uri(table)),
    ):
        snapshot = lakehouse.open(uri)
        if snapshot is None:
            continue
        fields = [(f.name, f.metadata) for f in snapshot.schema().fields]
        fixable, problems = policy.differences(table, fields)
        if problems:
            raise PiiError(problems[0])
        rescued = RESCUED in {name for name, _ in fields}
        if not fixable and not rescued:
            yield Treated(shown, 0, (), snapshot.version(), None)
            continue
        frame = pl.read_delta(uri, version=snapshot.version(), storage_options=options)
        # The table's columns say how they are stored; superseded rows (kept without that
        # record by older lakesync versions) may be treated already: those values are kept.
        keep = shown != table
        treated = frame.with_columns(
            [
                v
                for name, rule in fixable.items()
                if (v := policy.treat_text(name, frame[name], keep_treated=keep)) is not None
            ]
        ).drop([name for name, rule in fixable.items() if rule.treatment == "drop"])
        if rescued:
            treated = treated.with_columns(
                pl.Series(
                    RESCUED, [_treat_json(t, policy, names) for t in frame[RESCUED].to_list()], pl.String
                )
            )
        changed = (
            frame.height
            if fixable
            else int((treated[RESCUED].fill_null("") != frame[RESCUED].fill_null("")).sum())
        )
        if dry_run or not changed:
            yield Treated(shown, changed, tuple(fixable), snapshot.version(), None)
            continue
        extra: dict[str, Any] = {}
        if shown == table:
            extra["partition_by"] = settings.partition_by or None
            extra["writer_properties"] = Provenance.of(config).writer_properties()
        version = _rewrite(lakehouse, uri, treated, snapshot, policy, **extra)
        yield Treated(shown, changed, tuple(fixable), snapshot.version(), version)


def _quarantine(
    config: LakesyncConfig, lakehouse: Lakehouse, table: str, policy: PiiPolicy, *, dry_run: bool
) -> Treated | None:
    uri = lakehouse.quarantine_uri(table)
    snapshot = lakehouse.open(uri)
    if snapshot is None:
        return None
    names = _source_names(config, lakehouse, table, policy.rules)
    options = dict(lakehouse.storage_options) or None
    frame = pl.read_delta(uri, version=snapshot.version(), storage_options=options)
    raws, reasons = frame["raw"].to_list(), frame["reason"].to_list()
    treated = frame.with_columns(
        raw=pl.Series([_treat_json(r, policy, names) for r in raws], dtype=pl.String),
        reason=pl.Series(
            [_treat_reason(reason, raw, policy, names) for reason, raw in zip(reasons, raws, strict=True)],
            dtype=pl.String,
        ),
    )
    changed = int(
        ((treated["raw"].fill_null("") != frame["raw"].fill_null(""))
         | (treated["reason"].fill_null("") != frame["reason"].fill_null(""))).sum()
    )  # fmt: skip
    if dry_run or not changed:
        return Treated(f"_quarantine/{table}", changed, ("raw", "reason"), snapshot.version(), None)
    version = _rewrite(lakehouse, uri, treated, snapshot, PiiPolicy({}))
    return Treated(f"_quarantine/{table}", changed, ("raw", "reason"), snapshot.version(), version)


def apply_pii(
    config: LakesyncConfig, lakehouse: Lakehouse, table: str, how: Rewrite | None = None
) -> PiiApplyReport:
    """Treat the personal data ``table`` already stores as its contract now says (module doc)."""
    how = how or Rewrite()
    if table not in config.tables:
        msg = f"unknown table {table!r} (tables: {', '.join(config.tables)})"
        raise PiiError(msg)
    contract = resolve_contract(table, config.tables[table])
    policy = PiiPolicy.of(contract, lakehouse.pii_key, variable=config.lakehouse.pii_key.env)
    if not policy:
        msg = f"table {table!r}: its contract marks no column `pii`; nothing to apply"
        raise PiiError(msg)
    if how.purges:
        refuse_while_syncing(config, lakehouse, [table])
    done = [*_data_tables(config, lakehouse, table, policy, dry_run=how.dry_run)]
    quarantined = _quarantine(config, lakehouse, table, policy, dry_run=how.dry_run)
    if quarantined is not None:
        done.append(quarantined)
    rewrote = any(t.version_after is not None for t in done)
    done.extend(_features(config, lakehouse, table, rebuild=rewrote and not how.dry_run))
    if how.purges:
        _purge(config, lakehouse, table, done)
    report = PiiApplyReport(
        table,
        tuple(f"{name}: {rule.describe()}" for name, rule in policy.rules.items()),
        tuple(done),
        how.dry_run,
        how.purges,
        datetime.now(tz=UTC),
        _notes(how, rewrote),
    )
    if not how.dry_run:
        AuditLog(lakehouse).append(
            [
                {
                    "kind": "pii_apply",
                    "table": table,
                    "status": "purged" if how.purge else "treated (old versions until VACUUM)",
                    "actor": how.actor,
                    "detail": json.dumps(report.to_dict(), default=str),
                }
            ],
            what=f"the pii apply report of table {table!r}",
        )
    return report


def _features(
    config: LakesyncConfig, lakehouse: Lakehouse, table: str, *, rebuild: bool
) -> Iterator[Treated]:
    """The feature tables computed from ``table``: rebuilt from its treated rows when it changed."""
    for name, feature in config.features.items():
        before = lakehouse.open(lakehouse.feature_uri(name)) if table in feature.inputs else None
        if before is None:
            continue
        if not rebuild:
            yield Treated(f"features/{name}", 0, (), before.version(), None)
            continue
        built = build_feature(config, name, lakehouse, run_id="pii-apply", restart=True)  # no old values kept
        yield Treated(f"features/{name}", built.rows, (), before.version(), built.delta_version)


def _purge(config: LakesyncConfig, lakehouse: Lakehouse, table: str, done: list[Treated]) -> None:
    """Remove the earlier versions (with their untreated values) of every table treated."""
    uris = {
        table: lakehouse.table_uri(table),
        f"_superseded/{table}": lakehouse.superseded_uri(table),
        f"_quarantine/{table}": lakehouse.quarantine_uri(table),
        **{
            f"features/{n}": lakehouse.feature_uri(n) for n, f in config.features.items() if table in f.inputs
        },
    }
    for treated in done:
        snapshot = lakehouse.open(uris[treated.table])
        if snapshot is not None:
            purge_history(snapshot)


def _notes(how: Rewrite, rewrote: bool) -> tuple[str, ...]:
    if how.dry_run:
        return ("dry run: nothing was written",)
    if how.purge:
        return ("purged: earlier versions (untreated values) were removed; time travel before now is gone",)
    if rewrote:
        return (
            "earlier versions still hold the untreated values until VACUUM (the maintenance "
            "schedule, or lakesync pii apply --purge)",
        )
    return ()

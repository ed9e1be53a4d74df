"""The global catalog: one row per asset and column, over every lake, table and feature.

Built from ``lakesync.yaml`` (datasets, mappings, contracts, owners, tags, descriptions), the
renames reviewers approved, the ledger (files per dataset, when last ingested), the drift log
(open events) and each Delta table's state (version, rows, last commit, evolved columns). It is
what answers "where is column X": a dataset row names the column as the dataset's files call it
(``source_column``) beside the canonical name its table gives it (``column``).

Written as the ``_catalog`` Delta table after every sync (:func:`write_catalog`), so any Delta
reader (and ``lakesync query``) can ask it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from lakesync.commit.delta import table_polars_schema
from lakesync.commit.provenance import Provenance
from lakesync.config import LakesyncConfig, ResolvedContract, resolve_contract
from lakesync.config.datatypes import describe
from lakesync.conform.target import PROVENANCE_PREFIX, RESCUED
from lakesync.features.build import feature_entities
from lakesync.features.history import COLUMNS as HISTORY_COLUMNS
from lakesync.state.drift_log import DriftLog
from lakesync.state.lakehouse import Lakehouse, row_count
from lakesync.state.ledger_state import ledger_summary
from lakesync.state.values import dataset_id

SCHEMA: dict[str, pl.DataType] = {
    "asset": pl.String(),  # lakehouse/<table>, lakes/<lake>/<dataset> or features/<feature> (the Dagster key)
    "kind": pl.String(),
    "table": pl.String(),  # The unified table the asset is, or feeds (for a feature: null).
    "lake": pl.String(),
    "dataset": pl.String(),
    "column": pl.String(),  # The canonical column name.
    "source_column": pl.String(),  # How the dataset's files name the column (datasets only).
    "mapped_by": pl.String(),  # config (columns:), approved rename (lakesync drift approve) or same name.
    "type": pl.String(),
    "nullable": pl.Boolean(),
    "origin": pl.String(),  # contract, evolved (added by drift) or computed (a feature's).
    "description": pl.String(),
    "pii": pl.String(),
    "subject_key": pl.String(),
    "checks": pl.String(),
    "asset_description": pl.String(),
    "owners": pl.String(),
    "tags": pl.String(),  # key=value pairs, comma-separated (pii=true on every asset holding personal data).
    "upstream": pl.String(),
    "downstream": pl.String(),
    "location": pl.String(),
    "format": pl.String(),
    "pattern": pl.String(),
    "delta_version": pl.Int64(),
    "rows": pl.Int64(),
    "last_commit": pl.Datetime("us", "UTC"),
    "files_ingested": pl.Int64(),
    "files_quarantined": pl.Int64(),
    "files_pending": pl.Int64(),
    "last_ingested": pl.Datetime("us", "UTC"),
    "drift_open": pl.Int64(),
    "built_at": pl.Datetime("us", "UTC"),
}


def table_asset(table: str) -> str:
    return f"lakehouse/{table}"


def dataset_asset(lake: str, dataset: str) -> str:
    return f"lakes/{lake}/{dataset}"


def feature_asset(feature: str) -> str:
    return f"features/{feature}"


def personal_tags(tags: Mapping[str, str], personal: bool) -> str:
    every = {**tags, **({"pii": "true"} if personal else {})}
    return ", ".join(f"{k}={v}" if v else k for k, v in sorted(every.items()))


@dataclass(frozen=True)
class _TableState:
    version: int | None
    rows: int | None
    last_commit: datetime | None
    schema: dict[str, pl.DataType]


def _state(snapshot: DeltaTable | None) -> _TableState:
    if snapshot is None:
        return _TableState(None, None, None, {})
    history = snapshot.history(1)
    stamp = history[0].get("timestamp") if history else None
    return _TableState(
        snapshot.version(),
        row_count(snapshot),
        datetime.fromtimestamp(stamp / 1000, tz=UTC) if isinstance(stamp, int) else None,
        table_polars_schema(snapshot) or {},
    )


def _table_columns(
    contract: ResolvedContract, state: _TableState, provenance: Provenance
) -> list[dict[str, Any]]:
    """The table's columns: its contract's, then those drift added (provenance left out)."""
    columns = [
        {
            "column": c.name,
            "type": c.type.name,
            "nullable": c.nullable,
            "origin": "contract",
            "description": c.description,
            "pii": c.pii.treatment if c.pii else None,
            "subject_key": c.subject_key,
            "checks": ", ".join(c.check_names()) or None,
        }
        for c in contract.columns
    ]
    known = set(contract.names)
    for name, dtype in state.schema.items():
        if name in known or name == RESCUED or name in provenance.names or name.startswith(PROVENANCE_PREFIX):
            continue
        columns.append({"column": name, "type": describe(dtype), "nullable": True, "origin": "evolved"})
    return columns


def catalog_frame(
    config: LakesyncConfig, lakehouse: Lakehouse, *, now: datetime | None = None
) -> pl.DataFrame:
    """The catalog of ``config``'s lakes, tables and features as they are now."""
    now = now or datetime.now(tz=UTC)
    provenance = Provenance.of(config)
    drift = DriftLog(lakehouse)
    datasets = [dataset_id(lake, name) for lake, spec in config.lakes.items() for name in spec.datasets]
    summary = ledger_summary(lakehouse, lakehouse.open(lakehouse.ledger_uri), datasets)
    counts = {row["dataset"]: row for row in summary.iter_rows(named=True)}
    events = drift.events()
    decisions = drift.every_decision()
    open_drift: dict[str, int] = {}
    for event in events:
        if event.status == "open":
            open_drift[event.dataset] = open_drift.get(event.dataset, 0) + 1
    feeds: dict[str, list[tuple[str, str]]] = {t: [] for t in config.tables}
    for lake, spec in config.lakes.items():
        for name, dataset in spec.datasets.items():
            feeds[dataset.table].append((lake, name))
    readers: dict[str, list[str]] = {t: [] for t in config.tables}
    for feature, spec_of_feature in config.features.items():
        for table in spec_of_feature.inputs:
            readers[table].append(feature_asset(feature))
    rows: list[dict[str, Any]] = []
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, settings in config.tables.items():
        contract = resolve_contract(table, settings)
        uri = lakehouse.table_uri(table)
        state = _state(lakehouse.open(uri))
        columns = tables[table] = _table_columns(contract, state, provenance)
        personal = any(c.get("pii") or c.get("subject_key") for c in columns)
        asset = {
            "asset": table_asset(table),
            "kind": "table",
            "table": table,
            "asset_description": settings.description,
            "owners": ", ".join(settings.owners) or None,
            "tags": personal_tags(settings.tags, personal) or None,
            "upstream": ", ".join(dataset_asset(*d) for d in feeds[table]) or None,
            "downstream": ", ".join(readers[table]) or None,
            "location": uri,
            "format": "delta",
            "delta_version": state.version,
            "rows": state.rows,
            "last_commit": state.last_commit,
            "drift_open": sum(open_drift.get(dataset_id(*d), 0) for d in feeds[table]),
        }
        rows += [{**asset, **column} for column in columns]
    for lake, spec in config.lakes.items():
        for name, dataset in spec.datasets.items():
            key = dataset_id(lake, name)
            renames = decisions[key].renames if key in decisions else {}
            source_names = {canonical: source for source, canonical in {**renames, **dataset.columns}.items()}
            columns = tables[dataset.table]
            personal = any(c.get("pii") or c.get("subject_key") for c in columns)
            asset = {
                "asset": dataset_asset(lake, name),
                "kind": "dataset",
                "table": dataset.table,
                "lake": lake,
                "dataset": name,
                "asset_description": dataset.description,
                "owners": ", ".join(dataset.owners) or None,
                "tags": personal_tags(dataset.tags, personal) or None,
                "downstream": table_asset(dataset.table),
                "location": spec.location,
                "format": dataset.format,
                "pattern": dataset.pattern,
                **_ledger_counts(counts.get(key)),
                "drift_open": open_drift.get(key, 0),
            }
            for column in columns:
                canonical = column["column"]
                source = source_names.get(canonical, canonical)
                mapped_by = (
                    "config"
                    if dataset.columns.get(source) == canonical
                    else "approved rename"
                    if renames.get(source) == canonical
                    else "same name"
                )
                rows.append({**asset, **column, "source_column": source, "mapped_by": mapped_by})
    for feature in config.features:
        rows += _feature_rows(config, feature, lakehouse, tables)
    frame = pl.DataFrame(rows, schema=SCHEMA, strict=False) if rows else pl.DataFrame(schema=SCHEMA)
    return frame.with_columns(pl.lit(now, SCHEMA["built_at"]).alias("built_at"))


def _ledger_counts(row: Mapping[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"files_ingested": 0, "files_quarantined": 0, "files_pending": 0, "last_ingested": None}
    return {
        "files_ingested": row["ingested"],
        "files_quarantined": row["quarantined"],
        "files_pending": row["pending"],
        "last_ingested": row["last_recorded_at"],
    }


def _feature_rows(
    config: LakesyncConfig, feature: str, lakehouse: Lakehouse, tables: Mapping[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    settings = config.features[feature]
    uri = lakehouse.feature_uri(feature)
    snapshot = lakehouse.open(uri)
    state = _state(snapshot)
    inputs = {c["column"]: c for table in settings.inputs for c in tables.get(table, [])}
    stored = [c for c in state.schema if c not in HISTORY_COLUMNS]
    names = stored or [*settings.group_by, *settings.aggregations]
    columns = []
    for name in names:
        carried = inputs.get(name) if name in settings.group_by else None
        dtype = state.schema.get(name)
        columns.append(
            {
                "column": name,
                "type": describe(dtype) if dtype is not None else (carried or {}).get("type"),
                "nullable": True,
                "origin": "computed",
                "description": settings.aggregations.get(name) or (carried or {}).get("description"),
                "pii": (carried or {}).get("pii"),
                "subject_key": (carried or {}).get("subject_key"),
            }
        )
    personal = any(c["pii"] or c["subject_key"] for c in columns)
    asset = {
        "asset": feature_asset(feature),
        "kind": "feature",
        "asset_description": settings.description,
        "owners": ", ".join(settings.owners) or None,
        "tags": personal_tags(settings.tags, personal) or None,
        "upstream": ", ".join(table_asset(t) for t in settings.inputs),
        "location": uri,
        "format": "delta",
        "delta_version": state.version,
        "rows": feature_entities(snapshot, settings) if snapshot is not None else None,
        "last_commit": state.last_commit,
    }
    return [{**asset, **column} for column in columns]


def write_catalog(lakehouse: Lakehouse, frame: pl.DataFrame, *, attempts: int = 5) -> int:
    """Replace the ``_catalog`` table's rows with ``frame``; its new version."""
    for attempt in range(attempts):
        try:
            write_deltalake(
                lakehouse.catalog_uri,
                frame.to_arrow(),
                mode="overwrite",
                schema_mode="overwrite",
                storage_options=dict(lakehouse.storage_options) or None,
            )
            break
        except CommitFailedError:  # another sync rebuilt it at the same moment: build on theirs
            if attempt == attempts - 1:
                raise
    snapshot = lakehouse.open(lakehouse.catalog_uri)
    assert snapshot is not None
    return snapshot.version()

"""Turn lakesync's results and contracts into Dagster metadata, in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from deltalake import DeltaTable

from lakesync.commit.maintenance import file_stats
from lakesync.commit.provenance import Provenance
from lakesync.config import LakesyncConfig, ResolvedContract
from lakesync.config.contracts import ContractColumn
from lakesync.config.datatypes import logical_name
from lakesync.conform.target import RESCUED
from lakesync.discover.planning import Discovery
from lakesync.monitor import human_duration
from lakesync.pipeline.results import DatasetSync, TableSync

MAX_RUNTIME_TAG = "dagster/max_runtime"
"""Seconds after which Dagster's run monitoring cancels a run (``max_runtime`` of a table or
feature in lakesync.yaml)."""


def _provenance_docs(provenance: Provenance) -> dict[str | None, str]:
    return {
        provenance.file: "Source of the row: its lake, a slash, and the file's path in that lake "
        "(see lakehouse/_ledger)",
        provenance.row: "Record number of the row in its file (1-based)",
        provenance.lake: "The lake the row came from",
        provenance.batch: "The batch of its dataset that committed the row (lakesync audit)",
        provenance.ingested_at: "When lakesync ingested the row's batch (UTC)",
    }


def dataset_key(lake: str, dataset: str) -> dg.AssetKey:
    return dg.AssetKey(["lakes", lake, dataset])


def sensor_name(lake: str, dataset: str) -> str:
    """The sensor that watches a lake dataset."""
    return f"watch_{lake}__{dataset}"


def table_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["lakehouse", table])


def quarantine_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["lakehouse", "_quarantine", table])


def feature_key(feature: str) -> dg.AssetKey:
    return dg.AssetKey(["features", feature])


def online_key(feature: str) -> dg.AssetKey:
    """A feature's latest values in the online store."""
    return dg.AssetKey(["online", feature])


LEDGER_KEY = dg.AssetKey(["lakehouse", "_ledger"])
CATALOG_KEY = dg.AssetKey(["lakehouse", "_catalog"])
DRIFT_KEY = dg.AssetKey(["lakehouse", "_drift"])
AUDIT_KEY = dg.AssetKey(["lakehouse", "_audit"])
RESULT_KEY = "lakesync_sync"
"""Metadata of a table's observation by each sync: the whole :class:`TableSync`, as JSON."""


def _check_text(contract_column: Any) -> list[str]:
    return [str(check.error or check.name) for check in contract_column.checks]


def _described(column: ContractColumn) -> str | None:
    """The contract's description, and for personal data how it is stored."""
    if column.pii is None:
        return column.description
    note = f"PII: {column.pii.describe()}; the contract checks the {column.type.name} value before"
    return f"{column.description} ({note})" if column.description else note


def column_schema(
    contract: ResolvedContract,
    columns: Mapping[str, str] | None = None,
    provenance: Provenance | None = None,
) -> dg.TableSchema:
    """The table's columns: the contract's (with descriptions and constraints), evolved ones, provenance."""
    result = [
        dg.TableColumn(
            name=column.name,
            type="string" if column.pii is not None else column.type.name,
            description=_described(column),
            constraints=dg.TableColumnConstraints(
                nullable=column.nullable, unique=column.unique, other=_check_text(column)
            ),
            tags={"pii": column.pii.treatment} if column.pii is not None else None,
        )
        for column in contract.columns
        if column.pii is None or column.pii.treatment != "drop"
    ]
    provenance = provenance or Provenance()
    known = set(contract.names) | provenance.names
    for name, kind in (columns or {}).items():
        if name in known:
            continue
        description = (
            "Values of a row that did not fit the table, as JSON (drift policy rescue)"
            if name == RESCUED
            else "Added by schema drift (policy evolve); not in the contract"
        )
        result.append(dg.TableColumn(name=name, type=kind, description=description))
    docs = _provenance_docs(provenance)
    for name, dtype in provenance.schema().items():
        result.append(dg.TableColumn(name=name, type=logical_name(dtype), description=docs[name]))
    return dg.TableSchema(columns=result)


def column_lineage(config: LakesyncConfig, table: str, contract: ResolvedContract) -> dg.TableColumnLineage:
    """Each canonical column from the source column of every dataset feeding the table."""
    dropped = {name for name, rule in contract.pii.items() if rule.treatment == "drop"}
    deps: dict[str, list[dg.TableColumnDep]] = {n: [] for n in contract.names if n not in dropped}
    for lake_name, lake in config.lakes.items():
        for ds_name, dataset in lake.datasets.items():
            if dataset.table != table:
                continue
            source_of = {canonical: source for source, canonical in dataset.columns.items()}
            for name, found in deps.items():
                found.append(
                    dg.TableColumnDep(
                        asset_key=dataset_key(lake_name, ds_name), column_name=source_of.get(name, name)
                    )
                )
    return dg.TableColumnLineage(deps_by_column={k: v for k, v in deps.items() if v})


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; pipes and line breaks in values are escaped."""

    def cell(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_value(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> dg.TableMetadataValue:
    """Rows as a Dagster table (the UI shows it inline, where markdown needs a click)."""

    def plain(value: Any) -> str | int | float | bool | None:
        return value if value is None or isinstance(value, str | int | float | bool) else str(value)

    return dg.MetadataValue.table(
        records=[dg.TableRecord({h: plain(v) for h, v in zip(header, row, strict=True)}) for row in rows],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(h, "int" if all(isinstance(r[i], int) for r in rows) else "string")
                for i, h in enumerate(header)
            ]
        ),
    )


def table_metadata(result: TableSync, *, uri: str) -> dict[str, Any]:
    """Metadata of a unified table's materialization."""
    rows = [
        (
            d.key,
            d.files_ingested,
            d.files_quarantined,
            d.rows_read,
            d.rows_committed,
            d.rows_quarantined,
            d.error or "",
        )
        for d in result.datasets
    ]
    return {
        "dagster/row_count": result.row_count,
        "dagster/uri": uri,
        "delta_version": result.delta_version,
        "rows_read": result.rows_read,
        "rows_committed": result.rows_committed,
        "rows_committed_by_another_run": sum(d.rows_committed_elsewhere for d in result.datasets),
        "rows_quarantined": result.rows_quarantined,
        "rows_superseded": result.rows_superseded,
        "files_ingested": result.files_ingested,
        "files_quarantined": result.files_quarantined,
        "contract_fingerprint": result.contract,
        "batches": dg.MetadataValue.json({d.key: list(d.batches) for d in result.datasets if d.batches}),
        "datasets": dg.MetadataValue.md(
            md_table(
                [
                    "dataset",
                    "files in",
                    "files quarantined",
                    "rows read",
                    "committed",
                    "quarantined",
                    "error",
                ],
                rows,
            )
        ),
    }


def delta_metadata(snapshot: DeltaTable | None) -> dict[str, Any]:
    """What the Delta log says about a table: last operation, files and their size, partitions."""
    if snapshot is None:
        return {}
    stats = file_stats(snapshot)
    last = snapshot.history(1)
    metadata: dict[str, Any] = {
        "delta_version": snapshot.version(),
        "delta_files": stats.files,
        "delta_bytes": stats.bytes,
        "delta_avg_file_bytes": stats.bytes // stats.files if stats.files else 0,
        "partition_columns": ", ".join(snapshot.metadata().partition_columns) or "(none)",
    }
    if last:
        metadata["delta_last_operation"] = str(last[0].get("operation", ""))
    return metadata


def quarantine_metadata(result: TableSync, *, uri: str) -> dict[str, Any]:
    """What this run quarantined, file by file, with reasons, and how to replay it after a fix."""
    files = [
        (d.key, case.file, "whole file (unreadable)", 1, case.rules, case.reason)
        for d in result.datasets
        for case in d.failures.unreadable
    ] + [
        (d.key, file, "rows", rows, rules, reason)
        for d in result.datasets
        for file, rows, rules, reason in d.failures.files
    ]
    examples = [
        (f"{d.lake}/{case.file}", case.row, case.columns, case.rules, case.reason)
        for d in result.datasets
        for case in d.failures.samples
        if case.row is not None
    ]
    metadata: dict[str, Any] = {
        "dagster/uri": uri,
        "delta_version": result.quarantine_version,
        "rows_quarantined": result.rows_quarantined,
        "files_quarantined": result.files_quarantined,
        "table": dg.MetadataValue.asset(table_key(result.table)),
        "replay": "after fixing the source or the contract: lakesync quarantine list "
        f"--table {result.table}, then lakesync quarantine replay ID (or --file LAKE/PATH)",
    }
    if files:
        header = ["dataset", "file", "quarantined", "records", "rules (first)", "reason (first record)"]
        metadata["quarantined_files"] = table_value(header, files)
    if examples:
        metadata["quarantined_rows"] = table_value(["file", "line", "columns", "rules", "reason"], examples)
    return metadata


def dataset_batch_metadata(result: DatasetSync) -> dict[str, Any]:
    """Metadata of a lake dataset's observation after an ingestion run."""
    metadata: dict[str, Any] = {
        "files_seen": result.files_seen,
        "files_ingested": result.files_ingested,
        "files_quarantined": result.files_quarantined,
        "files_pending": result.files_pending,
        "files_changed_after_ingestion": result.files_changed,
        "rows_read": result.rows_read,
        "rows_committed": result.rows_committed,
        "rows_quarantined": result.rows_quarantined,
        "rows_erased": result.rows_erased,
        "batches": dg.MetadataValue.json(list(result.batches)),
    }
    if result.max_latency_seconds is not None:
        metadata["max_landing_to_commit_seconds"] = round(result.max_latency_seconds, 3)
    if result.drift:
        metadata["drift"] = dg.MetadataValue.json([r.to_dict() for r in result.drift])
    if result.error:
        metadata["error"] = result.error
    return metadata


def scan_metadata(
    scan: Discovery, *, pending_batches: int, now_seconds: float, listing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Metadata of a lake dataset's observation by its sensor. A listing resumed across ticks
    (``listing``: the sensor's cursor, :func:`lakesync.defs.sensors.next_listing`) reports the
    files of its last whole pass (or of the pass so far, before the first ends) and the page."""
    files, size = scan.files, scan.bytes
    metadata: dict[str, Any] = {}
    if not scan.whole and listing is not None:
        done = listing.get("lake") or listing.get("listing") or {}
        files, size = int(done.get("files", files)), int(done.get("bytes", size))
        where = f"after {scan.started_after}" if scan.started_after is not None else "from the start"
        metadata["listing"] = (
            f"{scan.files:,} files listed {where}; "
            + scan.resumes()
            + ("" if listing.get("lake") else " (the first pass has not ended: files so far)")
        )
    metadata |= {
        "files": files,
        "bytes": size,
        "files_new": len(scan.new),
        "bytes_new": scan.new_bytes,
        "files_changed_after_ingestion": len(scan.changed),
        "batches_pending": pending_batches,
    }
    if scan.newest is not None:
        metadata["newest_file_at"] = dg.MetadataValue.timestamp(scan.newest)
        age = now_seconds - scan.newest.timestamp()
        metadata["newest_file_age"] = human_duration(age)
        metadata["newest_file_age_seconds"] = round(age, 1)
    return metadata

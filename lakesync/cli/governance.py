"""`lakesync audit` (the audit trail), `lakesync trace` (where a row came from) and
`lakesync erase` (a data subject's right to erasure)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import asdict
from datetime import datetime

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.config.units import parse_since
from lakesync.conform.pii import PiiError
from lakesync.conform.target import RESCUED
from lakesync.defs.providers import open_lakehouse
from lakesync.defs.resources import config_problem
from lakesync.governance.erase import Receipt, erase_subject
from lakesync.governance.errors import ErasureError
from lakesync.governance.pii_apply import PiiApplyReport, apply_pii
from lakesync.governance.rewrite import Rewrite
from lakesync.governance.trace import RowTrace, TraceError, trace_rows
from lakesync.report.summary import text_table
from lakesync.state.audit import AuditLog

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_COLUMNS = [
    "recorded_at",
    "kind",
    "lake",
    "dataset",
    "path",
    "status",
    "rows_read",
    "rows_committed",
    "rows_quarantined",
    "table",
    "table_version",
    "batch",
    "run_id",
]


def cmd_audit(config: LakesyncConfig, args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.table and args.table not in config.tables:
        print(f"unknown table {args.table!r} (tables: {', '.join(config.tables)})", file=sys.stderr)
        return EXIT_USAGE
    records = AuditLog(open_lakehouse(config)).read(table=args.table, file=args.file, since=since)
    if args.format == "json":
        for row in records.iter_rows(named=True):
            print(json.dumps({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}))
        return EXIT_OK
    if records.is_empty():
        print("no audit records match")
        return EXIT_OK
    shown = records.select(_COLUMNS).with_columns(run_id=records["run_id"].str.slice(0, 8))
    print(text_table(_COLUMNS, shown.rows()))
    return EXIT_OK


def format_pii_report(report: PiiApplyReport) -> str:
    head = "Personal data treated (dry run)" if report.dry_run else "Personal data treated"
    out = [
        f"{head}: table {report.table}, {report.at.isoformat(timespec='seconds')}",
        *[f"  {change}" for change in report.changes],
        "",
        text_table(
            ["table", "rows rewritten", "columns", "version before", "new version"],
            [
                (t.table, t.rows, ", ".join(t.columns), t.version_before, t.version_after)
                for t in report.tables
            ],
        ),
    ]
    out += [""] + [f"Note: {n}" for n in report.notes]
    return "\n".join(out)


def cmd_pii_apply(config: LakesyncConfig, args: argparse.Namespace) -> int:
    if args.purge and not args.dry_run:
        print(
            "warning: --purge removes the earlier versions of the table, its quarantine, superseded rows "
            "and feature tables: time travel before now will no longer be possible",
            file=sys.stderr,
        )
    try:
        report = apply_pii(
            config,
            open_lakehouse(config, pii_key=True),
            args.table,
            Rewrite(dry_run=args.dry_run, purge=args.purge, actor=getpass.getuser()),
        )
    except (PiiError, ErasureError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except dg.DagsterInvalidConfigError as exc:
        print(f"cannot apply: {config_problem(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report.to_dict(), default=str) if args.format == "json" else format_pii_report(report))
    return EXIT_OK


def format_trace(traces: list[RowTrace], table: str) -> str:
    if not traces:
        return f"no row of {table} matches"
    out: list[str] = []
    for trace in traces:
        values = ", ".join(f"{k}={v}" for k, v in trace.row.items() if v is not None and k != RESCUED)
        out.append(f"{table}: {values}")
        out.append(f"  source     {trace.lake}/{trace.file} record {trace.record}")
        if trace.batch is not None:
            when = trace.ingested_at.isoformat(timespec="seconds") if trace.ingested_at else "?"
            out.append(
                f"  committed  Delta version {trace.table_version}, batch {trace.batch} of {trace.dataset}, "
                f"run {trace.run_id}, {when}"
            )
        else:
            out.append("  committed  (no ledger record of this file: written by hand?)")
        for change in trace.history:
            at = change.at.isoformat(timespec="seconds") if change.at else "?"
            out.append(f"  history    version {change.version}: {change.change} from {change.source} ({at})")
        for source, why in trace.superseded:
            out.append(f"  superseded {source}: {why}")
        out.append("")
    return "\n".join(out).rstrip()


def cmd_trace(config: LakesyncConfig, args: argparse.Namespace) -> int:
    try:
        traces = trace_rows(config, open_lakehouse(config), args.table, args.where)
    except TraceError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        for trace in traces:
            print(json.dumps(asdict(trace), default=str))
    else:
        print(format_trace(traces, args.table))
    return EXIT_OK


def format_receipt(receipt: Receipt) -> str:
    head = "Erasure receipt (dry run)" if receipt.dry_run else "Erasure receipt"
    out = [
        f"{head}: subject {receipt.subject}, sha256 {receipt.subject_hash}, "
        f"{receipt.at.isoformat(timespec='seconds')}",
        "",
        text_table(
            ["table", "rows deleted", "version before", "new version"],
            [(t.table, t.rows, t.version_before, t.version_after) for t in receipt.tables],
        ),
    ]
    if receipt.source_files:
        out += ["", "Source files that held the subject:"] + [f"  {f}" for f in receipt.source_files]
    out += [""] + [f"Note: {n}" for n in receipt.notes]
    return "\n".join(out)


def cmd_erase(config: LakesyncConfig, args: argparse.Namespace) -> int:
    subject, sep, value = args.subject.partition("=")
    if not sep or not subject or not value:
        print("--subject takes SUBJECT=KEY, e.g. customer=12345", file=sys.stderr)
        return EXIT_USAGE
    if args.purge and not args.dry_run:
        print(
            "warning: --purge vacuums the affected tables with zero retention and removes their earlier "
            "commits: time travel and the change data feed (trace history) before this erasure will "
            "no longer be possible",
            file=sys.stderr,
        )
    try:
        receipt = erase_subject(
            config,
            open_lakehouse(config, pii_key=True),
            subject,
            value,
            Rewrite(dry_run=args.dry_run, purge=args.purge, actor=getpass.getuser()),
        )
    except ErasureError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except dg.DagsterInvalidConfigError as exc:
        print(f"cannot erase: {config_problem(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(receipt.to_dict()) if args.format == "json" else format_receipt(receipt))
    return EXIT_OK

"""`lakesync catalog` (where is column X, what is this asset) and `lakesync query` (one SQL over
the lakehouse and the lakes, in place)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from lakesync.catalog import Hit, catalog_frame, search
from lakesync.config import LakesyncConfig
from lakesync.config.contracts import hashes_pii
from lakesync.config.units import parse_since
from lakesync.defs.providers import open_lakehouse, open_stores
from lakesync.defs.resources import config_problem
from lakesync.report.summary import text_table
from lakesync.sql import QueryError, QueryOptions, reads_in_place, run_query
from lakesync.state.lakehouse import Lakehouse

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SHOWN_ROWS = 100
"""Rows a query prints as a table (the others: --limit, or --format csv/json/parquet)."""


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def cmd_catalog(config: LakesyncConfig, args: argparse.Namespace) -> int:
    """Every asset: kind, table, columns, version, rows, files, open drift, owners."""
    frame = catalog_frame(config, open_lakehouse(config))
    assets = frame.group_by("asset", maintain_order=True).agg(
        pl.col("kind", "table", "location", "delta_version", "rows", "last_commit").first(),
        pl.col("files_ingested", "files_pending", "drift_open", "owners", "tags").first(),
        pl.len().alias("columns"),
        pl.col("pii").drop_nulls().len().alias("pii_columns"),
    )
    if args.format == "json":
        for row in assets.iter_rows(named=True):
            print(json.dumps({k: _json(v) for k, v in row.items()}))
        return EXIT_OK
    header = [
        "asset",
        "kind",
        "columns",
        "pii",
        "delta version",
        "rows",
        "files",
        "pending",
        "open drift",
        "owners",
    ]
    print(
        text_table(
            header,
            [
                (
                    r["asset"],
                    r["kind"],
                    r["columns"],
                    r["pii_columns"],
                    r["delta_version"],
                    r["rows"],
                    r["files_ingested"],
                    r["files_pending"],
                    r["drift_open"],
                    r["owners"],
                )
                for r in assets.iter_rows(named=True)
            ],
        )
    )
    return EXIT_OK


def _sources(hit: Hit) -> str:
    return "; ".join(f"{s.lake}.{s.dataset}: {s.column}" for s in hit.sources) or "-"


def cmd_catalog_search(config: LakesyncConfig, args: argparse.Namespace) -> int:
    if args.lake and args.lake not in config.lakes:
        print(f"unknown lake {args.lake!r} (lakes: {', '.join(config.lakes)})", file=sys.stderr)
        return EXIT_USAGE
    frame = catalog_frame(config, open_lakehouse(config))
    hits = search(frame, args.text, columns_only=args.column, tag=args.tag, lake=args.lake)
    if args.format == "json":
        for hit in hits:
            print(json.dumps(hit.to_dict()))
        return EXIT_OK
    if not hits:
        print(f"nothing in the catalog matches {args.text!r}")
        return EXIT_OK
    rows = [
        (h.match, h.asset, h.column or "-", h.type, h.pii, _sources(h) if h.column else "-", h.description)
        for h in hits
    ]
    print(
        text_table(
            ["match", "asset", "column", "type", "pii", "in the lakes (dataset: name)", "description"], rows
        )
    )
    return EXIT_OK


def _find_asset(frame: pl.DataFrame, name: str) -> str | None:
    """An asset by its key (``lakehouse/orders``), its name (``orders``) or ``<lake>.<dataset>``."""
    assets = frame["asset"].unique(maintain_order=True).to_list()
    if name in assets:
        return str(name)
    for prefix in ("lakehouse/", "features/", "lakes/"):
        candidate = prefix + name.replace(".", "/")
        if candidate in assets:
            return candidate
    return None


def cmd_catalog_show(config: LakesyncConfig, args: argparse.Namespace) -> int:
    lakehouse = open_lakehouse(config)
    frame = catalog_frame(config, lakehouse)
    asset = _find_asset(frame, args.asset)
    if asset is None:
        known = ", ".join(frame["asset"].unique(maintain_order=True))
        print(f"no asset {args.asset!r} in the catalog (assets: {known})", file=sys.stderr)
        return EXIT_USAGE
    rows = frame.filter(pl.col("asset") == asset)
    if args.format == "json":
        columns = [{k: _json(v) for k, v in r.items()} for r in rows.iter_rows(named=True)]
        print(json.dumps({"asset": asset, "columns": columns}))
        return EXIT_OK
    first = rows.row(0, named=True)
    print("\n\n".join([_facts(asset, first), _columns(frame, rows, first), *_versions(lakehouse, first)]))
    return EXIT_OK


def _when(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, datetime) else value


def _facts(asset: str, first: dict[str, Any]) -> str:
    where = first["location"] + (f" ({first['pattern']}, {first['format']})" if first["pattern"] else "")
    facts = [
        ("kind", first["kind"]),
        ("description", first["asset_description"]),
        ("owners", first["owners"]),
        ("tags", first["tags"]),
        ("location", where),
        ("delta version", first["delta_version"]),
        ("rows", first["rows"]),
        ("last commit", first["last_commit"]),
        ("files ingested", first["files_ingested"]),
        ("files quarantined", first["files_quarantined"]),
        ("files pending", first["files_pending"]),
        ("last ingested", first["last_ingested"]),
        ("open drift events", first["drift_open"]),
        ("lineage", " -> ".join(p for p in (first["upstream"], asset, first["downstream"]) if p)),
    ]
    return "\n".join([asset, *(f"  {label + ':':<19}{_when(v)}" for label, v in facts if v is not None)])


def _columns(frame: pl.DataFrame, rows: pl.DataFrame, first: dict[str, Any]) -> str:
    if first["kind"] == "dataset":
        header = ["column (in the files)", "table column", "mapped by", "type", "pii", "checks"]
        names = ["source_column", "column", "mapped_by", "type", "pii", "checks"]
        return text_table(header, rows.select(names).rows())
    sources = frame.filter((pl.col("kind") == "dataset") & (pl.col("table") == first["table"]))
    header = [
        "column",
        "type",
        "nullable",
        "origin",
        "pii",
        "subject",
        "checks",
        "in the lakes (dataset: name)",
    ]
    table = []
    for r in rows.iter_rows(named=True):
        named = sources.filter(pl.col("column") == r["column"]).iter_rows(named=True)
        where = "; ".join(f"{s['lake']}.{s['dataset']}: {s['source_column']}" for s in named)
        shown = ("column", "type", "nullable", "origin", "pii", "subject_key", "checks")
        table.append((*(r[n] for n in shown), where or "-"))
    return text_table(header, table)


def _versions(lakehouse: Lakehouse, first: dict[str, Any]) -> list[str]:
    """The last commits of a table or feature."""
    snapshot = lakehouse.open(first["location"]) if first["kind"] != "dataset" else None
    if snapshot is None:
        return []
    history = [
        (h.get("version"), _when(datetime.fromtimestamp(h["timestamp"] / 1000, tz=UTC)), h.get("operation"))
        for h in snapshot.history(5)
    ]
    return [text_table(["version", "committed", "operation"], history)]


def _as_of(text: str | None) -> int | datetime | None:
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    try:
        return parse_since(text)
    except ValueError:
        msg = f"--as-of {text!r}: use a Delta version (3), a time (2026-11-01T08:00) or a duration ago (2h)"
        raise QueryError(msg) from None


def cmd_query(config: LakesyncConfig, args: argparse.Namespace) -> int:
    if args.format == "parquet" and not args.out:
        print("--format parquet writes a file: give it with --out PATH", file=sys.stderr)
        return EXIT_USAGE
    try:
        options = QueryOptions(
            as_of=_as_of(args.as_of), fresh=args.fresh, strict=args.strict, limit=args.limit
        )
        lakehouse = open_lakehouse(
            config, pii_key=hashes_pii(config) and reads_in_place(config, args.sql, options)
        )
        with open_stores(config) as stores:
            result = run_query(config, args.sql, lakehouse=lakehouse, stores=stores, options=options)
    except QueryError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except dg.DagsterInvalidConfigError as exc:
        print(f"cannot query: {config_problem(exc)}", file=sys.stderr)
        return EXIT_FAILED
    for name, version in result.versions.items():
        print(f"{name}: Delta version {version}", file=sys.stderr)
    for key, files in result.in_place.items():
        print(f"{key}: {files} file(s) read in place", file=sys.stderr)
    for skipped in result.skipped:
        print(f"left out: {skipped}", file=sys.stderr)
    _write(result.frame, args)
    return EXIT_OK


def _write(frame: pl.DataFrame, args: argparse.Namespace) -> None:
    out = Path(args.out) if args.out else None
    if args.format == "parquet":
        assert out is not None
        frame.write_parquet(out)
    elif args.format == "csv":
        text = frame.write_csv()
        out.write_text(text) if out else sys.stdout.write(text)
    elif args.format == "json":
        text = frame.write_ndjson()
        out.write_text(text) if out else sys.stdout.write(text)
    else:
        shown = frame.head(SHOWN_ROWS)
        text = text_table(shown.columns, shown.rows()) + "\n"
        out.write_text(text) if out else sys.stdout.write(text)
        if frame.height > SHOWN_ROWS:
            print(
                f"({frame.height:,} rows, the first {SHOWN_ROWS} shown: --format csv or json for all)",
                file=sys.stderr,
            )
    if out:
        print(f"{frame.height:,} row(s) written to {out}", file=sys.stderr)

"""`lakesync scan`: point lakesync at a lake (a folder, a bucket, or a lake of lakesync.yaml) and
get its datasets proposed, with the evidence for each choice. Nothing is ingested."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import polars as pl
from pydantic import TypeAdapter, ValidationError

from lakesync.coldstart.fragment import dump, fragment, merge_into
from lakesync.coldstart.propose import Knowledge, Proposal, Sampling, ScannedLake, propose
from lakesync.config import ConfigError, LakesyncConfig, default_config_path, load_config, resolve_contract
from lakesync.config.storage import AnyLake
from lakesync.defs.providers import open_lakehouse, open_store
from lakesync.defs.resources import config_problem
from lakesync.discover import LakeUnavailableError
from lakesync.report.summary import text_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TABLE_SAMPLE_ROWS = 5000


def _config(args: argparse.Namespace) -> tuple[LakesyncConfig | None, Path]:
    path = Path(args.config) if args.config else default_config_path(os.environ)
    if not path.exists() and not args.config:
        return None, path  # a new project: the proposal brings its own lakehouse
    return load_config(path), path


def _lake_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower() or "lake"
    return name if name[0].isalpha() else f"lake_{name}"


def _settings(target: str, args: argparse.Namespace, base: Path) -> tuple[str, dict[str, Any]]:
    """A lake's name and ``lakesync.yaml`` entry (without datasets) from a folder or a URI."""
    parsed = urlparse(target)
    endpoint: dict[str, Any] = {}
    if args.endpoint_url:
        endpoint = {"endpoint_url": args.endpoint_url, "allow_http": args.endpoint_url.startswith("http://")}
    if parsed.scheme in ("s3", "gs"):
        settings: dict[str, Any] = {
            "provider": "s3" if parsed.scheme == "s3" else "gcs",
            "bucket": parsed.netloc,
            "prefix": parsed.path.lstrip("/"),
        }
        if args.region and parsed.scheme == "s3":
            settings["region"] = args.region
        return _lake_name(parsed.netloc), {**settings, **endpoint}
    if parsed.scheme == "az":
        container, _, prefix = parsed.path.lstrip("/").partition("/")
        settings = {"provider": "azure", "account": parsed.netloc, "container": container, "prefix": prefix}
        return _lake_name(container), {**settings, **endpoint}
    folder = Path(target).expanduser().resolve()
    try:
        root = os.path.relpath(folder, base)
    except ValueError:
        root = str(folder)
    return _lake_name(folder.name), {
        "provider": "local",
        "root": root if not root.startswith("..") else str(folder),
    }


def _knowledge(config: LakesyncConfig | None) -> Knowledge:
    if config is None:
        return Knowledge({}, lambda _: None)
    contracts = {name: resolve_contract(name, table) for name, table in config.tables.items()}
    lakehouse = open_lakehouse(config)
    cache: dict[str, pl.DataFrame | None] = {}

    def sample(table: str) -> pl.DataFrame | None:
        if table not in cache:
            snapshot = lakehouse.open(lakehouse.table_uri(table))
            cache[table] = pl.scan_delta(snapshot).head(TABLE_SAMPLE_ROWS).collect() if snapshot else None
        return cache[table]

    return Knowledge(contracts, sample)


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        config, config_path = _config(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    base = config_path.parent.resolve()
    if config is not None and args.target in config.lakes:
        name = args.lake or args.target
        lake = config.lakes[args.target]
        settings = lake.model_dump(mode="json", exclude={"datasets"}, exclude_defaults=True)
        settings = {"provider": lake.provider, **settings}
    else:
        derived, settings = _settings(args.target, args, base)
        name = args.lake or derived
        try:
            lake = TypeAdapter(AnyLake).validate_python(
                {**settings, "datasets": {}}, context={"base_dir": str(base)}
            )
        except ValidationError as exc:
            print(f"{args.target}: not a lake lakesync can read: {exc.errors()[0]['msg']}", file=sys.stderr)
            return EXIT_USAGE
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if not args.quiet else None
    try:
        with open_store(name, lake) as store:
            proposal = propose(
                ScannedLake(name, settings, store),
                _knowledge(config),
                sampling=Sampling(files=args.sample, rows=args.rows),
                progress=say,
            )
    except LakeUnavailableError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    except dg.DagsterInvalidConfigError as exc:
        print(f"cannot scan: {config_problem(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(proposal), file=sys.stderr)
    document = fragment(proposal, lakehouse=None if config is not None else "./data/lakehouse")
    if not args.write:
        print(dump(document))
        return EXIT_OK
    return _write(Path(args.write), document, config_path if config is not None else None)


def _write(path: Path, document: Any, config_path: Path | None) -> int:
    base = path if path.exists() else config_path
    text = merge_into(base, document) if base is not None else dump(document)
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        print(f"{path}: written, but it does not validate yet:\n{exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{path}: written; it validates (answer its QUESTIONs, then `lakesync sync`)", file=sys.stderr)
    return EXIT_OK


def _summary(proposal: Proposal) -> str:
    rows: list[tuple[object, ...]] = []
    for d in proposal.datasets:
        if d.error is not None:
            rows.append(
                (d.group.name, d.group.pattern, len(d.group.files), d.sniffed.format, "-", "-", d.error)
            )
            continue
        how = f"matches ({d.match.score:.2f})" if d.match is not None else "new table"
        notes = [f"{len(d.questions)} question(s)"] if d.questions else []
        notes += [f"personal data? {', '.join(d.personal)}"] if d.personal else []
        rows.append(
            (
                d.group.name,
                d.group.pattern,
                len(d.group.files),
                d.sniffed.format,
                d.table,
                how,
                "; ".join(notes),
            )
        )
    header = ["dataset", "pattern", "files", "format", "table", "how", "notes"]
    unknown = (
        f"\n{proposal.unknown:,} file(s) of formats lakesync does not read were left out"
        if proposal.unknown
        else ""
    )
    return text_table(header, rows) + unknown


STARTER = """\
# lakesync.yaml: your lakes, the unified tables they feed and their contracts (every key:
# docs/configuration.md). `lakesync scan <folder | s3://bucket/prefix | gs://... | az://...>
# --write lakesync.yaml` proposes a lake's datasets and tables with the evidence for each;
# `lakesync validate` checks this file; `lakesync sync` ingests.
lakehouse:
  uri: ./data/lakehouse
lakes: {}
tables: {}
"""


def cmd_init(args: argparse.Namespace) -> int:
    """A new project: a starter ``lakesync.yaml`` in ``--dir``, with each target's scan merged in."""
    path = Path(args.dir) / "lakesync.yaml"
    if path.exists():
        print(
            f"{path} already exists: `lakesync scan TARGET --write {path}` adds a lake to it", file=sys.stderr
        )
        return EXIT_USAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER, encoding="utf-8")
    for target in args.targets:
        scan = argparse.Namespace(
            target=target,
            config=str(path),
            lake=None,
            sample=args.sample,
            rows=args.rows,
            write=str(path),
            endpoint_url=args.endpoint_url,
            region=args.region,
            quiet=args.quiet,
        )
        if (code := cmd_scan(scan)) != EXIT_OK:
            return code
    if not args.targets:
        print(f"{path}: written; `lakesync scan TARGET --write {path}` adds a lake", file=sys.stderr)
    return EXIT_OK

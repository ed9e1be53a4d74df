"""The `lakesync` command: what Dagster has no verb for (sync once, validate, status, demo)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from lakesync.config import ConfigError, LakesyncConfig, default_config_path, load_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else default_config_path(os.environ)


def _load(args: argparse.Namespace) -> LakesyncConfig | None:
    try:
        return load_config(_config_path(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAILED
    from lakesync.defs import build_definitions

    try:
        definitions = build_definitions(config)
        definitions.get_repository_def().get_all_jobs()
    except Exception as exc:  # noqa: BLE001 - report any definition error as a problem
        print(f"{_config_path(args)}: the Dagster definitions cannot be built: {exc}", file=sys.stderr)
        return EXIT_FAILED
    from lakesync.config.preflight import preflight_problems

    problems = preflight_problems(config, os.environ)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        print(
            f"{_config_path(args)}: {len(problems)} problem(s) in the environment:\n{lines}", file=sys.stderr
        )
        return EXIT_FAILED
    datasets = sum(len(lake.datasets) for lake in config.lakes.values())
    print(
        f"{_config_path(args)}: OK — {len(config.lakes)} lake(s), {datasets} dataset(s), "
        f"{len(config.tables)} table(s)"
    )
    from lakesync.config.contracts import hashes_pii, resolve_contract

    contracts = {name: resolve_contract(name, table) for name, table in config.tables.items()}
    personal = [f"{t}.{c} ({r.treatment})" for t, k in contracts.items() for c, r in k.pii.items()]
    subjects = [f"{s} ({t}.{c})" for t, k in contracts.items() for c, s in k.subjects.items()]
    if personal:
        print(f"personal data: {', '.join(personal)}")
    if subjects:
        print(f"data subjects: {', '.join(subjects)}")
    if hashes_pii(config):
        print(f"hashing needs the secret in ${config.lakehouse.pii_key.env} when syncing")
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAILED
    lakes = args.lake or None
    unknown = [lake for lake in lakes or [] if lake not in config.lakes]
    if unknown:
        print(f"unknown lake(s): {', '.join(unknown)} (lakes: {', '.join(config.lakes)})", file=sys.stderr)
        return EXIT_USAGE
    from lakesync.defs.launch import sync
    from lakesync.report.summary import sync_summary

    outcome = sync(config, lakes=lakes, verbose=args.verbose)
    print(sync_summary(outcome.datasets, outcome.tables, outcome.checks, outcome.features))
    if not outcome.recorded:
        print("\nDAGSTER_HOME is not set: these runs were not recorded for the Dagster UI.")
    if outcome.failures:
        print("\nFailed:", file=sys.stderr)
        for failure in outcome.failures:
            print(f"  {failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAILED
    from lakesync.defs.providers import open_lakehouse, open_stores
    from lakesync.pipeline.status import dataset_statuses, table_statuses
    from lakesync.report.summary import text_table

    lakehouse = open_lakehouse(config)
    with open_stores(config) as stores:
        datasets = dataset_statuses(config, lakehouse, stores=stores)
    print(
        text_table(
            [
                "lake",
                "dataset",
                "table",
                "files in lake",
                "known",
                "ingested",
                "quarantined",
                "new",
                "pending batches",
                "last ingestion",
            ],
            [
                (
                    d.lake,
                    d.dataset,
                    d.table,
                    d.files_in_lake,
                    d.files_known,
                    d.files_ingested,
                    d.files_quarantined,
                    d.files_new,
                    d.batches_pending,
                    d.last_ingested_at,
                )
                for d in datasets
            ],
        )
    )
    print()
    print(
        text_table(
            ["table", "delta version", "rows", "superseded", "quarantine records", "last commit"],
            [
                (t.table, t.delta_version, t.rows, t.superseded_rows, t.quarantined_rows, t.last_commit_at)
                for t in table_statuses(config, lakehouse)
            ],
        )
    )
    errors = [d for d in datasets if d.error]
    for d in errors:
        print(f"\n{d.key}: {d.error}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAILED
    from lakesync.cli.review import run

    return run(config, args)


def cmd_governance(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAILED
    return int(args.governance(config, args))


def cmd_demo(args: argparse.Namespace) -> int:
    from lakesync.demo.generate import generate

    try:
        summary = generate(Path(args.dir), reset=args.reset)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    lakes = summary.root / "data" / "lakes"
    print(f"Wrote {summary.files} files ({summary.rows} rows) in 3 lakes under {lakes}")
    print(f"and their configuration: {summary.config}")
    print(f"Next: lakesync sync --config {summary.config}")
    return EXIT_OK


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lakesync")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="lakesync",
        description="Keep fragmented data lakes in sync with one Delta lakehouse, on Dagster.",
    )
    root.add_argument("--version", action="version", version=f"lakesync {_version()}")
    commands = root.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", help="lakesync.yaml (default: $LAKESYNC_CONFIG, then ./lakesync.yaml)")
        return sub

    sync = with_config(commands.add_parser("sync", help="discover and ingest what is new, once"))
    sync.add_argument("--lake", action="append", help="only this lake (repeatable)")
    sync.add_argument("-v", "--verbose", action="store_true", help="show Dagster's run log")
    sync.set_defaults(func=cmd_sync)
    with_config(
        commands.add_parser("validate", help="check the configuration and the contracts")
    ).set_defaults(func=cmd_validate)
    with_config(
        commands.add_parser("status", help="files and tables: known, ingested, quarantined, versions")
    ).set_defaults(func=cmd_status)
    from lakesync.cli.review import add_commands

    add_commands(commands, with_config)
    for name in ("drift", "quarantine"):
        commands.choices[name].set_defaults(func=cmd_review)
    from lakesync.cli.governance import add_commands as add_governance

    add_governance(commands, with_config)
    for name in ("audit", "trace", "erase", "pii"):
        commands.choices[name].set_defaults(func=cmd_governance)
    demo = commands.add_parser("demo", help="write demo lakes and a lakesync.yaml for them")
    demo.add_argument("--dir", default=".", help="where to write them (default: .)")
    demo.add_argument(
        "--reset", action="store_true", help="replace a demo written there before (lakes and lakehouse)"
    )
    demo.set_defaults(func=cmd_demo)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="dagster")
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `lakesync audit | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

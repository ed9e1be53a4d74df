"""The `lakesync` command: what Dagster has no verb for (sync once, validate, status, demo).

The commands are declared in :mod:`lakesync.cli.parser`; each is imported when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lakesync.cli.parser import parser

if TYPE_CHECKING:
    from lakesync.config import LakesyncConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _config_path(args: argparse.Namespace) -> Path:
    from lakesync.config import default_config_path

    return Path(args.config) if args.config else default_config_path(os.environ)


def _load(args: argparse.Namespace) -> LakesyncConfig | None:
    from lakesync.config import ConfigError, load_config

    try:
        return load_config(_config_path(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_validate(config: LakesyncConfig, args: argparse.Namespace) -> int:
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
    if args.online and not _online(config):
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


@contextlib.contextmanager
def _show_progress() -> Iterator[None]:
    """A line per batch on stderr while a dataset catches up in several batches."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    progress = logging.getLogger("lakesync.progress")
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False
    try:
        yield
    finally:
        progress.removeHandler(handler)
        progress.propagate = True


def _online(config: LakesyncConfig) -> bool:
    """One line per lake: listed with its credentials, or why not. False when one failed."""
    import dagster as dg

    from lakesync.defs.providers import open_stores
    from lakesync.defs.resources import config_problem
    from lakesync.discover.probe import probe_lake

    try:
        with open_stores(config) as stores:
            probes = [
                probe_lake(name, stores[name], {d: ds.pattern for d, ds in lake.datasets.items()})
                for name, lake in config.lakes.items()
            ]
    except dg.DagsterInvalidConfigError as exc:
        print(f"cannot open the lakes: {config_problem(exc)}", file=sys.stderr)
        return False
    for probe in probes:
        print(probe.line(), file=sys.stderr if probe.error else sys.stdout)
    return not any(p.error for p in probes)


def cmd_sync(config: LakesyncConfig, args: argparse.Namespace) -> int:
    lakes = args.lake or None
    unknown = [lake for lake in lakes or [] if lake not in config.lakes]
    if unknown:
        print(f"unknown lake(s): {', '.join(unknown)} (lakes: {', '.join(config.lakes)})", file=sys.stderr)
        return EXIT_USAGE
    from lakesync.coldstart.adopt import watched_lakes
    from lakesync.defs.launch import sync
    from lakesync.report.summary import sync_summary

    if watched_lakes(config):  # a table's autonomy.new_datasets: look for datasets first
        from lakesync.cli.adopt import adopt_new_datasets

        config, found = adopt_new_datasets(config, _config_path(args), lakes)
        for line in found:
            print(f"new datasets: {line}")
    with _show_progress():
        outcome = sync(
            config,
            lakes=lakes,
            verbose=args.verbose,
            config_path=_config_path(args),
            in_process=args.in_process,
        )
    for line in outcome.intakes:
        print(f"events: {line}")
    print(sync_summary(outcome.datasets, outcome.tables, outcome.checks, outcome.features))
    if not outcome.recorded:
        print("\nDAGSTER_HOME is not set: these runs were not recorded for the Dagster UI.")
    elif outcome.run_ids and outcome.instance:
        print(f"\nRuns recorded in the Dagster instance: {outcome.instance}.")
    if outcome.failures:
        print("\nFailed:", file=sys.stderr)
        for failure in outcome.failures:
            print(f"  {failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_status(config: LakesyncConfig, args: argparse.Namespace) -> int:
    from lakesync.defs.providers import open_lakehouse, open_stores
    from lakesync.pipeline.status import dataset_statuses, events_statuses, table_statuses
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
    events = events_statuses(config, lakehouse)
    if events:
        print()
        print(
            text_table(
                [
                    "lake",
                    "events from",
                    "announced, waiting",
                    "last received",
                    "last reconciled",
                    "missed (last)",
                    "missed (total)",
                    "not understood",
                ],
                [
                    (
                        e.lake,
                        e.source,
                        e.announced_waiting,
                        e.last_intake_at,
                        e.last_reconciled_at,
                        e.missed_last,
                        e.missed_total,
                        e.messages_not_understood,
                    )
                    for e in events
                ],
            )
        )
    for e in events:
        for failure in e.recent_failures:
            print(f"{e.lake}: a message not understood: {failure}", file=sys.stderr)
    errors = [d for d in datasets if d.error]
    for d in errors:
        print(f"\n{d.key}: {d.error}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


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


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="dagster")
    args = parser().parse_args(argv)
    module, _, name = args.handler.partition(":")
    command = getattr(importlib.import_module(module), name)
    try:
        if not args.needs_config:
            return int(command(args))
        config = _load(args)
        return EXIT_FAILED if config is None else int(command(config, args))
    except BrokenPipeError:  # `lakesync audit | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

"""Every `lakesync` command and option, and where each command is implemented.

Nothing heavy is imported here: a command names its function as ``"module:function"`` and
:func:`lakesync.cli.main.main` imports it only when that command runs, so ``lakesync --help``
and a mistyped option answer at once. Commands marked ``config`` get the loaded
``lakesync.yaml`` as their first argument.
"""

from __future__ import annotations

import argparse

_MAIN = "lakesync.cli.main"
_REVIEW = "lakesync.cli.review"
_GOVERNANCE = "lakesync.cli.governance"
_EXPLORE = "lakesync.cli.explore"
_SCAN = "lakesync.cli.scan"
_FEATURES = "lakesync.cli.features"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lakesync")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def _command(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    handler: str,
    help_text: str,
    *,
    config: bool = True,
) -> argparse.ArgumentParser:
    """A command that runs ``handler`` (``module:function``); with ``config``, it takes --config and
    the handler gets the loaded configuration."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
    if config:
        sub.add_argument("--config", help="lakesync.yaml (default: $LAKESYNC_CONFIG, then ./lakesync.yaml)")
    sub.set_defaults(handler=handler, needs_config=config)
    return sub


def _rewrite_options(command: argparse.ArgumentParser, *, dry_run: str) -> None:
    """--dry-run, --purge and --format of the commands that rewrite stored rows."""
    command.add_argument("--dry-run", action="store_true", help=dry_run)
    command.add_argument(
        "--purge",
        action="store_true",
        help="also delete the earlier versions: old files, commits and change data (ends time travel)",
    )
    command.add_argument("--format", choices=["text", "json"], default="text")


def _sync_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sync = _command(commands, "sync", f"{_MAIN}:cmd_sync", "discover and ingest what is new, once")
    sync.add_argument("--lake", action="append", help="only this lake (repeatable)")
    sync.add_argument("-v", "--verbose", action="store_true", help="show Dagster's run log")
    sync.add_argument(
        "--in-process",
        action="store_true",
        help="run the runs in this process even on an instance with a run queue (docs/deploy.md)",
    )
    validate = _command(
        commands, "validate", f"{_MAIN}:cmd_validate", "check the configuration and the environment"
    )
    validate.add_argument(
        "--online", action="store_true", help="also list each lake once: endpoint and credentials"
    )
    _command(
        commands, "status", f"{_MAIN}:cmd_status", "files and tables: known, ingested, quarantined, versions"
    )


def _review_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`drift` and `quarantine`: review what lakesync held back."""
    drift = commands.add_parser("drift", help="review schema drift: list, approve, reject")
    drift_commands = drift.add_subparsers(dest="drift_command", required=True)
    listing = _command(
        drift_commands, "list", f"{_REVIEW}:drift_list", "open drift events (--all: every one)"
    )
    listing.add_argument("--all", action="store_true")
    listing.add_argument("--dataset", help="only this <lake>.<dataset>")
    for verb in ("approve", "reject"):
        sub = _command(drift_commands, verb, f"{_REVIEW}:drift_{verb}", f"{verb} a drift event by its id")
        sub.add_argument("id")
        sub.add_argument("--note", help="why (recorded with the decision)")
    revert = _command(
        drift_commands,
        "revert",
        f"{_REVIEW}:drift_revert",
        "undo an approved rename: no longer mapped, the rows it brought in moved to quarantine",
    )
    revert.add_argument("id")
    quarantine = commands.add_parser("quarantine", help="what was rejected, and replaying it after a fix")
    q_commands = quarantine.add_subparsers(dest="quarantine_command", required=True)
    q_list = _command(
        q_commands, "list", f"{_REVIEW}:quarantine_list", "rejected rows and files per file and batch"
    )
    q_list.add_argument("--table")
    q_list.add_argument("--all", action="store_true", help="also what was replayed already")
    replay = _command(
        q_commands, "replay", f"{_REVIEW}:quarantine_replay", "ingest again after a contract or mapping fix"
    )
    replay.add_argument("ids", nargs="*", help="ids from `lakesync quarantine list`")
    replay.add_argument("--file", help="everything quarantined from LAKE/PATH")
    replay.add_argument("--table")


def _governance_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`audit`, `trace`, `erase` and `pii apply`."""
    audit = _command(
        commands, "audit", f"{_GOVERNANCE}:cmd_audit", "the audit trail: every file, batch and decision"
    )
    audit.add_argument("--table", help="only records of this table")
    audit.add_argument("--file", help="only records of files whose LAKE/PATH contains this")
    audit.add_argument("--since", help="only records since: a duration (2h, 7d) or an ISO date/time")
    audit.add_argument("--format", choices=["table", "json"], default="table")
    trace = _command(
        commands, "trace", f"{_GOVERNANCE}:cmd_trace", "where rows came from: source file, commit, history"
    )
    trace.add_argument("--table", required=True)
    trace.add_argument("--where", required=True, help='a SQL condition, e.g. "order_id = 42"')
    trace.add_argument("--format", choices=["text", "json"], default="text")
    erase = _command(
        commands,
        "erase",
        f"{_GOVERNANCE}:cmd_erase",
        "delete a data subject's rows everywhere; prints a receipt",
    )
    erase.add_argument("--subject", required=True, help="SUBJECT=KEY, e.g. customer=12345")
    _rewrite_options(erase, dry_run="count what would be deleted; delete nothing")
    pii = commands.add_parser("pii", help="personal data: treat rows stored before a column was marked pii")
    pii_commands = pii.add_subparsers(dest="pii_command", required=True, metavar="COMMAND")
    apply = _command(
        pii_commands,
        "apply",
        f"{_GOVERNANCE}:cmd_pii_apply",
        "hash, mask or drop the personal columns a table already stores, as its contract says",
    )
    apply.add_argument("--table", required=True)
    _rewrite_options(apply, dry_run="say what would be treated; write nothing")


def _explore_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`catalog` and `query`: find any column in any lake, query lakes and lakehouse in place."""
    catalog = _command(
        commands, "catalog", f"{_EXPLORE}:cmd_catalog", "every asset of every lake, table and feature"
    )
    catalog.add_argument("--format", choices=["table", "json"], default="table")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="COMMAND")
    find = _command(
        catalog_commands,
        "search",
        f"{_EXPLORE}:cmd_catalog_search",
        "where is column X: by its name, or by any lake's name for it",
    )
    find.add_argument("text")
    find.add_argument("--column", action="store_true", help="columns only (not asset names)")
    find.add_argument("--tag", help="only assets with this tag or KEY=VALUE (pii: personal data)")
    find.add_argument("--lake", help="only columns and assets of this lake")
    find.add_argument("--format", choices=["table", "json"], default="table")
    show = _command(
        catalog_commands,
        "show",
        f"{_EXPLORE}:cmd_catalog_show",
        "one asset: columns, their names in each lake, contract, lineage, versions",
    )
    show.add_argument("asset", help="lakehouse/orders, orders, eu_sales.orders or lakes/eu_sales/orders")
    show.add_argument("--format", choices=["table", "json"], default="table")
    scan = _command(
        commands,
        "scan",
        f"{_SCAN}:cmd_scan",
        "propose datasets, formats, mappings and contracts for a lake (nothing is ingested)",
        config=False,
    )
    scan.add_argument(
        "target",
        help="a folder, s3://bucket/prefix, gs://..., az://account/container/..., or a lake of lakesync.yaml",
    )
    scan.add_argument(
        "--config",
        help="lakesync.yaml whose tables to match (default: $LAKESYNC_CONFIG, then ./lakesync.yaml, if any)",
    )
    scan.add_argument("--lake", help="the lake's name in the proposal (default: from the folder or bucket)")
    scan.add_argument(
        "--sample", type=int, default=3, help="files sampled per dataset (newest first; default 3)"
    )
    scan.add_argument(
        "--rows", type=int, default=2000, help="rows read from each sampled file (default 2000)"
    )
    scan.add_argument(
        "--write", help="write the proposal merged into this file (or the config) and validate it"
    )
    scan.add_argument("--endpoint-url", help="a non-default object-store endpoint (MinIO, an emulator)")
    scan.add_argument("--region", help="the S3 region")
    scan.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    init = _command(
        commands,
        "init",
        f"{_SCAN}:cmd_init",
        "start a project: a lakesync.yaml, with what `scan` proposes for each lake given",
        config=False,
    )
    init.add_argument("targets", nargs="*", help="lakes to scan into it (as for scan)", metavar="TARGET")
    init.add_argument("--dir", default=".", help="where to write lakesync.yaml (default: .)")
    init.add_argument("--sample", type=int, default=3, help="files sampled per dataset (default 3)")
    init.add_argument(
        "--rows", type=int, default=2000, help="rows read from each sampled file (default 2000)"
    )
    init.add_argument("--endpoint-url", help="a non-default object-store endpoint (MinIO, an emulator)")
    init.add_argument("--region", help="the S3 region")
    init.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    query = _command(
        commands,
        "query",
        f"{_EXPLORE}:cmd_query",
        "one SQL over tables (orders), lake datasets (eu_sales.orders) and _catalog, in place",
    )
    query.add_argument("sql")
    query.add_argument(
        "--as-of", help="tables at this Delta version, time (2026-11-01T08:00) or duration ago (2h)"
    )
    query.add_argument(
        "--fresh", action="store_true", help="tables plus their lakes' files not ingested yet, read in place"
    )
    query.add_argument(
        "--strict", action="store_true", help="rows read in place: only those passing the contract"
    )
    query.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    query.add_argument("--out", help="write the result to this file")
    query.add_argument("--limit", type=int, help="at most this many rows")


def _feature_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`features training-set` and `features get`: the feature store."""
    features = commands.add_parser(
        "features", help="feature values as of a time (training sets), and now (online)"
    )
    feature_commands = features.add_subparsers(dest="features_command", required=True, metavar="COMMAND")
    training = _command(
        feature_commands,
        "training-set",
        f"{_FEATURES}:cmd_training_set",
        "each label row with the feature values as of its time (never from later rows)",
    )
    training.add_argument("--labels", required=True, help="a parquet, CSV or JSON-lines file of label rows")
    training.add_argument("--at", required=True, help="the labels' time column")
    training.add_argument("--features", required=True, nargs="+", help="feature tables (with timestamp:)")
    training.add_argument(
        "--entity", action="append", help="KEY or KEY=LABEL_COLUMN when the labels name a key otherwise"
    )
    training.add_argument("--timezone", default="UTC", help="zone of naive label times (default UTC)")
    training.add_argument("--out", help="write parquet (or .csv) here instead of printing")
    get = _command(
        feature_commands,
        "get",
        f"{_FEATURES}:cmd_get",
        "the latest values of entities, from the online store",
    )
    get.add_argument("feature")
    get.add_argument(
        "--entity", required=True, action="append", help="KEY=VALUE[,VALUE...], e.g. customer_id=42"
    )
    get.add_argument("--format", choices=["table", "json"], default="table")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="lakesync",
        description="Keep fragmented data lakes in sync with one Delta lakehouse, on Dagster.",
    )
    root.add_argument("--version", action="version", version=f"lakesync {_version()}")
    commands = root.add_subparsers(dest="command", required=True)
    _sync_commands(commands)
    _review_commands(commands)
    _governance_commands(commands)
    _explore_commands(commands)
    _feature_commands(commands)
    demo = _command(
        commands, "demo", f"{_MAIN}:cmd_demo", "write demo lakes and a lakesync.yaml for them", config=False
    )
    demo.add_argument("--dir", default=".", help="where to write them (default: .)")
    demo.add_argument(
        "--reset", action="store_true", help="replace a demo written there before (lakes and lakehouse)"
    )
    return root

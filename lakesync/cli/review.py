"""`lakesync drift ...` and `lakesync quarantine ...`: review what lakesync held back."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from lakesync.config import LakesyncConfig
from lakesync.defs.providers import open_lakehouse, open_stores
from lakesync.governance.replay import QuarantineGroup, plan_replays, quarantine_groups
from lakesync.report.summary import sync_summary, text_table
from lakesync.state.drift_log import DriftEvent, DriftLog
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.values import BatchPlan

EXIT_OK = 0
EXIT_FAILED = 1


def _when(event: DriftEvent) -> str:
    return event.last_seen.strftime("%Y-%m-%d %H:%M")


def _decided(event: DriftEvent) -> str:
    if event.status == "handled":
        rescued = any(c.change == "rescued" for c in event.report.changes)
        done = event.report.actions or (("values kept in _rescued_data, rows committed",) if rescued else ())
        return "handled by the drift policy: " + ("; ".join(done) or "nothing changed")
    return f"{event.status} by {event.decided_by or 'someone'}"


def plan_replays_opened(
    config: LakesyncConfig, lakehouse: Lakehouse, groups: list[QuarantineGroup], *, run_id: str
) -> list[BatchPlan]:
    """Plan replays, with the lakes' stores open (to look the files up as they are now)."""
    with open_stores(config) as stores:
        return plan_replays(config, lakehouse, groups, run_id=run_id, stores=stores)


def drift_list(config: LakesyncConfig, args: argparse.Namespace) -> int:
    events = DriftLog(open_lakehouse(config)).events(dataset=args.dataset)
    shown = events if args.all else [e for e in events if e.status == "open"]
    if not shown:
        print("No open drift events." if not args.all else "No drift events.")
        if not args.all and events:
            print(f"({len(events)} reviewed or handled: `lakesync drift list --all`)")
        return EXIT_OK
    print(
        text_table(
            ["id", "dataset", "status", "files", "held back", "last seen", "differences", "suggestion"],
            [
                (
                    e.id,
                    e.dataset,
                    e.status,
                    len(e.files),
                    len(e.held_back),
                    _when(e),
                    e.report.summary(),
                    e.report.suggestion() if e.status == "open" else f"nothing to do ({_decided(e)})",
                )
                for e in shown
            ],
        )
    )
    return EXIT_OK


def _replay_held_back(config: LakesyncConfig, event: DriftEvent) -> int:
    """Re-ingest the files a drift event quarantined, through the table's Dagster job."""
    from lakesync.defs.launch import sync

    lakehouse = open_lakehouse(config)
    groups = [
        g
        for g in quarantine_groups(config, lakehouse, table=event.table)
        if g.key == event.dataset
        and g.file in event.held_back
        and g.replayed_in is None
        and "schema_drift" in g.rules
    ]
    if groups:  # the whole files were held back: replay them whole
        plan_replays_opened(
            config, lakehouse, [replace(g, level="file") for g in groups], run_id="drift-approve"
        )
    outcome = sync(config, datasets=[event.dataset], trigger="drift-review")
    print(sync_summary(outcome.datasets, outcome.tables))
    for failure in outcome.failures:
        print(f"  {failure}", file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_FAILED


def drift_decide(config: LakesyncConfig, args: argparse.Namespace, decision: str) -> int:
    log = DriftLog(open_lakehouse(config))
    try:
        event = log.decide(args.id, decision, note=args.note)  # type: ignore[arg-type]
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return EXIT_FAILED
    print(f"{decision} drift {event.id} of {event.dataset} ({event.decided_by}): {event.report.summary()}")
    if decision == "approved":
        print(f"Re-ingesting what it held back ({len(event.held_back)} file(s)) ...")
    else:
        print("Its files stay quarantined; the dataset goes on.")
    return _replay_held_back(config, event) if decision == "approved" else _run(config, event.dataset)


def drift_approve(config: LakesyncConfig, args: argparse.Namespace) -> int:
    return drift_decide(config, args, "approved")


def drift_reject(config: LakesyncConfig, args: argparse.Namespace) -> int:
    return drift_decide(config, args, "rejected")


def drift_revert(config: LakesyncConfig, args: argparse.Namespace) -> int:
    from lakesync.governance.revert import RevertError, revert_rename

    lakehouse = open_lakehouse(config)
    try:
        with open_stores(config) as stores:
            done = revert_rename(config, lakehouse, args.id, stores, actor=None)
    except RevertError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    pairs = ", ".join(f"{source} -> {column}" for source, column in done.renames.items())
    lake, dataset = done.dataset.split(".", 1)
    table = config.lakes[lake].datasets[dataset].table
    if done.finished_before:
        print(
            f"drift {done.event} of {done.dataset} is reverted ({pairs} not mapped); none of its rows is left"
        )
        return EXIT_OK
    print(
        f"reverted drift {done.event} of {done.dataset}: {pairs} is no longer mapped; {done.rows:,} row(s) "
        f"of {len(done.files)} file(s) moved from {table} (now version {done.table_version}) to its "
        "quarantine (`lakesync quarantine list`); files with the old name follow the drift policy again"
        + (f"; {done.restored:,} key(s) have back the version its rows had replaced" if done.restored else "")
    )
    if done.note:
        print(f"note: {done.note}; those keys are not in {table} now (their rows are in its quarantine)")
    return EXIT_OK


def _run(config: LakesyncConfig, dataset: str) -> int:
    from lakesync.defs.launch import sync

    outcome = sync(config, datasets=[dataset], trigger="drift-review")
    print(sync_summary(outcome.datasets, outcome.tables))
    return EXIT_OK if outcome.ok else EXIT_FAILED


def quarantine_list(config: LakesyncConfig, args: argparse.Namespace) -> int:
    groups = quarantine_groups(config, open_lakehouse(config), table=args.table)
    if not args.all:
        groups = [g for g in groups if g.replayed_in is None]
    if not groups:
        print(
            "Nothing in quarantine."
            if args.all
            else "Nothing waiting in quarantine (`--all` shows replayed ones)."
        )
        return EXIT_OK
    print(
        text_table(
            [
                "id",
                "table",
                "dataset",
                "file",
                "batch",
                "level",
                "records",
                "rules",
                "replayed in",
                "first reason",
            ],
            [
                (
                    g.id,
                    g.table,
                    g.key,
                    g.file,
                    g.batch,
                    g.level,
                    g.records,
                    ", ".join(g.rules),
                    g.replayed_in,
                    g.reason[:100],
                )
                for g in groups
            ],
        )
    )
    return EXIT_OK


def quarantine_replay(config: LakesyncConfig, args: argparse.Namespace) -> int:
    from lakesync.defs.launch import sync

    lakehouse = open_lakehouse(config)
    groups = quarantine_groups(config, lakehouse, table=args.table)
    chosen: list[QuarantineGroup] = []
    for wanted in args.ids:
        found = [g for g in groups if g.id == wanted]
        if not found:
            print(f"no quarantine group {wanted!r} (see `lakesync quarantine list --all`)", file=sys.stderr)
            return EXIT_FAILED
        chosen.extend(found)
    if args.file:
        chosen.extend(g for g in groups if f"{g.lake}/{g.file}" == args.file and g.replayed_in is None)
        if not chosen:
            print(f"nothing from {args.file} waits in quarantine", file=sys.stderr)
            return EXIT_FAILED
    if not chosen:
        print("name quarantine ids or --file LAKE/PATH (see `lakesync quarantine list`)", file=sys.stderr)
        return EXIT_FAILED
    try:
        plans = plan_replays_opened(config, lakehouse, chosen, run_id="quarantine-replay")
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    for plan in plans:
        what = sum(len(r) for r in plan.rows.values())
        files = len(plan.files)
        rows = what or "all"
        source, batch = plan.replay_of, plan.version
        print(f"{plan.dataset}: replaying batch {source} as batch {batch} ({files} file(s), {rows} rows)")
    outcome = sync(config, datasets=sorted({p.dataset for p in plans}), trigger="quarantine-replay")
    print(sync_summary(outcome.datasets, outcome.tables))
    for failure in outcome.failures:
        print(f"  {failure}", file=sys.stderr)
    return EXIT_OK if outcome.ok else EXIT_FAILED

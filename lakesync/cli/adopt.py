"""Before `lakesync sync`: look for new datasets in the lakes feeding a table with
``autonomy.new_datasets`` (:mod:`lakesync.coldstart.adopt`), add those lakesync may add to the
configuration file (audited) and say what the others are."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from lakesync.cli.scan import _knowledge
from lakesync.coldstart.adopt import NewDataset, find_new_datasets, watched_lakes
from lakesync.coldstart.fragment import dataset_entry, with_dataset
from lakesync.config import ConfigError, LakesyncConfig, load_config
from lakesync.defs.providers import open_lakehouse, open_stores
from lakesync.defs.resources import config_problem
from lakesync.discover import LakeUnavailableError
from lakesync.state.audit import AuditLog

ACTOR = "lakesync (auto)"


def _note(found: NewDataset) -> str:
    stamp = datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Added by lakesync on {stamp} (tables.{found.table}.autonomy.new_datasets: auto): "
        f"{found.why}. Remove it to stop its ingestion."
    )


def _audit(config: LakesyncConfig, added: Sequence[NewDataset]) -> None:
    rows = []
    for found in added:
        match = found.proposal.match
        assert match is not None
        evidence = {
            "pattern": found.proposal.group.pattern,
            "format": found.proposal.sniffed.format,
            "files": len(found.proposal.group.files),
            "score": match.score,
            "columns": {m.source: {"column": m.column, "evidence": m.evidence()} for m in match.columns},
        }
        rows.append(
            {
                "kind": "dataset_added",
                "lake": found.lake,
                "dataset": found.name,
                "table": found.table,
                "status": "added",
                "actor": ACTOR,
                "note": found.why,
                "detail": json.dumps(evidence),
            }
        )
    AuditLog(open_lakehouse(config)).append(rows, what="the datasets lakesync added in the audit trail")


def adopt_new_datasets(
    config: LakesyncConfig, path: Path, lakes: Sequence[str] | None = None
) -> tuple[LakesyncConfig, list[str]]:
    """The configuration with the datasets lakesync added (written to ``path``), and a line for
    each new dataset found (added or not, and why)."""
    watched = [lake for lake in watched_lakes(config) if lakes is None or lake in lakes]
    if not watched:
        return config, []
    try:
        with open_stores(config) as stores:
            found = find_new_datasets(config, stores, _knowledge(config), watched)
    except LakeUnavailableError as exc:
        return config, [f"not looked for: {exc}"]
    except dg.DagsterInvalidConfigError as exc:
        return config, [f"not looked for: {config_problem(exc)}"]
    added = [f for f in found if f.added]
    if not added:
        return config, [f.line() for f in found]
    original = path.read_text(encoding="utf-8")
    try:
        for dataset in added:
            entry = dataset_entry(dataset.proposal)
            path.write_text(
                with_dataset(path, dataset.lake, dataset.name, entry, _note(dataset)), encoding="utf-8"
            )
        updated = load_config(path)
    except (ConfigError, OSError) as exc:
        path.write_text(original, encoding="utf-8")
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        refused = f"none added: {path} would not validate with them: {first}"
        return config, [*(f.line() for f in found if not f.added), refused]
    _audit(updated, added)
    return updated, [f.line() for f in found]

"""Drift lakesync decides itself during a round (the table's ``autonomy``), and the context
that maps what it decided."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace

from lakesync.conform.policies import AUTO_ACTOR
from lakesync.pipeline.attempt import Attempt, Redo
from lakesync.pipeline.context import TableContext
from lakesync.state.drift_log import DriftLog

log = logging.getLogger("lakesync")


def approve_renames(ctx: TableContext, attempt: Attempt, redo: Redo) -> TableContext:
    """Record each drift lakesync approves itself (seen, then approved by ``lakesync (auto)``
    with its evidence: in the drift log and the audit trail); the context with the new mapping."""
    drift_log = DriftLog(ctx.lakehouse)
    versions = {p.dataset: p.version for p in attempt.plans}
    for event, (dataset, report) in redo.renamed.items():
        drift_log.record(
            dataset, ctx.table.name, [(report, "handled")], batch=versions.get(dataset), run_id=ctx.run_id
        )
        renames = [c for c in report.changes if c.change == "renamed"]
        note = "; ".join(
            f"{c.evidence['source_column']} -> {c.column}: score {c.evidence.get('score')}, "
            f"margin {c.evidence.get('margin')} (name {c.evidence.get('name_similarity')}, "
            f"values {c.evidence.get('value_overlap')})"
            for c in renames
        )
        drift_log.decide(event, "approved", actor=AUTO_ACTOR, note=f"autonomy.renames: {note}")
        log.warning("%s: drift %s approved by lakesync (autonomy.renames): %s", dataset, event, note)
    return with_decisions(ctx, {dataset for dataset, _ in redo.renamed.values()})


def with_decisions(ctx: TableContext, datasets: Collection[str]) -> TableContext:
    """``ctx`` with the decisions on ``datasets``' drift read again."""
    drift_log = DriftLog(ctx.lakehouse)
    runtimes = {
        key: replace(runtime, decisions=drift_log.decisions(key)) if key in datasets else runtime
        for key, runtime in ctx.runtimes.items()
    }
    return replace(ctx, runtimes=runtimes)

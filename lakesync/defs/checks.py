"""Asset checks on lake datasets: schema drift (reported by every ingestion run)."""

from typing import Any

import dagster as dg

from lakesync.defs.metadata import dataset_key
from lakesync.defs.resources import LakehouseResource
from lakesync.record import DatasetSync
from lakesync.record.drift_log import DriftLog

DRIFT_CHECK = "drift"


def drift_evaluation(result: DatasetSync) -> dg.AssetCheckEvaluation:
    """The drift check of one dataset after an ingestion run.

    ERROR when drift held files back (quarantined by policy or rejection, or stopping the
    dataset under policy fail); WARN when drift was handled (columns added, values rescued,
    approved drift); passed otherwise.
    """
    metadata: dict[str, Any] = {
        "files_held_back": result.drift_held_back,
        "files_with_handled_drift": result.drift_handled,
    }
    if result.drift:
        metadata["drift"] = dg.MetadataValue.json([r.to_dict() for r in result.drift])
    if result.drift_held_back:
        metadata["review"] = "lakesync drift list, then lakesync drift approve|reject ID"
        return dg.AssetCheckEvaluation(
            asset_key=dataset_key(result.lake, result.dataset),
            check_name=DRIFT_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=f"{result.drift_held_back} file(s) held back by schema drift",
        )
    return dg.AssetCheckEvaluation(
        asset_key=dataset_key(result.lake, result.dataset),
        check_name=DRIFT_CHECK,
        passed=not result.drift_handled,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=f"{result.drift_handled} file(s) with handled drift"
        if result.drift_handled
        else "no drift",
    )


def drift_check(lake: str, dataset: str) -> dg.AssetChecksDefinition:
    """The declared drift check of a dataset; run on its own, it reports open drift events."""
    key = f"{lake}.{dataset}"

    @dg.asset_check(
        asset=dataset_key(lake, dataset),
        name=DRIFT_CHECK,
        description="Schema drift of the dataset's files: ERROR while drift events wait for review",
    )
    def check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        events = DriftLog(lakehouse.get()).events(dataset=key)
        open_events = [e for e in events if e.status == "open"]
        metadata: dict[str, Any] = {
            "open_events": len(open_events),
            "events": dg.MetadataValue.md(
                "\n".join(f"- `{e.id}` {e.status}: {e.report.summary()}" for e in events[:20]) or "none"
            ),
        }
        return dg.AssetCheckResult(
            passed=not open_events,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=f"{len(open_events)} drift event(s) wait for review"
            if open_events
            else "no drift waits",
        )

    return check

"""One sensor per lake dataset: find new files, plan their batches, request ingestion runs,
observe the lake.

A tick asks the dataset's discovery source what is new against the ledger (no dynamic
partition per file); what to do is decided by :func:`lakesync.defs.ticks.decide`, a plain
function of what the tick saw. The batches it plans are in the ledger before any run starts,
and each run it requests ingests those batches only.
"""

import json
import time
from dataclasses import replace
from typing import Any

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.defs.assets import CONTRACT_TAG, DATASET_TAG, TABLE_TAG, job_name, op_name
from lakesync.defs.checks import FRESHNESS_CHECK, check_evaluation, freshness_of
from lakesync.defs.metadata import dataset_key, scan_metadata, sensor_name
from lakesync.defs.providers import needs_resource, resource_key, store_for
from lakesync.defs.ticks import Decision, RunInfo, Tick, config_fingerprint, decide, run_requests
from lakesync.discover import Discovery
from lakesync.pipeline.plan import plan_batch
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.scan import scan_dataset
from lakesync.state.drift_log import DriftLog
from lakesync.state.ledger import Ledger

CONFIG_TAG = "lakesync/config"
FRESHNESS_EVERY_SECONDS = 600.0
"""A sensor reports its dataset's freshness when the verdict changes, and at least this often."""
_WAITING = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING)


def _cursor(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _page(cursor: dict[str, Any]) -> dict[str, Any]:
    """Where the tick's listing resumes (``after``) and what the pass listed before it."""
    page = cursor.get("listing")
    return page if isinstance(page, dict) and isinstance(page.get("after"), str) else {}


def _handled(found: Discovery, decision: Decision) -> bool:
    """Every new file of the listing was planned by this tick (or there was none)."""
    return not found.new or (decision.skip is None and sum(len(b) for b in decision.new) >= len(found.new))


def next_listing(cursor: dict[str, Any], found: Discovery, *, handled: bool) -> dict[str, Any]:
    """The cursor's ``listing`` (where the next tick resumes, what this pass has listed so far)
    and ``lake`` (the files and bytes of the last whole pass). A page whose new files were not
    all planned (a run waiting, a paused dataset, more batches than a tick plans) is listed
    again, so no new file is passed over."""
    lake = cursor.get("lake") if isinstance(cursor.get("lake"), dict) else None
    if found.whole:
        return {"listing": None, "lake": None}
    page = _page(cursor)
    if not handled:
        return {"listing": page or None, "lake": lake}
    files = int(page.get("files", 0)) + found.files
    size = int(page.get("bytes", 0)) + found.bytes
    if found.resume_after is None:  # the pass reached the end: the next tick starts over
        return {"listing": None, "lake": {"files": files, "bytes": size}}
    return {"listing": {"after": found.resume_after, "files": files, "bytes": size}, "lake": lake}


def _run_info(record: dg.RunRecord) -> RunInfo:
    run = record.dagster_run
    return RunInfo(
        run_id=run.run_id,
        status=run.status.value,
        config=run.tags.get(CONFIG_TAG),
        end_time=record.end_time,
        data_failed=run.tags.get(CONTRACT_TAG) == "failed",
    )


def _runs(instance: dg.DagsterInstance, key: str) -> tuple[list[RunInfo], RunInfo | None]:
    """The dataset's runs that have not started, and its latest run."""
    waiting = instance.get_run_records(
        filters=dg.RunsFilter(tags={DATASET_TAG: key}, statuses=list(_WAITING)), limit=1
    )
    latest = instance.get_run_records(filters=dg.RunsFilter(tags={DATASET_TAG: key}), limit=1)
    return [_run_info(r) for r in waiting], _run_info(latest[0]) if latest else None


def _stopped_by(drift: DriftLog, key: str) -> str | None:
    stopping = [e for e in drift.events(dataset=key) if e.status == "open" and e.stops_dataset]
    if not stopping:
        return None
    event = stopping[0]
    return (
        f"stopped by schema drift {event.id} in {event.held_back[-1]}: {event.report.summary()}. "
        f"Review it: lakesync drift approve|reject {event.id}"
    )


def _plan(runtime: DatasetRuntime, ledger: Ledger, decision: Decision, run_id: str) -> list[tuple[int, int]]:
    """Plan the tick's new batches durably; returns their (batch, files)."""
    planned = []
    for files in decision.new:
        plan = plan_batch(runtime, ledger, files, run_id=run_id)
        if plan is not None:
            planned.append((plan.version, len(plan.files)))
    return planned


def dataset_sensor(config: LakesyncConfig, runtime: DatasetRuntime) -> dg.SensorDefinition:
    settings = runtime.config.sensor
    key = resource_key(runtime.lake) if needs_resource(config.lakes[runtime.lake]) else None
    asset_key = dataset_key(runtime.lake, runtime.name)
    name = sensor_name(runtime.lake, runtime.name)

    @dg.sensor(
        name=name,
        job_name=job_name(runtime.table),
        minimum_interval_seconds=max(1, int(settings.interval)),
        default_status=dg.DefaultSensorStatus.RUNNING if settings.enabled else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Watches `{runtime.config.pattern}` in lake `{runtime.lake}` "
            f"({config.lakes[runtime.lake].location}) and ingests new files into `{runtime.table}`"
        ),
        required_resource_keys={"lakehouse", *([key] if key else [])},
    )
    def watch(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        lakehouse = context.resources.lakehouse.get()
        resource = getattr(context.resources, key, None) if key else None
        live = replace(runtime, store=store_for(runtime.lake, config.lakes[runtime.lake], resource))
        ledger = Ledger(lakehouse)
        known = ledger.read(runtime.key)
        previous = _cursor(context.cursor)
        page = _page(previous)
        scan = scan_dataset(live, known, after=page.get("after"), limit=settings.max_listed)
        drift = DriftLog(lakehouse)
        live = replace(live, decisions=drift.decisions(runtime.key))
        fingerprint = config_fingerprint(config, runtime, live.decisions)
        now = time.time()
        waiting, last = _runs(context.instance, runtime.key)
        tick = Tick(scan, fingerprint, now, waiting, last, _stopped_by(drift, runtime.key))
        decision = decide(tick, lake=runtime.lake, limits=settings)
        new = _plan(live, ledger, decision, f"sensor {name}") if decision.skip is None else []
        pending = [(p.version, len(p.files)) for p in known.pending] if decision.skip is None else []
        listing = next_listing(previous, scan.discovery, handled=_handled(scan.discovery, decision))
        metadata = scan_metadata(
            scan.discovery, pending_batches=len(scan.pending), now_seconds=now, listing=listing
        )
        observed = {k: metadata[k] for k in ("files", "bytes", "files_new", "batches_pending")}
        events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
        if observed != previous.get("observed"):
            events.append(dg.AssetObservation(asset_key=asset_key, metadata=metadata))
        freshness = freshness_of(scan, runtime.config.freshness.max_lag)
        verdict = [freshness.outcome, freshness.severity]
        reported = float(previous.get("freshness_at", 0.0))
        if verdict != previous.get("freshness") or now - reported >= FRESHNESS_EVERY_SECONDS:
            events.append(check_evaluation(freshness, asset_key=asset_key, check_name=FRESHNESS_CHECK))
            reported = now
        state = json.dumps(
            {"observed": observed, "freshness": verdict, "freshness_at": reported, **listing}, sort_keys=True
        )
        requests = [
            dg.RunRequest(
                run_key=r.run_key,
                run_config={
                    "ops": {op_name(runtime.table): {"config": {"planned": {runtime.key: r.through}}}}
                },
                tags={
                    DATASET_TAG: runtime.key,
                    TABLE_TAG: runtime.table,
                    CONFIG_TAG: fingerprint,
                    "lakesync/new_files": str(r.files),
                },
            )
            for r in run_requests(runtime.key, decision, pending=pending, new=new, config=fingerprint)
        ]
        skip = decision.skip or (None if requests else "the new files were planned by another run meanwhile")
        return dg.SensorResult(
            run_requests=requests or None, skip_reason=skip, asset_events=events, cursor=state
        )

    return watch

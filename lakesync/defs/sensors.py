"""One sensor per lake dataset: find new files, request ingestion runs, observe the lake.

A tick lists the lake and diffs it against the ledger (no dynamic partition per file), then
asks for runs of the table's job with deterministic run keys, so a repeated tick never
requests the same work twice. Whether to request a run is decided by :func:`decide`, a plain
function of what the tick saw.
"""

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.defs.assets import CONTRACT_TAG, DATASET_TAG, TABLE_TAG, job_name, op_name
from lakesync.defs.checks import FRESHNESS_CHECK, check_evaluation, freshness_of
from lakesync.defs.lakes import lake_resource, location, resource_key, store_for
from lakesync.defs.metadata import dataset_key, scan_metadata
from lakesync.discover import Ledger, split_batches
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.scan import DatasetScan, scan_dataset
from lakesync.record.drift_log import Decisions, DriftLog

CONFIG_TAG = "lakesync/config"
FRESHNESS_EVERY_SECONDS = 600.0
"""A sensor reports its dataset's freshness when the verdict changes, and at least this often."""
MAX_RUNS_PER_TICK = 5
RETRY_AFTER_SECONDS = 600.0
_WAITING = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING)


@dataclass(frozen=True)
class RunInfo:
    """What a tick needs to know about an earlier run of the dataset."""

    run_id: str
    status: str
    config: str | None
    end_time: float | None = None
    data_failed: bool = False
    """The run committed its batch but its data failed a blocking check: not a reason to pause."""


@dataclass(frozen=True)
class Request:
    run_key: str
    files: int


@dataclass(frozen=True)
class Decision:
    requests: tuple[Request, ...] = ()
    skip: str | None = None


def config_fingerprint(
    config: LakesyncConfig, runtime: DatasetRuntime, decisions: Decisions | None = None
) -> str:
    """Changes when the dataset's or its table's settings change, or a drift decision is taken
    (either lets a paused dataset resume)."""
    payload = {
        "dataset": runtime.config.model_dump(mode="json"),
        "table": config.tables[runtime.table].model_dump(mode="json"),
        "decisions": sorted(
            [*(decisions.approved if decisions else ()), *(decisions.rejected if decisions else ())]
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _files_key(paths: Sequence[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{p}\t{t}" for p, t in sorted(paths)).encode()).hexdigest()[:16]


def decide(
    scan: DatasetScan,
    *,
    lake: str,
    waiting: Sequence[RunInfo],
    last: RunInfo | None,
    config: str,
    max_files: int,
    max_bytes: int,
    now: float,
    stopped_by: str | None = None,
) -> Decision:
    """Whether and which runs a tick requests for one dataset.

    ``stopped_by`` describes an open drift event that stops the dataset (drift policy fail).
    """
    new = scan.discovery.new
    if not new and not scan.pending:
        return Decision(skip=f"no new files ({scan.discovery.files} files, all known to the ledger)")
    if stopped_by is not None:
        return Decision(skip=stopped_by)
    if waiting:
        return Decision(skip=f"{len(new)} new file(s) will be ingested by queued run {waiting[0].run_id}")
    if last is not None and last.status == "FAILURE" and last.config == config and not last.data_failed:
        waited = now - (last.end_time or now)
        if waited < RETRY_AFTER_SECONDS:
            return Decision(
                skip=(
                    f"paused: run {last.run_id} failed; see its logs. lakesync retries in "
                    f"{RETRY_AFTER_SECONDS - waited:.0f} s, at once after a change of this dataset's "
                    f"configuration, or now with `lakesync sync --lake {lake}`"
                )
            )
        return Decision(requests=(Request(f"{scan.key}:retry:{last.run_id}", len(new)),))
    batches = split_batches(new, max_files=max_files, max_bytes=max_bytes)[:MAX_RUNS_PER_TICK]
    if not batches:
        return Decision(requests=(Request(f"{scan.key}:recover:{scan.pending[0]}:{config}", 0),))
    return Decision(
        requests=tuple(
            Request(f"{scan.key}:{_files_key([(f.path, f.version_tag) for f in b])}:{config}", len(b))
            for b in batches
        )
    )


def _cursor(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _run_info(record: dg.RunRecord) -> RunInfo:
    run = record.dagster_run
    return RunInfo(
        run_id=run.run_id,
        status=run.status.value,
        config=run.tags.get(CONFIG_TAG),
        end_time=record.end_time,
        data_failed=run.tags.get(CONTRACT_TAG) == "failed",
    )


def dataset_sensor(config: LakesyncConfig, runtime: DatasetRuntime) -> dg.SensorDefinition:
    settings = runtime.config.sensor
    key = resource_key(runtime.lake) if lake_resource(config.lakes[runtime.lake]) is not None else None
    asset_key = dataset_key(runtime.lake, runtime.name)
    run_config = {"ops": {op_name(runtime.table): {"config": {"datasets": [runtime.key]}}}}

    @dg.sensor(
        name=f"watch_{runtime.lake}__{runtime.name}",
        job_name=job_name(runtime.table),
        minimum_interval_seconds=max(1, int(settings.interval)),
        default_status=dg.DefaultSensorStatus.RUNNING if settings.enabled else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Watches `{runtime.config.pattern}` in lake `{runtime.lake}` "
            f"({location(config.lakes[runtime.lake])}) and ingests new files into `{runtime.table}`"
        ),
        required_resource_keys={"lakehouse", *([key] if key else [])},
    )
    def watch(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        lakehouse = context.resources.lakehouse.get()
        resource = getattr(context.resources, key, None) if key else None
        live = replace(runtime, store=store_for(runtime.lake, config.lakes[runtime.lake], resource))
        scan = scan_dataset(live, Ledger(lakehouse))
        drift = DriftLog(lakehouse)
        fingerprint = config_fingerprint(config, runtime, drift.decisions(runtime.key))
        stopping = [
            e for e in drift.events(dataset=runtime.key) if e.status == "open" and e.report.policy == "fail"
        ]
        stopped_by = (
            f"stopped by schema drift {stopping[0].id} in {stopping[0].held_back[-1]}: "
            f"{stopping[0].report.summary()}. Review it: lakesync drift approve|reject {stopping[0].id}"
            if stopping
            else None
        )
        now = time.time()
        waiting = [
            _run_info(r)
            for r in context.instance.get_run_records(
                filters=dg.RunsFilter(tags={DATASET_TAG: runtime.key}, statuses=list(_WAITING)), limit=1
            )
        ]
        latest = context.instance.get_run_records(
            filters=dg.RunsFilter(tags={DATASET_TAG: runtime.key}), limit=1
        )
        decision = decide(
            scan,
            lake=runtime.lake,
            waiting=waiting,
            last=_run_info(latest[0]) if latest else None,
            config=fingerprint,
            max_files=settings.max_files,
            max_bytes=settings.max_bytes,
            now=now,
            stopped_by=stopped_by,
        )
        metadata = scan_metadata(scan.discovery, pending_batches=len(scan.pending), now_seconds=now)
        observed = {k: metadata[k] for k in ("files", "bytes", "files_new", "batches_pending")}
        previous = _cursor(context.cursor)
        events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = []
        if observed != previous.get("observed"):
            events.append(dg.AssetObservation(asset_key=asset_key, metadata=metadata))
        freshness = freshness_of(scan, runtime.config.freshness.max_lag)
        verdict = [freshness.passed, freshness.severity]
        reported = float(previous.get("freshness_at", 0.0))
        if verdict != previous.get("freshness") or now - reported >= FRESHNESS_EVERY_SECONDS:
            events.append(check_evaluation(freshness, asset_key=asset_key, check_name=FRESHNESS_CHECK))
            reported = now
        state = json.dumps(
            {"observed": observed, "freshness": verdict, "freshness_at": reported}, sort_keys=True
        )
        requests = [
            dg.RunRequest(
                run_key=r.run_key,
                run_config=run_config,
                tags={
                    DATASET_TAG: runtime.key,
                    TABLE_TAG: runtime.table,
                    CONFIG_TAG: fingerprint,
                    "lakesync/new_files": str(r.files),
                },
            )
            for r in decision.requests
        ]
        return dg.SensorResult(
            run_requests=requests or None, skip_reason=decision.skip, asset_events=events, cursor=state
        )

    return watch

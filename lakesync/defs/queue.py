"""`lakesync sync` on a shared instance: its runs go through the instance's run queue.

On an instance whose storage is a database server and whose run coordinator is Dagster's
``QueuedRunCoordinator``, the runs of `lakesync sync` are submitted like the sensors' runs: the
daemon dequeues them within the instance's limits (one run per table: the ``lakesync/table``
tag), its run launcher starts them wherever it starts runs, and run monitoring watches them.
`lakesync sync` waits for them and reads what they did from the instance's event log.

The runs are made from lakesync's code location (``lakesync.definitions``, location
``lakesync``, loaded with this command's ``lakesync.yaml``), the location the daemon's workspace
must hold under the same name. Nothing is submitted when no daemon is running: the runs would
wait for ever.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from lakesync.defs.factory import LOCATION
from lakesync.defs.instance import storage_kind

progress = logging.getLogger("lakesync.progress")

_DONE = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


class QueueError(Exception):
    """Runs cannot go through the queue (no daemon, the code location does not load)."""


def uses_queue(instance: dg.DagsterInstance) -> bool:
    """Whether `lakesync sync` submits its runs to ``instance``'s queue: a shared instance
    (storage on a database server) with a ``QueuedRunCoordinator``. The embedded SQLite
    instance runs them in the command's own process."""
    from dagster._core.run_coordinator import QueuedRunCoordinator  # noqa: PLC0415

    home = os.environ.get("DAGSTER_HOME")
    shared = home is not None and storage_kind(Path(home)) != "sqlite"
    return shared and isinstance(instance.run_coordinator, QueuedRunCoordinator)


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a ``dagster-daemon`` dequeues this instance's runs (its heartbeat is fresh)."""
    from dagster._daemon.controller import get_daemon_statuses  # noqa: PLC0415

    statuses = get_daemon_statuses(instance, ["QUEUED_RUN_COORDINATOR"], ignore_errors=True)
    status = statuses.get("QUEUED_RUN_COORDINATOR")
    return bool(status is not None and status.healthy)


@dataclass(frozen=True)
class Finished:
    """A queued run that ended: its status and its Dagster events."""

    run_id: str
    status: dg.DagsterRunStatus
    events: list[dg.DagsterEvent]


class RunQueue:
    """lakesync's code location, loaded to make runs, and the queue they are submitted to."""

    def __init__(self, instance: dg.DagsterInstance, request: Any) -> None:
        self.instance = instance
        self.request = request
        location = request.get_code_location(LOCATION)
        self.location = location
        self.repository = next(iter(location.get_repositories().values()))

    def submit(self, label: str, job: str, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Create the run of ``job`` and hand it to the queue; its run id."""
        from dagster._core.definitions.selector import JobSubsetSelector  # noqa: PLC0415

        selector = JobSubsetSelector(
            location_name=self.location.name,
            repository_name=self.repository.name,
            job_name=job,
            op_selection=None,
        )
        try:
            remote_job = self.location.get_job(selector)
            plan = self.location.get_execution_plan(
                remote_job,
                dict(run_config),
                step_keys_to_execute=None,
                known_state=None,
                instance=self.instance,
            )
        except Exception as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(exc).__name__
            msg = f"the run of {job} could not be made by lakesync's code location: {reason}"
            raise QueueError(msg) from exc
        run = self.instance.create_run(
            job_name=job,
            run_id=None,
            run_config=dict(run_config),
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )
        submitted = self.instance.submit_run(run.run_id, self.request)
        progress.info("%s: run %s %s", label, run.run_id[:8], submitted.status.value.lower())
        return run.run_id

    def wait(self, run_id: str, label: str, *, poll: float = 0.5) -> Finished:
        """Wait for a run to end, saying on the progress log when it is dequeued and started;
        a run still queued when no daemon is left to dequeue it is a :class:`QueueError`."""
        said: dg.DagsterRunStatus | None = dg.DagsterRunStatus.QUEUED  # said when it was submitted
        while True:
            run = self.instance.get_run_by_id(run_id)
            if run is None:
                msg = f"{label}: run {run_id} disappeared from the instance"
                raise QueueError(msg)
            if run.status != said:
                progress.info("%s: run %s %s", label, run_id[:8], run.status.value.lower())
                said = run.status
            if run.status in _DONE:
                logs = self.instance.all_logs(run_id)
                events = [e.dagster_event for e in logs if e.dagster_event is not None]
                return Finished(run_id, run.status, events)
            if run.status == dg.DagsterRunStatus.QUEUED and not daemon_running(self.instance):
                msg = (
                    f"{label}: run {run_id} is queued and no dagster-daemon is running to start it: "
                    "start one for this instance (`dagster-daemon run`), or cancel the run"
                )
                raise QueueError(msg)
            time.sleep(poll)


@contextmanager
def run_queue(instance: dg.DagsterInstance, config_path: Path) -> Iterator[RunQueue]:
    """lakesync's code location (with ``config_path``) loaded beside ``instance``'s queue.

    Refused at once, before anything is submitted, when no daemon is running."""
    if not daemon_running(instance):
        msg = (
            "this instance queues its runs and no dagster-daemon is running to start them: start one "
            "(`dagster-daemon run -w workspace.yaml`, with this lakesync.yaml), or run "
            "`lakesync sync --in-process` to run them in this process"
        )
        raise QueueError(msg)
    from dagster._core.workspace.context import WorkspaceProcessContext  # noqa: PLC0415
    from dagster._core.workspace.load_target import ModuleTarget  # noqa: PLC0415

    previous = os.environ.get("LAKESYNC_CONFIG")
    os.environ["LAKESYNC_CONFIG"] = str(config_path.resolve())  # for the code server it starts
    try:
        target = ModuleTarget(
            module_name="lakesync.definitions",
            attribute=None,
            working_directory=str(config_path.resolve().parent),
            location_name=LOCATION,
        )
        # The code server would print its own INFO lines among the command's.
        with WorkspaceProcessContext(instance, target, code_server_log_level="WARNING") as workspace:
            request = workspace.create_request_context()
            error = request.get_code_location_error(LOCATION)
            if error is not None:
                msg = f"lakesync's code location did not load: {error.message.strip().splitlines()[-1]}"
                raise QueueError(msg)
            yield RunQueue(instance, request)
    finally:
        if previous is None:
            os.environ.pop("LAKESYNC_CONFIG", None)
        else:
            os.environ["LAKESYNC_CONFIG"] = previous

"""Starting lakesync's runs and following them to their end: in this process, or through the
instance's run queue (:mod:`lakesync.defs.queue`), with what each did read back as its events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.defs.factory import build_definitions
from lakesync.defs.instance import InstanceError, describe, instance
from lakesync.defs.pools import job_pools, process_tags, releasing
from lakesync.defs.queue import QueueError, RunQueue, run_queue, uses_queue
from lakesync.defs.resources import config_problem


@dataclass(frozen=True)
class RunOutcome:
    """A run that ended, in this process or through the queue: its Dagster events."""

    run_id: str
    success: bool
    events: list[dg.DagsterEvent]


Finish = Callable[[], "RunOutcome | str"]
"""Waits for a started run: what it did, or why it could not be followed."""


def step_error(events: Sequence[dg.DagsterEvent]) -> str:
    """Why a run failed, in the words of the error that stopped it (not Dagster's wrapper)."""
    failure = next((e for e in events if e.is_step_failure), None)
    data = failure.step_failure_data if failure is not None else None
    if data is None:
        return "the run failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return str(data.user_failure_data.description)  # a dg.Failure the op raised on purpose
    error = data.error
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    if error is None:
        return "the run failed"
    head, sep, rest = error.message.strip().partition(": ")
    return rest if sep and head.endswith(error.cls_name or "?") else error.message.strip()


class Runs:
    """The instance, the definitions and the way runs are started, opened only when something
    needs a run: in this process (the embedded SQLite instance, or ``in_process``), else
    through the instance's run queue (:mod:`lakesync.defs.queue`)."""

    def __init__(  # noqa: PLR0913 -- one keyword per setting of the runs
        self,
        config: LakesyncConfig,
        stack: ExitStack,
        *,
        config_path: Path | None,
        in_process: bool,
        trigger: str,
        verbose: bool,
    ) -> None:
        self.config = config
        self.stack = stack
        self.trigger = trigger
        self.verbose = verbose
        self.config_path = config_path
        self.in_process = in_process
        self._opened: tuple[dg.DagsterInstance, dg.Definitions] | None = None
        self._queue: RunQueue | None = None
        self._queued: bool | None = None
        self._error: InstanceError | QueueError | None = None
        self._said = False  # the reason the instance or its queue failed was given once

    def get(self) -> tuple[dg.DagsterInstance, dg.Definitions]:
        """The instance and the definitions (an :class:`InstanceError`, once and then again)."""
        if self._error is not None:
            raise self._error
        if self._opened is None:
            try:
                self._opened = (instance()[0], build_definitions(self.config))
            except InstanceError as exc:
                self._error = exc
                raise
        return self._opened

    def queue(self) -> RunQueue | None:
        """The run queue runs go through, or ``None`` when they run in this process."""
        dagster_instance, _ = self.get()
        if self._queued is None:  # decided once per sync
            self._queued = (
                not self.in_process and self.config_path is not None and uses_queue(dagster_instance)
            )
        if not self._queued or self.config_path is None:
            return None
        if self._queue is None:
            try:
                self._queue = self.stack.enter_context(run_queue(dagster_instance, self.config_path))
            except QueueError as exc:
                self._error = exc
                raise
        return self._queue

    def start(self, label: str, job: str, run_config: dict[str, Any], tags: dict[str, str]) -> Finish | str:
        """Start ``job``: in this process (it has ended when this returns) or in the queue; or
        why it could not start (the instance's or the queue's reason is given once, then ``the
        same reason``)."""
        tags = {**tags, "lakesync/trigger": self.trigger}
        try:
            dagster_instance, definitions = self.get()
            queue = self.queue()
            if queue is not None:
                run_id = queue.submit(label, job, run_config, tags)
                return lambda: self._wait(queue, run_id, label)
            job_def = definitions.resolve_job_def(job)
            with releasing(dagster_instance, job_pools(job_def)):  # its table's slot may be held
                result = job_def.execute_in_process(
                    run_config=run_config,
                    instance=dagster_instance,
                    tags={**tags, **process_tags()},
                    raise_on_error=False,
                )
        except (InstanceError, QueueError) as exc:
            if exc is not self._error:  # this run's own reason (a run that could not be made)
                return str(exc)
            if self._said:
                return "the same reason"
            self._said = True
            return str(exc)
        except dg.DagsterInvalidConfigError as exc:  # a secret's variable is not set
            return config_problem(exc)
        outcome = RunOutcome(result.run_id, result.success, list(result.all_events))
        return lambda: outcome

    @staticmethod
    def _wait(queue: RunQueue, run_id: str, label: str) -> RunOutcome | str:
        try:
            finished = queue.wait(run_id, label)
        except QueueError as exc:
            return str(exc)
        return RunOutcome(run_id, finished.status == dg.DagsterRunStatus.SUCCESS, finished.events)

    @property
    def described(self) -> str | None:
        """Where the runs were recorded (when an instance was opened)."""
        return describe(self._opened[0]) if self._opened is not None else None

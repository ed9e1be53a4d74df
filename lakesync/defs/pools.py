"""One sync of a table (and one build of a feature table) at a time, across every run.

Each table's sync op and each feature table's asset is in a Dagster concurrency pool of its own
(``lakesync/table/<table>``, ``lakesync/feature/<name>``), each pool one slot (the project's
``dagster.yaml``: ``concurrency.pools.default_limit: 1``). The slot is claimed by the step, so it
holds for runs of every origin: a sensor's run launched by the daemon, ``lakesync sync`` in its
own process, ``dagster asset materialize``. A second run of the table waits for the slot.

A slot held by a run that died is given back: the daemon's run monitoring fails or cancels such
a run and frees its slots (``run_monitoring.free_slots_after_run_end_seconds``); a command
running in its own process frees, before and while it waits, the slots of runs that have ended
and of runs of a process on this host that is gone (a killed ``lakesync sync``; on a SQLite
instance, a run whose process the daemon's code server started and that died with the daemon),
marking those runs failed (:func:`release_dead`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
from dagster._core.launcher import DefaultRunLauncher

HOST_TAG = "lakesync/host"
PID_TAG = "lakesync/pid"
"""Set on runs a command executes in its own process: where to look whether that process lives."""

progress = logging.getLogger("lakesync.progress")


def table_pool(table: str) -> str:
    return f"lakesync/table/{table}"


def feature_pool(name: str) -> str:
    return f"lakesync/feature/{name}"


def process_tags() -> dict[str, str]:
    """The tags of a run executed in this process."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def job_pools(job: dg.JobDefinition) -> list[str]:
    """The pools the steps of ``job`` claim a slot of."""
    return sorted({pool for node in job.nodes if (pool := getattr(node.definition, "pool", None))})


_LAUNCHED = re.compile(r"Started process for run \(pid: (\d+)\)")


def _local_launcher(instance: dg.DagsterInstance) -> bool:
    """Whether a run this instance launched ran on this host: its runs are in a SQLite file
    (one host) and its launcher starts them as processes of the code server."""
    return (
        isinstance(instance.run_launcher, DefaultRunLauncher)
        and "Sqlite" in type(instance.run_storage).__name__
    )


def _launched_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process a code server started for the run (its launch event says it)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        said = entry.user_message or (entry.dagster_event.message if entry.dagster_event else None)
        found = _LAUNCHED.search(said or "")
        if found:
            return int(found.group(1))
    return None


def _gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why ``run`` cannot still be running: its process on this host is gone (else ``None``):
    a command's own process (its tags say which), or the process the daemon's code server
    started for it on an instance of one host (a daemon stopped, a machine restarted)."""
    host, pid = run.tags.get(HOST_TAG), run.tags.get(PID_TAG)
    if host is None and pid is None and _local_launcher(instance):
        launched = _launched_pid(instance, run.run_id)
        host, pid = socket.gethostname(), str(launched) if launched is not None else None
    if host != socket.gethostname() or pid is None or not pid.isdigit() or int(pid) == os.getpid():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return f"its process (pid {pid} on {host}) is gone"
    except PermissionError:  # a live process of another user
        return None
    return None


def release_dead(instance: dg.DagsterInstance, pools: Sequence[str], *, said: set[str] | None = None) -> int:
    """Free the slots of ``pools`` held by runs that ended or whose process is gone (those runs
    are marked failed first), and their places in the pools' queues (a dead run's step waiting
    for a slot would be given it, and every later step would wait behind it); say once
    (``said``) which live run a slot waits for. Returns how many runs' slots were freed."""
    storage = instance.event_log_storage
    if not pools or not storage.supports_global_concurrency_limits:
        return 0
    said = said if said is not None else set()
    freed = 0
    for pool in pools:
        info = storage.get_concurrency_info(pool)
        holders = {slot.run_id for slot in info.claimed_slots}
        for run_id in sorted(holders | {step.run_id for step in info.pending_steps}):
            run = instance.get_run_by_id(run_id)
            reason = "it has ended" if run is None or run.is_finished else _gone(instance, run)
            if reason is None:
                if run_id in holders and run_id not in said:
                    said.add(run_id)
                    status = run.status.value.lower() if run is not None else "unknown"
                    progress.info("%s: waiting for run %s (%s) to finish with it", pool, run_id[:8], status)
                continue
            if run is not None and not run.is_finished:
                instance.report_run_failed(run, message=f"lakesync freed its slot of {pool}: {reason}")
            storage.free_concurrency_slots_for_run(run_id)
            what = "the slot" if run_id in holders else "the place in the queue"
            progress.info("%s: freed %s of run %s: %s", pool, what, run_id[:8], reason)
            freed += 1
    return freed


@contextmanager
def releasing(instance: dg.DagsterInstance, pools: Sequence[str], *, every: float = 2.0) -> Iterator[None]:
    """Around a run executed in this process: free dead runs' slots of ``pools`` now and then
    every ``every`` seconds while it runs (its step may be waiting for one)."""
    said: set[str] = set()
    release_dead(instance, pools, said=said)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(every):
            try:
                release_dead(instance, pools, said=said)
            except Exception:  # noqa: BLE001 -- a failed look is tried again at the next
                progress.debug("could not look at the slots of %s", ", ".join(pools), exc_info=True)

    watcher = threading.Thread(target=watch, name="lakesync-slots", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()

"""The Dagster instance lakesync records its runs in: the one ``$DAGSTER_HOME/dagster.yaml``
describes, opened as it says.

An empty ``$DAGSTER_HOME`` becomes the embedded default (SQLite in that folder, telemetry off),
created under a host-local lock; an instance on a database server (Postgres) is never written
to or locked by lakesync, and one that cannot be opened is an :class:`InstanceError` in a
sentence that names its server and never its password.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path

import dagster as dg
import yaml

EMBEDDED = """\
telemetry:
  enabled: false
event_log_storage:  # Dagster's SQLite event log keeping its connections open
  module: lakesync.defs.event_log
  class: SqliteEventLog
"""
"""The ``dagster.yaml`` written into an empty ``$DAGSTER_HOME``: the embedded default."""


class InstanceError(Exception):
    """The Dagster instance named by ``$DAGSTER_HOME`` cannot be opened (said in a sentence that
    names its storage, never its password)."""


def storage_kind(home: Path) -> str:
    """``sqlite`` (the default, also when there is no ``dagster.yaml``), or the storage the
    instance's ``dagster.yaml`` configures (``postgres``, ``mysql``, or a class name)."""
    path = home / "dagster.yaml"
    if not path.exists():
        return "sqlite"
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path} cannot be read: {str(exc).splitlines()[0]}"
        raise InstanceError(msg) from exc
    storage = settings.get("storage") if isinstance(settings, dict) else None
    if isinstance(storage, dict) and storage:
        return str(next(iter(storage)))
    run_storage = settings.get("run_storage") if isinstance(settings, dict) else None
    if isinstance(run_storage, dict) and run_storage.get("class"):
        name = str(run_storage["class"])
        return "postgres" if "Postgres" in name else "mysql" if "MySQL" in name else name
    return "sqlite"


def describe(opened: dg.DagsterInstance) -> str:
    """Where an instance keeps its runs, for people: ``Postgres database dagster on
    db.internal:5432`` or ``SQLite in /home/me/.dagster`` (never a password)."""
    url = getattr(opened.run_storage, "postgres_url", None) or getattr(opened.run_storage, "mysql_url", None)
    if isinstance(url, str):
        from sqlalchemy.engine import make_url  # noqa: PLC0415 -- only for a server-backed instance

        parts = make_url(url)
        kind = "Postgres" if parts.drivername.startswith("postgres") else "MySQL"
        return f"{kind} database {parts.database} on {parts.host}:{parts.port or 5432}"
    return f"SQLite in {opened.root_directory}"


def instance() -> tuple[dg.DagsterInstance, bool]:
    """The Dagster instance under ``$DAGSTER_HOME``, else an ephemeral one.

    An empty ``$DAGSTER_HOME`` becomes the embedded default (SQLite in that folder, telemetry
    off, :data:`EMBEDDED`). An instance on a database server (Postgres) is opened as its
    ``dagster.yaml`` says: lakesync writes nothing and takes no host-local lock for it, and a
    server it cannot reach is an :class:`InstanceError` naming the server."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral(), False
    folder = Path(home)
    if storage_kind(folder) != "sqlite":
        return _open(folder), True
    folder.mkdir(parents=True, exist_ok=True)
    # Two commands opening a new SQLite instance at once would both create its schema; the
    # first to hold the lock does it, the other finds it done.
    with (folder / ".lakesync-instance.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "dagster.yaml").exists() and not any(folder.glob("storage")):
            (folder / "dagster.yaml").write_text(EMBEDDED, encoding="utf-8")
        try:
            opened = _open(folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return opened, True


def _unset_variables(value: object, at: str = "") -> list[str]:
    """``{env: NAME}`` values of a ``dagster.yaml`` whose variable is not set, with their key path."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return [] if os.environ.get(value["env"]) else [f"{value['env']} ({at})"]
        return [u for k, v in value.items() for u in _unset_variables(v, f"{at}.{k}" if at else str(k))]
    if isinstance(value, list):
        return [u for i, v in enumerate(value) for u in _unset_variables(v, f"{at}[{i}]")]
    return []


def _open(folder: Path) -> dg.DagsterInstance:
    path = folder / "dagster.yaml"
    settings = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    unset = _unset_variables(settings)
    if unset:
        msg = f"{path} names environment variable(s) that are not set: {', '.join(unset)}"
        raise InstanceError(msg)
    # A database that does not answer is retried by Dagster for ~12 s, each retry a warning on
    # the root logger; the sentence below says it once.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return dg.DagsterInstance.get()
    except dg.DagsterInvalidConfigError as exc:  # e.g. the password's variable is not set
        msg = f"the Dagster instance in {folder / 'dagster.yaml'} is not valid: {_first_line(exc)}"
        if isinstance(settings, dict) and "storage" in settings and "event_log_storage" in settings:
            msg += (
                " (remove its event_log_storage section: the embedded SQLite event log of the "
                "project's dagster.yaml, which a storage: section replaces)"
            )
        raise InstanceError(msg) from exc
    except Exception as exc:
        msg = (
            f"the Dagster instance in {folder / 'dagster.yaml'} ({storage_kind(folder)} storage) cannot be "
            f"opened: {_root_cause(exc)}. Start its database, or correct `storage:` in that file"
        )
        raise InstanceError(msg) from exc
    finally:
        root.setLevel(level)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _root_cause(exc: BaseException) -> str:
    """The innermost error's first line (a refused connection, a wrong password), without the
    URL a driver might print."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = re.sub(r"\w+(\+\w+)?://[^\s'\"]+", "<url>", _first_line(exc))
    return text.removeprefix("(psycopg2.OperationalError) ")

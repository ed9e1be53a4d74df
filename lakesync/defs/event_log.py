"""Dagster's SQLite event log, keeping its connections open: the embedded instance's default.

Dagster's :class:`SqliteEventLogStorage` opens a new SQLAlchemy engine and connection for each
statement group (``NullPool``): an event costs three to five connections, each with its own
set-up and, as the file's last connection closes, a WAL checkpoint, ~6 ms an event on these
machines, most of what a first sync of many datasets spends in Dagster (an observation and two
check evaluations per dataset). This subclass is the same storage, the same files
(``$DAGSTER_HOME/history/runs``), read by any Dagster process as before, but keeps an engine
with one pooled connection per shard (the index and the most recent runs), ~2 ms an event.
Every use is still under the storage's lock, one connection at a time; a wipe closes them
first. Configured in ``dagster.yaml`` (``event_log_storage``); an instance on Postgres is not
concerned.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

SHARDS_KEPT = 8
"""Shards (the index, recent runs) whose engine stays open; older ones are closed."""
BUSY_TIMEOUT_SECONDS = 15  # as Dagster's own SQLite storages wait for a lock


class SqliteEventLog(SqliteEventLogStorage):
    """:class:`SqliteEventLogStorage` with an open engine per recent shard."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir or _default_dir(), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Any:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> SqliteEventLog:
        return cls(inst_data=inst_data, **dict(config_value))

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    pool_size=1,  # (overflow: Dagster's schema check opens a second connection)
                    max_overflow=2,
                    connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
                )
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
            self._engines[shard] = engine  # the most recent last
            while len(self._engines) > SHARDS_KEPT:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            with engine.connect() as conn, conn.begin():
                yield conn

    def _close_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.dispose()

    def wipe(self) -> None:
        self._close_engines()  # its files are deleted: no connection may keep writing them
        super().wipe()

    def dispose(self) -> None:
        self._close_engines()
        super().dispose()


def _default_dir() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        msg = (
            "lakesync's SQLite event log needs DAGSTER_HOME (its events go to "
            "$DAGSTER_HOME/history/runs) or a base_dir under event_log_storage.config in dagster.yaml"
        )
        raise ValueError(msg)
    return os.path.join(home, "history", "runs", "")

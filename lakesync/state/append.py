"""The one way lakesync appends to its own tables: once, retried on conflict, or a named error.

Every writer of the lakehouse's bookkeeping tables (ledger, audit trail, drift log, quarantine,
superseded rows) goes through :func:`append_once`. A writer says *what* to append given the
table as it is now (``build``), typically with Delta application transactions that make the
append happen once however often it is retried; the primitive opens the table, asks ``build``,
commits against that snapshot, and on a conflicting concurrent commit (``CommitFailedError``)
waits a little and asks again. When it cannot commit after its attempts it raises
:class:`AppendContentionError`: a record that matters (an erasure, a drift decision) is never
lost quietly.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from lakesync.state.lakehouse import Lakehouse, Stamp, WriteOptions

T = TypeVar("T")
ATTEMPTS = 32
lost_races: Counter[str] = Counter()
"""Commits this process lost to a concurrent writer and tried again, per table (``uri``): how
much the writers of one lakehouse contend (``make bench``'s contention case reads it)."""
_MERGE = WriteOptions(schema_mode="merge")


class AppendContentionError(RuntimeError):
    """Other writers kept committing first: nothing was appended (the caller's step did not happen)."""


@dataclass(frozen=True)
class Append(Generic[T]):
    """What to append, as decided against one snapshot of the table."""

    rows: pa.Table
    transactions: Mapping[str, int] = field(default_factory=dict)
    """Delta application transactions the commit carries (``app_id`` -> version)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Commit metadata (never a secret)."""
    value: T | None = None
    """What the caller gets back once the append is committed (e.g. the batch it planned)."""


@dataclass(frozen=True)
class Appended(Generic[T]):
    version: int | None
    """The table's version after the append, or as found when there was nothing to append."""
    written: bool
    value: T | None = None


def backoff(attempt: int) -> None:
    """Wait a little, more after each lost race, with jitter so racing writers spread out."""
    time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # noqa: S311 - jitter, not crypto


def append_once(
    lakehouse: Lakehouse,
    uri: str,
    build: Callable[[DeltaTable | None], Append[T] | None],
    *,
    what: str,
    create: Callable[[], DeltaTable] | None = None,
) -> Appended[T]:
    """Append what ``build`` returns for the current snapshot, in one commit, retried on conflict.

    Args:
        lakehouse: where the table lives.
        uri: the table (created by the first append unless ``create`` makes it first).
        build: given the table as it is now (``None`` when it does not exist), what to append,
            or ``None`` when there is nothing to do (e.g. its transactions are already there).
        what: what is being recorded, for the error (``"the ledger of eu.orders"``).
        create: makes the table when it does not exist yet (partitioning, description).

    Raises:
        AppendContentionError: every attempt lost its race against another writer.
    """
    for attempt in range(ATTEMPTS):
        snapshot = lakehouse.open(uri)
        if snapshot is None and create is not None:
            snapshot = _create(lakehouse, uri, create)
        todo = build(snapshot)
        if todo is None:
            return Appended(snapshot.version() if snapshot is not None else None, written=False)
        try:
            lakehouse.append(
                snapshot if snapshot is not None else uri,
                todo.rows,
                stamp=Stamp(todo.transactions, todo.metadata),
                options=_MERGE,  # a table an older lakesync wrote gains today's columns
            )
        except CommitFailedError:
            lost_races[uri] += 1
            backoff(attempt)
            continue
        written = lakehouse.open(uri)
        return Appended(written.version() if written is not None else None, written=True, value=todo.value)
    msg = (
        f"could not record {what}: other writers committed to {uri} first {ATTEMPTS} times in a row; "
        "nothing was recorded. Run the command again (if it keeps happening, something else writes "
        "this lakehouse in a loop)"
    )
    raise AppendContentionError(msg)


def _create(lakehouse: Lakehouse, uri: str, create: Callable[[], DeltaTable]) -> DeltaTable | None:
    """Create the table; another writer creating it at the same moment is fine."""
    try:
        return create()
    except CommitFailedError:
        return lakehouse.open(uri)

"""One intake of a lake in events mode: drain its queue into the ledger, reconcile when due.

    receive (bounded) -> understand -> route to datasets -> confirm with the store -> announce
    in the ledger (one commit) -> acknowledge -> reconcile with a listing when it is due

The order is the safety: a message is acknowledged only after what it said is durable, so a
crash in between means a redelivery, and a redelivered, duplicate, late or out-of-order event
announces nothing the ledger knows. A message lakesync cannot understand is recorded with its
reason in the intake log and acknowledged: nothing loops forever. A file the store no longer
has is not announced; a delete event is counted, or propagated (``on_delete: propagate``).

The reconciliation lists the lake (every ``reconcile_every``, and on the first intake) and
announces what neither the ledger nor the events knew: files older than ``reconcile_grace``
that landed after events mode began are *missed by events* and counted; older ones were there
before (``listing``). A dataset with ``ordered_keys: true`` is listed after the greatest key
the ledger knows (a few pages, however large the lake): a missed file with a smaller key, or a
file deleted from before that key, is not seen by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import polars as pl

from lakesync.config.storage import AnyLake, CloudLake
from lakesync.discover.events.messages import BadMessage, FileEvent, file_events
from lakesync.discover.events.queues import EventQueue, Message, queue_for
from lakesync.discover.patterns import matches
from lakesync.discover.sources.listing import ListingSource
from lakesync.discover.stores.base import LakeStore, LakeUnavailableError
from lakesync.state.append import AppendContentionError
from lakesync.state.inbox import Announcement, DiscoveredBy, Inbox
from lakesync.state.lakehouse import Lakehouse
from lakesync.state.ledger_state import ledger_states
from lakesync.state.values import dataset_id

T = TypeVar("T")


@dataclass(frozen=True)
class DeletedFile:
    """A file gone from its lake (confirmed with the store), for ``on_delete: propagate``."""

    dataset: str
    lake: str
    table: str
    path: str


OnDeleted = Callable[[Sequence[DeletedFile]], tuple[int, int]]
"""Removes the deleted files' rows from the lakehouse durably; returns (files, rows) removed."""


@dataclass(frozen=True)
class IntakeResult:
    lake: str
    messages: int = 0
    events: int = 0
    announced: int = 0
    """Files newly announced from events (a file routed to two datasets counts twice)."""
    ignored: int = 0
    """Events of no dataset of the lake (another prefix, no pattern matches)."""
    deleted: int = 0
    """Delete events."""
    files_deleted: int = 0
    """Files whose rows were removed (``on_delete: propagate``)."""
    rows_deleted: int = 0
    gone: int = 0
    """Files an event announced that the store no longer has."""
    failed: int = 0
    """Messages that are not file events (recorded with their reason, then acknowledged)."""
    reconciled: bool = False
    listed: int = 0
    missed: int = 0
    """Files only the reconciliation found, that landed after events mode began."""
    depth: int | None = None
    """Messages still waiting in the queue after this intake (when the queue can say)."""
    source: str = ""

    def line(self) -> str:
        parts = [f"{self.messages} message(s), {self.announced} file(s) announced"]
        for count, what in (
            (self.ignored, "ignored"),
            (self.deleted if not self.files_deleted else 0, "delete event(s) (on_delete: ignore)"),
            (self.gone, "gone before confirmed"),
            (self.failed, "message(s) not understood (lakesync status shows why)"),
        ):
            if count:
                parts.append(f"{count} {what}")
        if self.files_deleted:
            parts.append(f"{self.files_deleted} file(s) deleted with their {self.rows_deleted} row(s)")
        if self.reconciled:
            parts.append(f"reconciled: {self.listed} listed, {self.missed} missed by events")
        if self.depth:
            parts.append(f"{self.depth} still queued")
        return f"{self.lake} (events from {self.source}): " + ", ".join(parts)


def _text(body: str | bytes) -> str:
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else body


def relative_path(event: FileEvent, lake: str, config: AnyLake) -> str | None:
    """The event's path in the lake, or ``None`` when it is not this lake's."""
    if event.relative:
        return event.key if event.lake in (None, lake) else None
    prefix = config.prefix if isinstance(config, CloudLake) else ""
    if prefix and not event.key.startswith(prefix):
        return None
    return event.key[len(prefix) :]


@dataclass(frozen=True)
class LakeIntake:
    """One lake's intake: where its events go and what its files are checked against."""

    lake: str
    config: AnyLake
    store: LakeStore
    inbox: Inbox
    run_id: str
    on_deleted: OnDeleted | None = None
    """Given when the lake's ``on_delete`` is ``propagate``."""

    def run(self, queue: EventQueue | None = None, now: datetime | None = None) -> IntakeResult:
        """Drain (bounded) and reconcile when due; raises ``LakeUnavailableError`` when the queue
        or the store cannot be reached (nothing is acknowledged then)."""
        settings = self.config.discovery
        assert settings.source is not None
        now = now or datetime.now(tz=UTC)
        queue = queue or queue_for(self.lake, settings.source, self.config)
        try:
            messages = self._call(
                lambda: queue.receive(settings.max_messages, settings.wait_seconds), queue, "receive from"
            )
            counts, announced, failed, gone = self.route(messages)
            written = self.inbox.announce(announced, run_id=self.run_id)
            files_deleted, rows_deleted = self.on_deleted(gone) if gone and self.on_deleted else (0, 0)
            self.inbox.log_many(
                self.lake,
                "failed_message",
                [
                    {"message_id": m.id, "reason": reason, "excerpt": _text(m.body)[:200]}
                    for m, reason in failed
                ],
                run_id=self.run_id,
            )
            self._call(lambda: queue.ack(messages), queue, "acknowledge messages of")  # only now
            before = self.inbox.summary(self.lake)  # one read of the intake log
            began = before.first_intake
            kept = self._call(queue.retention_seconds, queue, "ask the retention of")
            silent = (now - before.last_intake).total_seconds() if before.last_intake is not None else 0.0
            if messages or began is None or silent > min(3600.0, (kept or 7200.0) / 2):
                # (an idle lake's intake is recorded now and then: how long it was silent tells)
                self.inbox.log(
                    self.lake, "intake", run_id=self.run_id, messages=len(messages), files=len(written)
                )
            due = (
                before.last_reconciled is None
                or (now - before.last_reconciled).total_seconds() >= settings.reconcile_every
                or (kept is not None and silent > kept)  # events older than that may be lost
            )
            listed, missed, vanished = self.reconcile(began or now, now) if due else (0, 0, [])
            if vanished and self.on_deleted is not None:
                more_files, more_rows = self.on_deleted(vanished)
                files_deleted, rows_deleted = files_deleted + more_files, rows_deleted + more_rows
            depth = self._call(queue.depth, queue, "ask the depth of")
        finally:
            queue.close()
        return IntakeResult(
            self.lake,
            messages=len(messages),
            announced=len(written),
            failed=len(failed),
            reconciled=due,
            listed=listed,
            missed=missed,
            depth=depth,
            source=queue.description,
            files_deleted=files_deleted,
            rows_deleted=rows_deleted,
            **counts,
        )

    def _call(self, step: Callable[[], T], queue: EventQueue, what: str) -> T:
        """One call to the queue; any SDK's failure becomes this lake's sentence."""
        try:
            return step()
        except LakeUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the SDK raises, the lake's intake fails clearly
            msg = f"lake {self.lake!r}: could not {what} {queue.description}: {exc}"
            raise LakeUnavailableError(msg) from None

    def route(
        self, messages: Sequence[Message]
    ) -> tuple[dict[str, int], list[Announcement], list[tuple[Message, str]], list[DeletedFile]]:
        """Each message's files, routed to the datasets whose pattern they match and confirmed
        with the store."""
        routes = [
            (dataset_id(self.lake, name), d.table, d.pattern) for name, d in self.config.datasets.items()
        ]
        counts = {"events": 0, "ignored": 0, "deleted": 0, "gone": 0}
        announced: list[Announcement] = []
        failed: list[tuple[Message, str]] = []
        gone: list[DeletedFile] = []
        for message in messages:
            try:
                events = file_events(message.body, message.attributes)
            except BadMessage as exc:
                failed.append((message, str(exc)))
                continue
            for event in events:
                counts["events"] += 1
                path = relative_path(event, self.lake, self.config)
                targets = [r for r in routes if path is not None and matches(r[2], path)]
                if event.kind == "deleted":
                    counts["deleted"] += 1
                    if (
                        path is not None
                        and targets
                        and self.on_deleted is not None
                        and self.store.stat(path) is None
                    ):
                        gone += [DeletedFile(k, self.lake, t, path) for k, t, _ in targets]  # gone for good
                    continue
                if path is None or not targets:
                    counts["ignored"] += 1
                    continue
                entry = self.store.stat(path)  # the file as it is now; gone: nothing to plan
                if entry is None:
                    counts["gone"] += 1
                    continue
                announced += [Announcement(k, t, entry, "event", event.event_time) for k, t, _ in targets]
        return counts, announced, failed, gone

    def reconcile(self, began: datetime, now: datetime) -> tuple[int, int, list[DeletedFile]]:
        """List the lake; announce what neither the ledger nor the events knew. Returns
        (files listed, files missed by events, ingested files the listing no longer has)."""
        keys = {dataset_id(self.lake, name): d for name, d in self.config.datasets.items()}
        states = ledger_states(
            self.inbox.lakehouse, self.inbox.lakehouse.open(self.inbox.ledger.uri), sorted(keys)
        )
        grace = timedelta(seconds=self.config.discovery.reconcile_grace)
        # Stores give whole seconds (S3's Last-Modified): a file that landed in the second events
        # mode began, after it began, is stamped before it; that second counts as after.
        since = began.replace(microsecond=0)
        found: list[Announcement] = []
        listed = 0
        missed: set[str] = set()
        vanished: list[DeletedFile] = []
        for key, dataset in keys.items():
            state = states[key]
            # Keys that only grow (ordered_keys): after the greatest one the ledger knows.
            after = ListingSource(self.store, dataset.pattern, ordered_keys=dataset.ordered_keys).start_after(
                state
            )
            entries = list(self.store.list(dataset.pattern, start_after=after))
            listed += len(entries)
            present = {entry.path for entry in entries}
            # planned, ingested, quarantined or announced already: looked up for what was listed only
            known = set(state.files.filter(pl.col("path").is_in(list(present)))["path"].to_list())
            for entry in entries:
                if entry.path in known or now - entry.modified < grace:
                    continue
                by: DiscoveredBy = "reconcile" if entry.modified >= since else "listing"
                if by == "reconcile":
                    missed.add(entry.path)
                found.append(Announcement(key, dataset.table, entry, by))
            if after is None:  # a whole listing: an ingested file it no longer has was deleted
                ingested = state.files.filter(pl.col("status") == "ingested")["path"].to_list()
                vanished += [
                    DeletedFile(key, self.lake, dataset.table, p) for p in ingested if p not in present
                ]
        self.inbox.announce(found, run_id=self.run_id)
        self.inbox.log(self.lake, "reconciled", run_id=self.run_id, files=listed, missed=len(missed))
        return listed, len(missed), vanished


def drain_all(
    lakes: Sequence[tuple[str, AnyLake, LakeStore]],
    lakehouse: Lakehouse,
    *,
    run_id: str,
    on_deleted: OnDeleted | None = None,
) -> list[IntakeResult | str]:
    """The intake of several lakes; a lake whose queue or store fails gives its error line.
    ``on_deleted`` is used for the lakes whose ``on_delete`` is ``propagate``."""
    results: list[IntakeResult | str] = []
    for name, config, store in lakes:
        propagate = on_deleted if config.discovery.on_delete == "propagate" else None
        try:
            results.append(LakeIntake(name, config, store, Inbox(lakehouse), run_id, propagate).run())
        except (LakeUnavailableError, AppendContentionError) as exc:
            results.append(f"{name}: events not received: {exc}")
    return results

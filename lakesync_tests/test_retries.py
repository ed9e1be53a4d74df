"""Transient faults are retried with backoff; a lake that stays unreachable fails with a clear
message; refused credentials are not retried. (A fake provider: this tests lakesync's own retry
logic, not a storage SDK.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

import pytest

from lakesync.discover.stores import LakeUnavailableError, objectstore
from lakesync.discover.stores.objectstore import Access, Fault, ObjectStore, StoredObject
from lakesync.state.values import FileEntry


class Flaky(ObjectStore):
    """Fails ``failures`` times with ``fault`` before answering; counts what it was asked."""

    def __init__(self, failures: int, fault: Fault = "transient") -> None:
        super().__init__(
            "flaky",
            prefix="p/",
            location="s3://bucket/p/",
            access=Access("https://flaky.example", ["KEY_ID", "SECRET"], ["hunter2"]),
        )
        self.failures = failures
        self.fault = fault
        self.calls = 0

    def _pages(self, prefix: str, start_after: str | None) -> Iterator[list[StoredObject]]:
        self.calls += 1
        now = datetime(2026, 1, 1, tzinfo=UTC)
        keys = ["p/a.csv", "p/b.csv"]
        remaining = [k for k in keys if start_after is None or k > start_after]
        yield [StoredObject(k, 1, now, "e") for k in remaining[:1]]
        if self.calls <= self.failures:
            raise ConnectionResetError("connection reset by peer (token hunter2)")
        yield [StoredObject(k, 1, now, "e") for k in remaining[1:]]

    def _download(self, obj: FileEntry, key: str, sink: BinaryIO) -> None:
        raise NotImplementedError

    def _head(self, key: str) -> StoredObject | None:
        return None

    def _fault(self, exc: BaseException) -> Fault:
        return self.fault


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(objectstore.time, "sleep", waits.append)
    return waits


def test_a_listing_interrupted_by_transient_faults_resumes_after_the_last_key(no_sleep: list[float]) -> None:
    store = Flaky(failures=2)
    assert [f.path for f in store.list("*.csv")] == ["a.csv", "b.csv"]  # a.csv once, not three times
    assert store.calls == 3
    assert len(no_sleep) == 2 and no_sleep[1] > no_sleep[0] * 0.5  # backoff with jitter


def test_a_lake_that_stays_unreachable_fails_clearly_without_secrets() -> None:
    store = Flaky(failures=99)
    with pytest.raises(LakeUnavailableError) as caught:
        list(store.list("*.csv"))
    message = str(caught.value)
    assert message.startswith(
        "lake 'flaky': s3://bucket/p/ at https://flaky.example is unreachable while listing after 5 attempts"
    )
    assert "hunter2" not in message and "***" in message


def test_refused_credentials_are_not_retried_and_name_the_variables() -> None:
    store = Flaky(failures=99, fault="auth")
    with pytest.raises(
        LakeUnavailableError, match=r"refused the credentials while listing \(from \$KEY_ID, \$SECRET\)"
    ):
        list(store.list("*.csv"))
    assert store.calls == 1

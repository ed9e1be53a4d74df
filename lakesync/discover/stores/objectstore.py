"""What S3, Azure Blob and GCS lakes share: paginated listing from the longest literal prefix
(and after the last key ingested, for keys that only grow), downloads pinned to the listed
version, retries with backoff and jitter, and errors that name the lake and the endpoint.

A provider is a subclass with four small methods; no provider ``if`` lives anywhere else.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, TypeVar

from lakesync.discover.patterns import compile_pattern, literal_prefix
from lakesync.discover.stores.base import FileChangedError, LakeUnavailableError
from lakesync.state.values import FileEntry

Fault = Literal["transient", "auth", "missing", "changed", "other"]
T = TypeVar("T")
_ATTEMPTS = 5
_BASE_DELAY = 0.2
_MAX_DELAY = 5.0


def _pause(attempt: int) -> None:
    """Exponential backoff with jitter, so retrying lakes do not hammer an endpoint together."""
    delay = min(_MAX_DELAY, _BASE_DELAY * 2 ** (attempt - 1))
    time.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True)
class Access:
    """How a lake's store is reached: its endpoint, and its secrets' variable names (the values
    only so that they can be masked in messages; never shown)."""

    endpoint: str
    credential_names: Sequence[str] = ()
    secrets: Sequence[str] = field(default=(), repr=False)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime
    etag: str


class ObjectStore:
    """Base of the object-store lakes; see the module docstring."""

    def __init__(
        self, name: str, *, prefix: str, location: str, access: Access, attempts: int = _ATTEMPTS
    ) -> None:
        self.name = name
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.description = f"{location} at {access.endpoint}"
        self.credential_names = tuple(access.credential_names)
        self._secrets = tuple(s for s in access.secrets if s)
        self.attempts = attempts
        self.list_calls = 0

    # -- provider hooks -------------------------------------------------------------------------
    def _pages(self, prefix: str, start_after: str | None) -> Iterator[list[StoredObject]]:
        raise NotImplementedError

    def _download(self, obj: FileEntry, key: str, sink: BinaryIO) -> None:
        raise NotImplementedError

    def _head(self, key: str) -> StoredObject | None:
        raise NotImplementedError

    def _fault(self, exc: BaseException) -> Fault:
        raise NotImplementedError

    # -- shared behaviour -----------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, exc: BaseException, fault: Fault, doing: str) -> LakeUnavailableError:
        where = f"lake {self.name!r}: {self.description}"
        if fault == "auth":
            names = ", ".join(f"${n}" for n in self.credential_names) or "the default credential chain"
            msg = f"{where} refused the credentials while {doing} (from {names}); check those variables"
        elif fault == "missing":
            msg = f"{where} does not exist ({type(exc).__name__})"
        else:
            detail = self._clean(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
            msg = f"{where} is unreachable while {doing} after {self.attempts} attempts: {detail}"
        return LakeUnavailableError(msg)

    def _retry(self, call: Callable[[], T], doing: str) -> T:
        attempt = 1
        while True:
            try:
                return call()
            except Exception as exc:
                fault = self._fault(exc)
                if fault != "transient" or attempt >= self.attempts:
                    if fault in ("changed", "missing") and doing.startswith("reading"):
                        raise
                    raise self._error(exc, fault, doing) from None
                _pause(attempt)
                attempt += 1

    def list(self, pattern: str, *, start_after: str | None = None) -> Iterator[FileEntry]:
        """Matching objects; a transient fault restarts the listing after the last key seen."""
        regex = compile_pattern(pattern)
        prefix = self.prefix + literal_prefix(pattern)
        after = self.prefix + start_after if start_after is not None else None
        last_key = after
        for attempt in range(1, self.attempts + 1):
            try:
                resume = last_key
                for page in self._pages(prefix, resume):
                    self.list_calls += 1
                    for obj in page:
                        if resume is not None and obj.key <= resume:
                            continue  # a provider that cannot start after a key lists it again
                        last_key = obj.key
                        relative = obj.key[len(self.prefix) :]
                        if relative.endswith("/") or not regex.match(relative):
                            continue
                        yield FileEntry(relative, obj.size, obj.modified, obj.etag)
            except LakeUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - every SDK error is classified by _fault
                fault = self._fault(exc)
                if fault != "transient" or attempt == self.attempts:
                    raise self._error(exc, fault, "listing") from None
                _pause(attempt)
            else:
                return

    @contextmanager
    def local_path(self, entry: FileEntry) -> Iterator[Path]:
        """Download the listed version to a temporary file (same name, so ``.gz`` still shows)."""
        key = self.prefix + entry.path
        with tempfile.TemporaryDirectory(prefix="lakesync-") as folder:
            target = Path(folder) / (PurePosixPath(entry.path).name or "object")

            def fetch() -> None:
                with target.open("wb") as sink:
                    self._download(entry, key, sink)

            try:
                self._retry(fetch, f"reading {entry.path}")
            except Exception as exc:
                fault = self._fault(exc) if not isinstance(exc, LakeUnavailableError) else "other"
                if fault == "changed":
                    msg = (
                        f"the file changed after it was listed (etag {entry.etag}); its new content "
                        "can be ingested with `lakesync quarantine replay`"
                    )
                    raise FileChangedError(msg) from None
                if fault == "missing":
                    raise FileNotFoundError(entry.path) from None
                raise
            yield target

    def stat(self, path: str) -> FileEntry | None:
        found = self._retry(lambda: self._head(self.prefix + path), f"looking up {path}")
        if found is None:
            return None
        return FileEntry(path, found.size, found.modified, found.etag)

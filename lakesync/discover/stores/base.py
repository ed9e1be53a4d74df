"""What every lake store offers, whatever the provider: listing and reading, never writing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from lakesync.state.values import FileEntry


class LakeUnavailableError(RuntimeError):
    """The lake could not be listed or read (missing folder, unreachable endpoint, refused
    credentials); the message names the lake and where it is, never a secret."""


class FileChangedError(OSError):
    """A file's content changed between its listing and its reading."""


class LakeStore(Protocol):
    """What a lake provider must offer to the discover and read stages."""

    name: str
    description: str
    """Where the lake is, for messages (never a secret)."""
    list_calls: int
    """Listing requests made so far (one per page on object stores)."""

    def list(self, pattern: str, *, start_after: str | None = None) -> Iterator[FileEntry]:
        """Every file whose relative path matches the glob ``pattern``, in key order (their
        paths' order as strings: a listing can resume after a path), after ``start_after``."""
        ...

    def local_path(self, entry: FileEntry) -> AbstractContextManager[Path]:
        """A local path with the file's bytes as listed; raises :class:`FileChangedError` if it
        changed since (``FileNotFoundError`` if it is gone)."""
        ...

    def stat(self, path: str) -> FileEntry | None:
        """The file at ``path`` as it is now (``None`` if there is none)."""
        ...


def file_checksum(path: Path) -> str:
    """SHA-256 of a file's content (for the audit trail)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

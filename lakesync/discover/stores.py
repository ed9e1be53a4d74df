"""Lake stores: list the files of a lake and make one readable, never writing to the lake.

Each provider is one class implementing :class:`LakeStore`; ``open_store`` picks it from the
lake's config. Source lakes are read-only to lakesync: stores only list and read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from lakesync.config.models import LocalLake
from lakesync.discover.patterns import compile_pattern, literal_prefix


@dataclass(frozen=True, order=True)
class FileEntry:
    """One file of a lake as the listing saw it."""

    path: str
    """Path relative to the lake root, with ``/`` separators."""
    size: int
    modified: datetime
    """Last modification time, UTC."""
    etag: str | None = None
    """Content tag of object stores; ``None`` on local disks."""

    @property
    def version_tag(self) -> str:
        """What identifies this content of the file: the etag, else size and mtime."""
        return self.etag or f"{self.size}:{int(self.modified.timestamp() * 1_000_000)}"


class LakeUnavailableError(RuntimeError):
    """The lake could not be listed (missing folder, unreachable endpoint, no permission)."""


class FileChangedError(OSError):
    """A file's content changed between its listing and its reading."""


class LakeStore(Protocol):
    """What a lake provider must offer to the discover and read stages."""

    name: str
    description: str
    """Where the lake is, for messages (never a secret)."""

    def list(self, pattern: str) -> Iterator[FileEntry]:
        """Every file whose relative path matches the glob ``pattern``."""
        ...

    def local_path(self, entry: FileEntry) -> AbstractContextManager[Path]:
        """A local path with the file's bytes as listed; raises :class:`FileChangedError` if it
        changed since (``FileNotFoundError`` if it is gone)."""
        ...

    def stat(self, path: str) -> FileEntry | None:
        """The file at ``path`` as it is now (``None`` if there is none)."""
        ...


class LocalStore:
    """A lake on a local or mounted file system."""

    def __init__(self, name: str, lake: LocalLake) -> None:
        self.name = name
        self.root = Path(lake.root)
        self.description = f"local folder {self.root}"

    def list(self, pattern: str) -> Iterator[FileEntry]:
        if not self.root.is_dir():
            msg = f"lake {self.name!r}: the folder {self.root} does not exist or is not a folder"
            raise LakeUnavailableError(msg)
        regex = compile_pattern(pattern)
        start = self.root / literal_prefix(pattern)
        if not start.is_dir():
            return
        stack = [start]
        root_len = len(str(self.root)) + 1
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                            continue
                        relative = entry.path[root_len:].replace(os.sep, "/")
                        if not regex.match(relative):
                            continue
                        try:
                            stat = entry.stat()
                        except FileNotFoundError:
                            continue  # deleted while listing: the next tick will not see it either
                        yield _entry(relative, stat)
            except PermissionError as exc:
                msg = f"lake {self.name!r}: cannot list {folder}: permission denied"
                raise LakeUnavailableError(msg) from exc

    @contextmanager
    def local_path(self, entry: FileEntry) -> Iterator[Path]:
        path = self.root / entry.path
        now = self.stat(entry.path)
        if now is not None and now.version_tag != entry.version_tag:
            msg = (
                f"the file changed after it was listed (size {entry.size} -> {now.size} bytes, "
                f"modified {entry.modified:%Y-%m-%d %H:%M:%S} -> {now.modified:%Y-%m-%d %H:%M:%S}); "
                "its new content can be ingested with `lakesync quarantine replay`"
            )
            raise FileChangedError(msg)
        yield path

    def stat(self, path: str) -> FileEntry | None:
        try:
            return _entry(path, (self.root / path).stat())
        except FileNotFoundError:
            return None


def _entry(relative: str, stat: os.stat_result) -> FileEntry:
    return FileEntry(
        path=relative,
        size=stat.st_size,
        modified=datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC),
    )


def open_store(name: str, lake: LocalLake) -> LakeStore:
    """The store for a lake's provider."""
    return LocalStore(name, lake)

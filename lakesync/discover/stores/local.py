"""A lake on a local or mounted file system (NFS, SMB): read in place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from lakesync.config.storage import LocalLake
from lakesync.discover.patterns import compile_pattern, literal_prefix
from lakesync.discover.stores.base import FileChangedError, LakeUnavailableError
from lakesync.state.values import FileEntry


class LocalStore:
    """A lake on a local or mounted file system."""

    def __init__(self, name: str, lake: LocalLake) -> None:
        self.name = name
        self.root = Path(lake.root)
        self.description = f"local folder {self.root}"
        self.list_calls = 0

    def list(self, pattern: str, *, start_after: str | None = None) -> Iterator[FileEntry]:
        """Matching files in key order, as object stores list (their relative paths as strings,
        a folder's files where ``folder/`` sorts); after ``start_after``, folders whose every
        path sorts before it are not entered."""
        self.list_calls += 1
        if not self.root.is_dir():
            msg = f"lake {self.name!r}: the folder {self.root} does not exist or is not a folder"
            raise LakeUnavailableError(msg)
        regex = compile_pattern(pattern)
        prefix = literal_prefix(pattern)
        start = self.root / prefix
        if not start.is_dir():
            return
        for path, entry in self._walk(start, prefix, start_after):
            if not regex.match(path) or (start_after is not None and path <= start_after):
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue  # deleted while listing: the next tick will not see it either
            yield _entry(path, stat)

    def _walk(self, folder: Path, relative: str, after: str | None) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """(relative path, entry) of every file under ``folder``, in key order."""
        try:
            with os.scandir(folder) as scan:
                entries = sorted(
                    ((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in scan
                )
        except PermissionError as exc:
            msg = f"lake {self.name!r}: cannot list {folder}: permission denied"
            raise LakeUnavailableError(msg) from exc
        for name, entry in entries:
            path = relative + name
            if not name.endswith("/"):
                yield path, entry
            elif after is None or after[: len(path)] <= path:  # else all of it sorts before ``after``
                yield from self._walk(Path(entry.path), path, after)

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

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
        self.list_calls += 1
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
                        if not regex.match(relative) or (start_after is not None and relative <= start_after):
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

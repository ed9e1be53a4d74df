"""The store a lake has without a Dagster resource: its folder when local; for a cloud lake, a
stand-in that says the store comes from the lake's resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from lakesync.config.storage import AnyLake, LocalLake
from lakesync.discover.stores.base import LakeStore
from lakesync.discover.stores.local import LocalStore
from lakesync.state.values import FileEntry


class NoStore:
    """Stands for a cloud lake's store where none was given: fine for settings, not for I/O."""

    def __init__(self, name: str, provider: str) -> None:
        self.name = name
        self.description = f"{provider} lake {name}"
        self.list_calls = 0
        self._why = f"lake {name!r} is on {provider}: its store comes from its Dagster resource"

    def list(self, pattern: str, *, start_after: str | None = None) -> Iterator[FileEntry]:
        raise ValueError(self._why)

    def local_path(self, entry: FileEntry) -> AbstractContextManager[Path]:
        raise ValueError(self._why)

    def stat(self, path: str) -> FileEntry | None:
        raise ValueError(self._why)


def default_store(name: str, lake: AnyLake) -> LakeStore:
    """A local lake's folder, or a stand-in for a cloud lake's store (fine for settings, not I/O)."""
    return LocalStore(name, lake) if isinstance(lake, LocalLake) else NoStore(name, lake.provider)

"""Everything one lake dataset needs at run time, resolved once from the configuration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from lakesync.config.models import Dataset, DriftPolicy, LakesyncConfig, LocalLake
from lakesync.conform.convert import TextFormats
from lakesync.discover.stores import FileEntry, LakeStore, LocalStore
from lakesync.read import DEFAULT_CHUNK_ROWS, ReadSpec
from lakesync.record.drift_log import Decisions


@dataclass(frozen=True)
class DatasetRuntime:
    key: str
    """``<lake>.<dataset>``: the dataset's id in the ledger and in Delta transactions."""
    lake: str
    name: str
    table: str
    config: Dataset
    store: LakeStore
    policy: DriftPolicy
    read_spec: ReadSpec
    formats: TextFormats
    decisions: Decisions = field(default_factory=Decisions)
    """What reviewers decided about this dataset's drift (approved renames extend the mapping)."""

    @property
    def columns(self) -> dict[str, str]:
        """Source column name -> canonical name: the configured mapping plus approved renames."""
        return {**self.decisions.renames, **self.config.columns}

    @property
    def source_names(self) -> dict[str, str]:
        """Canonical column name -> the name in this dataset's files."""
        return {canonical: source for source, canonical in self.columns.items()}


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


def dataset_key(lake: str, dataset: str) -> str:
    return f"{lake}.{dataset}"


def dataset_runtimes(
    config: LakesyncConfig,
    *,
    table: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    stores: Mapping[str, LakeStore] | None = None,
) -> list[DatasetRuntime]:
    """Runtimes of every dataset (feeding ``table`` if given), in configuration order.

    ``stores`` gives each lake's store (built by the Dagster layer from the lake's resource);
    a local lake without one reads its folder. ``chunk_rows`` bounds the rows read at once.
    """
    runtimes = []
    for lake_name, lake in config.lakes.items():
        if table is not None and all(d.table != table for d in lake.datasets.values()):
            continue
        store = (stores or {}).get(lake_name)
        if store is None:
            store = (
                LocalStore(lake_name, lake)
                if isinstance(lake, LocalLake)
                else NoStore(lake_name, lake.provider)
            )
        for name, dataset in lake.datasets.items():
            if table is not None and dataset.table != table:
                continue
            runtimes.append(
                DatasetRuntime(
                    key=dataset_key(lake_name, name),
                    lake=lake_name,
                    name=name,
                    table=dataset.table,
                    config=dataset,
                    store=store,
                    policy=dataset.drift or config.tables[dataset.table].drift,
                    read_spec=ReadSpec(format=dataset.format, options=dataset.options, chunk_rows=chunk_rows),
                    formats=TextFormats(
                        timezone=dataset.timezone,
                        timestamp_format=dataset.options.timestamp_format,
                        date_format=dataset.options.date_format,
                    ),
                )
            )
    return runtimes

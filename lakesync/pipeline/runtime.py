"""Everything one lake dataset needs at run time, resolved once from the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from lakesync.config.models import Dataset, DriftPolicy, LakesyncConfig
from lakesync.conform.convert import TextFormats
from lakesync.discover.stores import LakeStore, open_store
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


def dataset_key(lake: str, dataset: str) -> str:
    return f"{lake}.{dataset}"


def dataset_runtimes(
    config: LakesyncConfig, *, table: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> list[DatasetRuntime]:
    """Runtimes of every dataset (feeding ``table`` if given), in configuration order.

    ``chunk_rows`` bounds the rows read at once from a file (memory against overhead).
    """
    runtimes = []
    for lake_name, lake in config.lakes.items():
        store = open_store(lake_name, lake)
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

"""Everything one lake dataset needs at run time, resolved once from the configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lakesync.config.datasets import Dataset
from lakesync.config.models import LakesyncConfig
from lakesync.conform.convert import TextFormats
from lakesync.conform.policies import Decisions, DriftPolicy, drift_policy
from lakesync.discover.sources import DiscoverySource, source_for
from lakesync.discover.stores import LakeStore, default_store
from lakesync.read import DEFAULT_CHUNK_ROWS, ReadSpec
from lakesync.state.audit import credential_names
from lakesync.state.values import dataset_id


@dataclass(frozen=True)
class DatasetRuntime:
    key: str
    """``<lake>.<dataset>``: the dataset's id in the ledger and in Delta transactions."""
    lake: str
    name: str
    config: Dataset
    store: LakeStore
    policy: DriftPolicy
    formats: TextFormats
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    credential_names: str | None = None
    """The environment variables the lake's secrets come from (for the audit trail)."""
    decisions: Decisions = field(default_factory=Decisions)
    """What reviewers decided about this dataset's drift (approved renames extend the mapping)."""
    discovery: str = "listing"
    """How its lake's new files are found: ``listing`` or ``events``."""

    @property
    def table(self) -> str:
        return self.config.table

    @property
    def read_spec(self) -> ReadSpec:
        return ReadSpec(format=self.config.format, options=self.config.options, chunk_rows=self.chunk_rows)

    @property
    def source(self) -> DiscoverySource:
        """Where this dataset's new files are found."""
        return source_for(self.config, self.store, self.discovery)

    @property
    def columns(self) -> dict[str, str]:
        """Source column name -> canonical name: the configured mapping plus approved renames."""
        return {**self.decisions.renames, **self.config.columns}

    @property
    def source_names(self) -> dict[str, str]:
        """Canonical column name -> the name in this dataset's files."""
        return {canonical: source for source, canonical in self.columns.items()}


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
        store = (stores or {}).get(lake_name)
        if store is None:
            store = default_store(lake_name, lake)
        for name, dataset in lake.datasets.items():
            if table is not None and dataset.table != table:
                continue
            runtimes.append(
                DatasetRuntime(
                    key=dataset_id(lake_name, name),
                    lake=lake_name,
                    name=name,
                    config=dataset,
                    store=store,
                    policy=drift_policy(dataset.drift or config.tables[dataset.table].drift),
                    formats=TextFormats(
                        timezone=dataset.timezone,
                        timestamp_format=dataset.options.timestamp_format,
                        date_format=dataset.options.date_format,
                    ),
                    chunk_rows=chunk_rows,
                    credential_names=credential_names(config, lake_name),
                    discovery=lake.discovery.mode,
                )
            )
    return runtimes

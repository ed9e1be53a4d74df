"""What stays the same for every round of a table's sync: the table, its rules, the run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lakesync.commit.provenance import Provenance
from lakesync.config.models import Table
from lakesync.conform.pii import PiiPolicy
from lakesync.conform.policies import AutoRenames
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.state.erasures import ErasureList
from lakesync.state.lakehouse import Lakehouse
from lakesync.validate import CompiledContract

WHOLE_FILE_BYTES = 32 * 1024 * 1024
"""Files up to this size are processed whole on a worker; larger ones stream chunk by chunk."""


@dataclass(frozen=True)
class TableSpec:
    """The unified table a sync writes."""

    name: str
    settings: Table
    contract: CompiledContract

    @property
    def fingerprint(self) -> str:
        return self.contract.contract.fingerprint


@dataclass(frozen=True)
class RowRules:
    """What every committed row goes through besides its contract: personal data treated, erased
    subjects kept out, provenance columns added."""

    pii: PiiPolicy = field(default_factory=lambda: PiiPolicy({}))
    erased: ErasureList | None = None
    provenance: Provenance = field(default_factory=Provenance)


@dataclass(frozen=True)
class TableContext:
    """One table's sync in one run."""

    table: TableSpec
    lakehouse: Lakehouse
    run_id: str
    rules: RowRules
    runtimes: Mapping[str, DatasetRuntime]
    """The datasets of this sync, by id."""
    whole_file_bytes: int = WHOLE_FILE_BYTES
    auto_renames: AutoRenames | None = None
    """When lakesync approves a probable rename itself (the table's ``autonomy.renames``)."""
    discovered: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Dataset -> path -> how a file of a lake in events mode was found (event, reconcile,
    listing); files of listing lakes were found by a listing."""

    def discovered_by(self, dataset: str) -> Callable[[str], str | None]:
        known = self.discovered.get(dataset, {})
        listing = self.runtimes[dataset].discovery == "listing"
        return lambda path: "listing" if listing else known.get(path)

    @property
    def uri(self) -> str:
        return self.lakehouse.table_uri(self.table.name)

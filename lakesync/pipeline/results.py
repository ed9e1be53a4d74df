"""What a sync did, as small frozen dataclasses: every report (the CLI's summary, Dagster's
metadata and checks) is built from them. :meth:`TableSync.to_json` / :meth:`TableSync.from_json`
carry one across processes (a run's event log) without losing a field."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lakesync.conform.drift import DriftReport
from lakesync.pipeline.failures import ContractFailures, FailureCase


@dataclass(frozen=True)
class DatasetSync:
    """One lake dataset's part of a table sync."""

    key: str
    """``<lake>.<dataset>``."""
    lake: str
    dataset: str
    table: str
    files_seen: int | None = None
    """Files matching the pattern at listing time (``None`` if the lake could not be listed)."""
    files_pending: int = 0
    """New files left for later runs (beyond max_files / max_bytes)."""
    files_changed: int = 0
    """Files seen before whose content changed since (reported, not re-ingested)."""
    files_ingested: int = 0
    files_quarantined: int = 0
    rows_read: int = 0
    rows_committed: int = 0
    """Rows the table holds from this run's batches (those of ``rows_committed_elsewhere`` too)."""
    rows_committed_elsewhere: int = 0
    """Of ``rows_committed``, those another run had committed (a racing sync, or a run killed
    after its commit): this run only read their batch again and finished recording it."""
    rows_quarantined: int = 0
    rows_erased: int = 0
    """Rows of erased subjects dropped on arrival (`lakesync erase`), recorded, not quarantined."""
    rows_rescued: int = 0
    """Committed rows with values that did not fit their column, kept in ``_rescued_data``."""
    rescued: dict[str, int] = field(default_factory=dict)
    """Rescued values per column (its name in the files)."""
    batches: tuple[int, ...] = ()
    drift: tuple[DriftReport, ...] = ()
    newest_file: datetime | None = None
    max_latency_seconds: float | None = None
    """Longest time from a file landing (mtime) to its rows being committed."""
    error: str | None = None
    """Why this dataset could not be synced (the lake was unreachable, drift policy fail...)."""
    drift_held_back: int = 0
    """Files held back by schema drift (quarantined by policy or rejection, or stopping the dataset)."""
    drift_handled: int = 0
    """Files whose schema drift was handled (columns added, values rescued, approved drift)."""
    failures: ContractFailures = field(default_factory=ContractFailures)
    """What was rejected (rows by rule and column, unreadable files), with examples."""
    batch_rows: tuple[tuple[int, int], ...] = ()
    """(batch, rows read) of each batch of this run."""

    @property
    def conserved(self) -> bool:
        return self.rows_read == self.rows_committed + self.rows_quarantined + self.rows_erased

    @property
    def rows_committed_here(self) -> int:
        """Rows this run committed itself."""
        return self.rows_committed - self.rows_committed_elsewhere


@dataclass(frozen=True)
class TableSync:
    """The outcome of one sync of a unified table."""

    table: str
    run_id: str
    datasets: tuple[DatasetSync, ...]
    delta_version: int | None
    row_count: int
    commits: int = 0
    rows_superseded: int = 0
    """Rows replaced within a batch by a later row with the same key (merge tables)."""
    quarantine_version: int | None = None
    contract: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    """Column name -> type of the committed table."""
    columns_before: dict[str, str] = field(default_factory=dict)
    """Column name -> type of the table before this sync (to show what drift changed)."""

    @property
    def ok(self) -> bool:
        return all(d.error is None for d in self.datasets)

    @property
    def rows_read(self) -> int:
        return sum(d.rows_read for d in self.datasets)

    @property
    def rows_committed(self) -> int:
        return sum(d.rows_committed for d in self.datasets)

    @property
    def rows_quarantined(self) -> int:
        return sum(d.rows_quarantined for d in self.datasets)

    @property
    def rows_erased(self) -> int:
        return sum(d.rows_erased for d in self.datasets)

    @property
    def files_ingested(self) -> int:
        return sum(d.files_ingested for d in self.datasets)

    @property
    def files_quarantined(self) -> int:
        return sum(d.files_quarantined for d in self.datasets)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (datetimes as ISO 8601 text)."""
        return _plain(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSync:
        datasets = tuple(_dataset(d) for d in data.get("datasets", []))
        values = {k: v for k, v in data.items() if k != "datasets"}
        return cls(datasets=datasets, **values)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dataset(data: dict[str, Any]) -> DatasetSync:
    failures = dict(data.get("failures") or {})
    values = {
        **data,
        "batches": tuple(data.get("batches", ())),
        "batch_rows": tuple(tuple(b) for b in data.get("batch_rows", ())),
        "drift": tuple(DriftReport.from_dict(r) for r in data.get("drift", ())),
        "newest_file": datetime.fromisoformat(data["newest_file"]) if data.get("newest_file") else None,
        "failures": ContractFailures(
            rows_failed=failures.get("rows_failed", 0),
            files_failed=failures.get("files_failed", 0),
            rows_held_by_drift=failures.get("rows_held_by_drift", 0),
            by_rule=tuple(tuple(r) for r in failures.get("by_rule", ())),
            samples=tuple(FailureCase(**c) for c in failures.get("samples", ())),
            unreadable=tuple(FailureCase(**c) for c in failures.get("unreadable", ())),
            files=tuple((str(f), int(n), str(r), str(w)) for f, n, r, w in failures.get("files", ())),
        ),
    }
    return DatasetSync(**values)

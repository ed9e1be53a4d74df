"""One SQL over the lakehouse and the lakes, in place (polars' SQL engine, lazily: a filter on a
Delta table prunes its files by their statistics).

What a query can name:

- a unified table by its name (``orders``), pinned at one Delta version (the latest, or the one
  ``as_of`` says); a feature table by its name when no unified table has it;
- with ``fresh``: each table plus the files its datasets have not ingested yet, read in place;
- a lake dataset as ``<lake>.<dataset>`` (``us_sales.orders``): every file it has now, read in
  place;
- ``_catalog``: the global catalog (:mod:`lakesync.catalog`).

Rows read in place are mapped, converted, judged by the contract and treated for personal data
by the sync's own code (:mod:`lakesync.sql.inplace`): a query never returns a value the
lakehouse would have stored hashed, masked or dropped, nor a row of an erased data subject.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from lakesync.config import LakesyncConfig
from lakesync.conform.pii import PiiError
from lakesync.discover import LakeStore, LakeUnavailableError, discover
from lakesync.features.build import current_values
from lakesync.pipeline.context import TableContext
from lakesync.pipeline.runtime import DatasetRuntime
from lakesync.pipeline.sync import SyncOptions, table_context
from lakesync.sql.inplace import FAILED, PASSES, InPlaceRows, read_in_place
from lakesync.state.lakehouse import Lakehouse, transaction_version
from lakesync.state.ledger_state import ledger_states
from lakesync.state.values import FileEntry

CATALOG = "_catalog"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")


class QueryError(ValueError):
    """A query that cannot be answered, said in one sentence (bad SQL, an unknown table or
    column, a version that does not exist, a lake that cannot be read)."""


@dataclass(frozen=True)
class QueryOptions:
    as_of: int | datetime | None = None
    """Every table at this Delta version, or as of this time (UTC when naive)."""
    fresh: bool = False
    """Tables plus their datasets' files not ingested yet, read in place."""
    strict: bool = False
    """Rows read in place: only those passing the contract."""
    limit: int | None = None


@dataclass
class QueryResult:
    frame: pl.DataFrame
    versions: dict[str, int] = field(default_factory=dict)
    """Table (or feature) -> the Delta version read."""
    in_place: dict[str, int] = field(default_factory=dict)
    """``<lake>.<dataset>`` -> files read in place."""
    skipped: list[str] = field(default_factory=list)
    """Files read in place whose rows were left out, with why."""


def reads_in_place(config: LakesyncConfig, sql: str, options: QueryOptions) -> bool:
    """Whether the query reads lake files (``fresh``, or a ``<lake>.<dataset>`` it names)."""
    named = set(_IDENTIFIER.findall(sql))
    return options.fresh or any(
        f"{lake}.{d}" in named for lake, spec in config.lakes.items() for d in spec.datasets
    )


def run_query(
    config: LakesyncConfig,
    sql: str,
    *,
    lakehouse: Lakehouse,
    stores: Mapping[str, LakeStore] | None = None,
    options: QueryOptions | None = None,
) -> QueryResult:
    """The answer to ``sql`` (raises :class:`QueryError`)."""
    options = options or QueryOptions()
    if options.fresh and options.as_of is not None:
        msg = "--fresh reads the lakes as they are now: it cannot be combined with --as-of"
        raise QueryError(msg)
    query = _Query(config, lakehouse, stores, options)
    named = set(_IDENTIFIER.findall(sql))
    frames: dict[str, pl.LazyFrame] = {}
    for table in config.tables:
        if table in named:
            frames[table] = query.table(table)
    for feature in config.features:
        if feature in named and feature not in frames:
            frames[feature] = query.feature(feature)
    for lake, spec in config.lakes.items():
        for dataset in spec.datasets:
            if f"{lake}.{dataset}" in named:
                frames[f"{lake}.{dataset}"] = query.raw(lake, dataset)
    if CATALOG in named:
        from lakesync.catalog import catalog_frame  # noqa: PLC0415 - only for queries of the catalog

        frames[CATALOG] = catalog_frame(config, lakehouse).lazy()  # built now: never staler than the tables
    try:
        lazy = pl.SQLContext(frames).execute(sql)
        if options.limit is not None:
            lazy = lazy.limit(options.limit)
        query.result.frame = lazy.collect()
    except pl.exceptions.PolarsError as exc:
        raise QueryError(_sentence(exc, config)) from None
    return query.result


def _sentence(exc: Exception, config: LakesyncConfig) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    missing = re.search(r"relation '([^']+)' was not found", first)
    if missing:
        datasets = [f"{lake}.{d}" for lake, spec in config.lakes.items() for d in spec.datasets]
        known = [*config.tables, *config.features, *datasets, CATALOG]
        return f"the query names {missing.group(1)!r}, which is not a table here (known: {', '.join(known)})"
    if isinstance(exc, pl.exceptions.ColumnNotFoundError):
        return f"the query names a column that does not exist: {first}"
    return f"the query cannot be run: {first}"


def _commit_time(history: list[dict[str, Any]], version: int) -> datetime | None:
    """When ``version`` was committed, from the history of the table at its latest version
    (delta-rs numbers the history of a table loaded at an older version one too low)."""
    stamp = next((h.get("timestamp") for h in history if h.get("version") == version), None)
    return datetime.fromtimestamp(stamp / 1000, tz=UTC) if isinstance(stamp, int) else None


@dataclass
class _Query:
    """What every table a query reads shares, and what it found."""

    config: LakesyncConfig
    lakehouse: Lakehouse
    stores: Mapping[str, LakeStore] | None
    options: QueryOptions
    result: QueryResult = field(default_factory=lambda: QueryResult(pl.DataFrame()))

    def open(self, uri: str, what: str) -> DeltaTable | None:
        """The Delta table at ``uri`` at the version the query asks for (``None``: none yet)."""
        storage = dict(self.lakehouse.storage_options) or None
        as_of = self.options.as_of
        try:
            if isinstance(as_of, int):
                latest = DeltaTable(uri, storage_options=storage).version()
                if not 0 <= as_of <= latest:
                    msg = f"{what} has no version {as_of} (its versions are 0 to {latest})"
                    raise QueryError(msg)
                return DeltaTable(uri, version=as_of, storage_options=storage)
            snapshot = DeltaTable(uri, storage_options=storage)
        except TableNotFoundError:
            return None
        except (DeltaError, OSError) as exc:
            msg = f"{what} at {uri} cannot be read: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            raise QueryError(msg) from None
        if isinstance(as_of, datetime):
            when = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
            history = snapshot.history()  # before loading an older version (see _commit_time)
            snapshot.load_as_version(when)
            committed = _commit_time(history, snapshot.version())
            if committed is not None and committed > when:
                msg = (
                    f"{what} did not exist yet at {when.isoformat(timespec='seconds')} "
                    f"(its first version was committed at {committed.isoformat(timespec='seconds')})"
                )
                raise QueryError(msg)
        return snapshot

    def snapshot_of(self, uri: str, what: str, name: str) -> DeltaTable:
        snapshot = self.open(uri, what)
        if snapshot is None:
            msg = f"{what} does not exist yet at {uri}: run `lakesync sync` first"
            raise QueryError(msg)
        self.result.versions[name] = snapshot.version()
        return snapshot

    def delta(self, uri: str, what: str, name: str) -> pl.LazyFrame:
        return pl.scan_delta(self.snapshot_of(uri, what, name))

    def feature(self, name: str) -> pl.LazyFrame:
        """The feature's values current at the version read (not its history)."""
        snapshot = self.snapshot_of(self.lakehouse.feature_uri(name), f"feature table {name!r}", name)
        return current_values(snapshot, self.config.features[name])

    def context(self, table: str, datasets: list[str] | None = None) -> TableContext:
        try:
            return table_context(
                self.config,
                table,
                lakehouse=self.lakehouse,
                run_id="query",
                options=SyncOptions(datasets=datasets, stores=self.stores),
            )
        except PiiError as exc:
            raise QueryError(str(exc)) from None

    def table(self, table: str) -> pl.LazyFrame:
        uri = self.lakehouse.table_uri(table)
        if not self.options.fresh:
            return self.delta(uri, f"table {table!r}", table)
        snapshot = self.open(uri, f"table {table!r}")
        new = self.not_ingested(table, snapshot)
        committed = None
        if snapshot is not None:
            self.result.versions[table] = snapshot.version()
            committed = pl.scan_delta(snapshot).with_columns(
                pl.lit(value=True).alias(PASSES), pl.lit(None, pl.String).alias(FAILED)
            )
        if new is None or committed is None:
            if new is None and committed is None:
                msg = f"table {table!r} does not exist yet and its lakes have no file for it"
                raise QueryError(msg)
            return committed if new is None else new  # type: ignore[return-value]
        settings = self.config.tables[table]
        if settings.mode != "merge":
            return pl.concat([committed, new], how="diagonal_relaxed")
        # A merge table as the sync would leave it: a passing new row replaces its key's row.
        keys = list(settings.keys)
        passing, failing = new.filter(pl.col(PASSES)), new.filter(~pl.col(PASSES))
        if settings.latest_by:
            merged = (
                pl.concat([committed, passing], how="diagonal_relaxed")
                .sort(settings.latest_by, nulls_last=False, maintain_order=True)
                .unique(keys, keep="last", maintain_order=True)
            )
        else:
            latest = passing.unique(keys, keep="last", maintain_order=True)
            kept = committed.join(latest.select(keys), on=keys, how="anti")
            merged = pl.concat([kept, latest], how="diagonal_relaxed")
        return pl.concat([merged, failing], how="diagonal_relaxed")

    def not_ingested(self, table: str, snapshot: DeltaTable | None) -> pl.LazyFrame | None:
        """The rows of the files ``table``'s datasets have not ingested yet, read in place: new
        files (changed ones too with ``changed: reingest``), and those of batches planned but
        not committed (a run died)."""
        ctx = self.context(table)
        states = ledger_states(
            self.lakehouse, self.lakehouse.open(self.lakehouse.ledger_uri), list(ctx.runtimes)
        )
        fresh: list[pl.DataFrame] = []
        for key, runtime in ctx.runtimes.items():
            state = states[key]
            found = discover(_listing(runtime), state.known)
            waiting = list(found.new)
            if runtime.config.changed == "reingest":
                waiting += found.changed
            for plan in state.pending:
                if transaction_version(snapshot, key) < plan.version:
                    waiting += plan.files
            read = self.read(ctx, runtime, waiting, snapshot)
            if read.frame is not None:
                fresh.append(read.frame)
        if not fresh:
            return None
        new = pl.concat(fresh, how="diagonal_relaxed").lazy()
        return new.filter(pl.col(PASSES)) if self.options.strict else new

    def read(
        self, ctx: TableContext, runtime: DatasetRuntime, files: list[FileEntry], snapshot: DeltaTable | None
    ) -> InPlaceRows:
        ordered = sorted(files, key=lambda f: (f.modified, f.path))
        read = read_in_place(ctx, runtime, ordered, snapshot)
        self.result.in_place[runtime.key] = self.result.in_place.get(runtime.key, 0) + read.files_read
        self.result.skipped += read.skipped
        return read

    def raw(self, lake: str, dataset: str) -> pl.LazyFrame:
        """Every file of a lake dataset now, read in place, as its table would hold the rows."""
        key = f"{lake}.{dataset}"
        table = self.config.lakes[lake].datasets[dataset].table
        ctx = self.context(table, datasets=[key])
        runtime = ctx.runtimes[key]
        snapshot = self.lakehouse.open(self.lakehouse.table_uri(table))
        frame = self.read(ctx, runtime, _listing(runtime), snapshot).frame
        if frame is None:
            columns = pl.scan_delta(snapshot).collect_schema() if snapshot is not None else {}
            frame = pl.DataFrame(schema={**columns, PASSES: pl.Boolean(), FAILED: pl.String()})
        lazy = frame.lazy()
        return lazy.filter(pl.col(PASSES)) if self.options.strict else lazy


def _listing(runtime: DatasetRuntime) -> list[FileEntry]:
    try:
        return list(runtime.store.list(runtime.config.pattern))
    except LakeUnavailableError as exc:
        raise QueryError(str(exc)) from None
    except ValueError as exc:  # a cloud lake without its store
        msg = f"{runtime.key}: {exc}"
        raise QueryError(msg) from None

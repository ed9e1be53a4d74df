"""Run a table's Great Expectations suite on a committed Delta version, and render Data Docs.

For what pandera contracts do not express (distributions, cross-column rules, row-count
ranges). GX is imported only here, only when a table names a suite: importing it takes seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lakesync.config.expectations import read_suite
from lakesync.state.lakehouse import Lakehouse

_COLUMN_KWARGS = ("column", "column_A", "column_B")


@dataclass(frozen=True)
class ExpectationOutcome:
    type: str
    column: str
    success: bool
    observed: str


@dataclass(frozen=True)
class SuiteRun:
    suite: str
    table: str
    delta_version: int
    rows: int
    success: bool
    outcomes: tuple[ExpectationOutcome, ...]
    docs_index: str | None
    """``file://`` address of the rendered Data Docs (local lakehouses)."""

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.success)


def _columns(suite: dict[str, Any]) -> list[str] | None:
    """The columns the suite reads, or ``None`` when an expectation looks at the whole table."""
    wanted: list[str] = []
    for item in suite.get("expectations", []):
        kwargs = item.get("kwargs", {})
        named = [kwargs[k] for k in _COLUMN_KWARGS if k in kwargs] + list(kwargs.get("column_list", []))
        if not named and not item["type"].startswith("expect_table_row_count"):
            return None
        wanted.extend(c for c in named if c not in wanted)
    return wanted


def _observed(result: dict[str, Any]) -> str:
    if "observed_value" in result:
        return str(result["observed_value"])
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} unexpected ({result.get('unexpected_percent', 0):.2f}%)"
    return ""


def run_suite(suite_path: str, lakehouse: Lakehouse, table: str, *, version: int | None = None) -> SuiteRun:
    """Validate ``table`` at ``version`` (default: current) against the suite; Data Docs are
    written to ``<lakehouse>/_data_docs`` when the lakehouse is a local folder."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no calls home from a sync
    import great_expectations as gx  # noqa: PLC0415 - lazy: seconds to import
    from great_expectations.checkpoint.actions import UpdateDataDocsAction  # noqa: PLC0415
    from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: PLC0415

    definition = read_suite(suite_path)
    name = str(definition.get("name") or Path(suite_path).stem)
    snapshot = lakehouse.open(lakehouse.table_uri(table))
    if snapshot is None:
        msg = f"table {table!r} has no data yet"
        raise FileNotFoundError(msg)
    pinned = snapshot.version() if version is None else version
    columns = _columns(definition)
    frame = pl.scan_delta(
        lakehouse.table_uri(table), version=pinned, storage_options=dict(lakehouse.storage_options) or None
    )
    if columns is not None:
        frame = frame.select(columns or [pl.len()])
    data = frame.collect()
    rows = data.height if columns != [] else int(data.item())
    pandas = data.to_pandas() if columns != [] else None

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = context.suites.add(gx.ExpectationSuite(**{**definition, "name": name}))
    batch = (
        context.data_sources.add_pandas("lakesync")
        .add_dataframe_asset(table)
        .add_batch_definition_whole_dataframe(f"version_{pinned}")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}:{name}", data=batch, suite=suite)
    )
    docs: str | None = None
    actions: list[Any] = []
    if "://" not in lakehouse.uri:
        docs_dir = Path(lakehouse.data_docs_dir())
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="lakesync",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=["lakesync"]))
        docs = (docs_dir / "index.html").as_uri()
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{table}_{name}",
            validation_definitions=[validation],
            actions=actions,
            result_format={"result_format": "SUMMARY"},
        )
    )
    if pandas is None:  # only row counts: a frame with the right number of rows, no columns read
        import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415

        pandas = pd.DataFrame(index=range(rows))
    result = checkpoint.run(batch_parameters={"dataframe": pandas})
    outcomes = []
    for run in result.run_results.values():
        for item in run.results:
            config = item.expectation_config
            kwargs = config.kwargs if config is not None else {}
            outcomes.append(
                ExpectationOutcome(
                    type=config.type if config is not None else "?",
                    column=str(kwargs.get("column") or ", ".join(kwargs.get("column_list", [])) or "(table)"),
                    success=bool(item.success),
                    observed=_observed(dict(item.result or {})),
                )
            )
    return SuiteRun(
        suite=name,
        table=table,
        delta_version=pinned,
        rows=rows,
        success=bool(result.success),
        outcomes=tuple(outcomes),
        docs_index=docs,
    )

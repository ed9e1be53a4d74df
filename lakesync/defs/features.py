"""Feature tables as Dagster assets, refreshed whenever their inputs change.

``features/<name>`` depends on its input tables and carries
``AutomationCondition.eager() & all_deps_blocking_checks_passed()``: the daemon recomputes it
after each new commit of an input, never on top of a failed (blocking) contract. The asset
checks the same itself, so a manual materialization or ``lakesync sync`` is blocked too.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.defs.checks import BLOCKING_CHECKS
from lakesync.defs.metadata import MAX_RUNTIME_TAG, delta_metadata, feature_key, online_key, table_key
from lakesync.defs.pools import feature_pool
from lakesync.features import build_feature
from lakesync.features.online import Lag, lag, publish_feature, served, store_for, store_kind
from lakesync.features.serving import OnlineStoreError

FEATURE_TAG = "lakesync/feature"
BLOCKED_TAG = "lakesync/blocked"
ONLINE_CHECK = "online_store_in_sync"


def feature_job_name(feature: str) -> str:
    return f"build_{feature}"


def blocking_failures(instance: dg.DagsterInstance, tables: list[str]) -> list[str]:
    """The input tables whose latest contract or conservation check failed with ERROR."""
    keys = [dg.AssetCheckKey(table_key(table), name) for table in tables for name in BLOCKING_CHECKS]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failed = []
    for key, record in latest.items():
        event = record.event
        evaluation = event.dagster_event.event_specific_data if event and event.dagster_event else None
        if (
            isinstance(evaluation, dg.AssetCheckEvaluation)
            and not evaluation.passed
            and evaluation.severity == dg.AssetCheckSeverity.ERROR
        ):
            failed.append(f"{key.asset_key.path[-1]}: {key.name} check failed in run {record.run_id[:8]}")
    return failed


def feature_asset(config: LakesyncConfig, name: str) -> dg.AssetsDefinition:
    feature = config.features[name]
    project = config
    how = (
        f"`{feature.function}`" + (f" per {', '.join(feature.entity)}" if feature.entity else "")
        if feature.function
        else f"{', '.join(feature.aggregations)} by {', '.join(feature.group_by) or '(all rows)'}"
    )

    online = served(config, name)
    checks = (
        [
            dg.AssetCheckSpec(
                ONLINE_CHECK,
                asset=feature_key(name),
                description="The online store holds this feature table's latest version "
                "(its lag: versions and seconds behind)",
            )
        ]
        if online
        else []
    )

    @dg.asset(
        key=feature_key(name),
        check_specs=checks,
        deps=[table_key(t) for t in feature.inputs],
        description=feature.description or f"Feature table from {', '.join(feature.inputs)}: {how}",
        group_name="features",
        kinds={"delta", "polars"},
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        output_required=False,
        required_resource_keys={"lakehouse"},
        pool=feature_pool(name),  # one build of the feature table at a time (defs/pools.py)
        tags={FEATURE_TAG: name, **feature.tags},
        owners=feature.owners or None,
        metadata={"inputs": ", ".join(feature.inputs), "computed_as": how},
    )
    def build(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:  # type: ignore[type-arg]
        target = context.resources.lakehouse.get()
        blocked = blocking_failures(context.instance, list(feature.inputs))
        if blocked:
            context.instance.add_run_tags(context.run_id, {BLOCKED_TAG: "; ".join(blocked)[:1000]})
            context.log.warning("%s is not updated: %s", name, "; ".join(blocked))
            if online:
                yield _online_check(project, name, target, None)
            return
        built = build_feature(project, name, target, run_id=context.run_id)
        if not built.updated:
            context.log.info("%s is up to date with %s", name, built.inputs)
        failure = None
        try:
            published = publish_feature(project, name, target, built)
        except OnlineStoreError as exc:  # the feature table is committed; the check shows the lag
            published, failure = None, str(exc)
            context.log.warning("%s: %s; materialize it again to publish it", name, failure)
        if published is not None and published.how != "held":  # the store's copy, its own asset
            store = store_for(project)
            context.log_event(
                dg.AssetMaterialization(
                    online_key(name),
                    description=f"latest values per {', '.join(published.entity)} in the online store",
                    metadata={
                        "dagster/row_count": published.rows,
                        "online_store": store.where if store is not None else "",
                        "feature_version": published.version,
                        "published": published.how,
                        "published_at": published.published_at.isoformat(timespec="seconds"),
                    },
                )
            )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": built.rows,
                "dagster/uri": target.feature_uri(name),
                **delta_metadata(target.open(target.feature_uri(name))),
                "input_versions": dg.MetadataValue.json(built.inputs),
                "recomputed": built.updated,
                "how": built.how,
                **(
                    {
                        "entities_changed": built.change.rows.height,
                        "entities_removed": built.change.gone.height,
                    }
                    if built.change is not None
                    else {}
                ),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=k, type=v) for k, v in built.columns.items()]
                ),
            }
        )
        if online:
            yield _online_check(project, name, target, failure)

    return build


def _online_check(config: LakesyncConfig, name: str, target: Any, failure: str | None) -> dg.AssetCheckResult:
    """Whether the online store holds the feature table's latest version, and its lag."""
    try:
        found: Lag | None = lag(config, name, target)
    except OnlineStoreError as exc:
        found, failure = None, failure or str(exc)
    snapshot = target.open(target.feature_uri(name))
    metadata: dict[str, Any] = {"feature_version": snapshot.version() if snapshot is not None else "none"}
    if found is not None:
        metadata = {
            "feature_version": found.feature_version,
            "store_version": found.store_version if found.store_version is not None else "none",
            "versions_behind": found.versions_behind,
            "lag_seconds": round(found.seconds, 3),
        }
    if failure is not None:
        metadata["error"] = failure
    return dg.AssetCheckResult(
        check_name=ONLINE_CHECK,
        passed=failure is None and found is not None and found.versions_behind == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=None
        if found is None or found.versions_behind == 0
        else f"the online store is {found.versions_behind} version(s) behind",
    )


def online_spec(config: LakesyncConfig, name: str) -> dg.AssetSpec | None:
    """The feature's copy in the online store (published by the feature's own run)."""
    feature = config.features[name]
    if not served(config, name):
        return None
    return dg.AssetSpec(
        key=online_key(name),
        deps=[feature_key(name)],
        description=f"The latest values of `{name}` per {', '.join(feature.entity_keys)}, for lookups "
        "(`lakesync features get`); published after each build of the feature",
        group_name="features",
        kinds={store_kind(config)},
    )


def feature_job(name: str, asset: dg.AssetsDefinition, max_runtime: float) -> Any:
    return dg.define_asset_job(
        name=feature_job_name(name),
        selection=dg.AssetSelection.assets(asset),
        tags={FEATURE_TAG: name, MAX_RUNTIME_TAG: str(int(max_runtime))},
        description=f"Recompute the feature table `{name}` (also done by the daemon when its inputs change)",
    )

"""One intake sensor per lake in events mode: receive the lake's storage events into the ledger.

Each tick drains the lake's queue (bounded: ``max_messages``) through
:class:`~lakesync.discover.events.intake.LakeIntake`: its files are announced in the ledger
before the messages are acknowledged, and a reconciliation listing runs when due. The lake's
dataset sensors then plan the announced files as they plan listed ones (their source reads the
ledger and never lists). Each dataset asset is observed with what the events did: messages,
files announced, files missed by events (last reconciliation and total), queue depth.
"""

from __future__ import annotations

import dagster as dg

from lakesync.config import LakesyncConfig
from lakesync.defs.checks import EVENTS_CHECK, check_evaluation
from lakesync.defs.metadata import dataset_key
from lakesync.defs.providers import needs_resource, resource_key, store_for
from lakesync.discover import LakeUnavailableError
from lakesync.monitor import events_verdict
from lakesync.state.append import AppendContentionError
from lakesync.state.inbox import Inbox, event_lags
from lakesync.state.ledger_state import ledger_states


def intake_sensor_name(lake: str) -> str:
    return f"events_{lake}"


def intake_sensor(config: LakesyncConfig, lake_name: str) -> dg.SensorDefinition:
    lake = config.lakes[lake_name]
    settings = lake.discovery
    assert settings.source is not None
    key = resource_key(lake_name) if needs_resource(lake) else None
    interval = min((d.sensor.interval for d in lake.datasets.values()), default=30.0)
    enabled = any(d.sensor.enabled for d in lake.datasets.values())

    @dg.sensor(
        name=intake_sensor_name(lake_name),
        minimum_interval_seconds=max(1, int(interval)),
        default_status=dg.DefaultSensorStatus.RUNNING if enabled else dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Receives the storage events of lake `{lake_name}` ({lake.location}) from its "
            f"{settings.source.kind} source into the ledger; reconciles every "
            f"{settings.reconcile_every:.0f} s"
        ),
        required_resource_keys={"lakehouse", *([key] if key else [])},
    )
    def receive(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        from lakesync.discover.events.intake import LakeIntake  # noqa: PLC0415 - queue SDKs load here
        from lakesync.governance.deletions import propagate  # noqa: PLC0415

        lakehouse = context.resources.lakehouse.get()
        resource = getattr(context.resources, key, None) if key else None
        store = store_for(lake_name, lake, resource)
        inbox = Inbox(lakehouse)
        try:
            run_id = f"sensor {intake_sensor_name(lake_name)}"
            deleting = (
                (lambda gone: propagate(config, lakehouse, gone, run_id=run_id))
                if settings.on_delete == "propagate"
                else None
            )
            result = LakeIntake(lake_name, lake, store, inbox, run_id, deleting).run()
        except (LakeUnavailableError, AppendContentionError) as exc:
            raise dg.Failure(description=str(exc)) from None
        if not (result.messages or result.reconciled):  # nothing changed: no events, no more reads
            return dg.SensorResult(skip_reason=result.line())
        summary = inbox.summary(lake_name)
        states = ledger_states(
            lakehouse, lakehouse.open(lakehouse.ledger_uri), [f"{lake_name}.{d}" for d in lake.datasets]
        )
        lags = event_lags(list(states.values()))
        metadata: dict[str, dg.RawMetadataValue] = {
            "discovery": "events",
            "event_source": result.source,
            "messages_received": result.messages,
            "files_announced": result.announced,
            "files_missed_by_events": summary.missed_last,
            "files_missed_by_events_total": summary.missed_total,
            "messages_not_understood_total": summary.failed_messages,
            **({"queue_depth": result.depth} if result.depth is not None else {}),
            **({"event_lag_seconds_p50": lags[0], "event_lag_seconds_p95": lags[1]} if lags else {}),
            **(
                {"last_reconciled": dg.MetadataValue.timestamp(summary.last_reconciled)}
                if summary.last_reconciled is not None
                else {}
            ),
        }
        keys = [dataset_key(lake_name, name) for name in lake.datasets]
        events: list[dg.AssetObservation | dg.AssetCheckEvaluation] = [
            dg.AssetObservation(asset_key=k, metadata=metadata) for k in keys
        ]
        if result.reconciled:  # the check's verdict changes only with a reconciliation
            verdict = events_verdict(summary)
            events += [check_evaluation(verdict, asset_key=k, check_name=EVENTS_CHECK) for k in keys]
        return dg.SensorResult(skip_reason=result.line(), asset_events=events)

    return receive

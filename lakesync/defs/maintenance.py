"""A maintenance job and schedule per table: OPTIMIZE, then VACUUM, reporting files before/after."""

from typing import Any

import dagster as dg

from lakesync.commit.maintenance import maintain_table
from lakesync.config import LakesyncConfig
from lakesync.defs.assets import TABLE_TAG
from lakesync.defs.metadata import table_key


def maintenance_job_name(table: str) -> str:
    return f"maintain_{table}"


def maintenance_definitions(
    config: LakesyncConfig, table: str
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    settings = config.tables[table].maintenance
    steps = " then ".join(s for s, on in (("OPTIMIZE", settings.optimize), ("VACUUM", settings.vacuum)) if on)

    @dg.op(name=f"maintain_{table}_op", required_resource_keys={"lakehouse"})
    def maintain(context: dg.OpExecutionContext) -> None:
        report = maintain_table(context.resources.lakehouse.get(), table, settings)
        if report is None:
            context.log.info("%s has no data yet: nothing to maintain", table)
            return
        metadata: dict[str, Any] = {
            "files_before": report.before.files,
            "files_after": report.after.files,
            "bytes_before": report.before.bytes,
            "bytes_after": report.after.bytes,
            "files_compacted": report.files_compacted,
            "files_written": report.files_written,
            "files_vacuumed": report.files_vacuumed,
            "retention_hours": report.retention_hours,
            "delta_version_before": report.version_before,
            "delta_version": report.version_after,
        }
        context.log.info(
            "%s: %d files (%d bytes) -> %d files (%d bytes); %d vacuumed",
            table,
            report.before.files,
            report.before.bytes,
            report.after.files,
            report.after.bytes,
            report.files_vacuumed,
        )
        context.log_event(dg.AssetObservation(asset_key=table_key(table), metadata=metadata))

    @dg.job(
        name=maintenance_job_name(table),
        tags={TABLE_TAG: table},  # one run per table at a time: never beside its ingestion
        description=f"{steps} on `{table}` (retention {settings.retention / 3600:g} h)",
    )
    def job() -> None:
        maintain()

    schedule = dg.ScheduleDefinition(
        name=f"maintain_{table}_schedule",
        job=job,
        cron_schedule=settings.cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if settings.enabled
        else dg.DefaultScheduleStatus.STOPPED,
        description=f"{steps} on `{table}` at `{settings.cron}` (UTC)",
    )
    return job, schedule

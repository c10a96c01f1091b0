"""Time-based runs: the new-events sensor keeps the marts fresh; a nightly run is the safety net when the
sensor is off (it lands whatever arrived and rebuilds only when something did)."""

import dagster as dg

nightly_refresh = dg.ScheduleDefinition(
    name="nightly_refresh",
    target=dg.AssetSelection.all(),
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Materialize the whole graph at 02:00 UTC (incremental: only new events are read).",
)

schedules = [nightly_refresh]

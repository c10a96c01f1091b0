"""Time-based runs: the forecasts' daily cadence (the marts follow new events through new_events_sensor)."""

import dagster as dg

from pipelines.jobs import forecast_job

daily_forecast_schedule = dg.ScheduleDefinition(
    name="daily_forecast_schedule",
    job=forecast_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Refits forecasts, accuracy and reorder suggestions at 02:30 UTC, after the day's last "
    "sales have landed, and publishes them in a snapshot.",
)

schedules = [daily_forecast_schedule]

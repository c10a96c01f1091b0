"""Sensors: start a marts run when the ops store holds events the warehouse has not landed yet; alert
when a run fails."""

from typing import Any

import dagster as dg
import duckdb

from chainsync.alerts import alert_payload, send_alert
from chainsync.ops_store.events import max_seq
from chainsync.run_status import record_run_failure
from chainsync.settings import get_settings
from pipelines.defs.dbt.assets import project_changed
from pipelines.graph import asset_graph
from pipelines.jobs import PLANNED_TAG, marts_job, marts_selection, pending_sources
from pipelines.resources import DbtCli, OpsStoreResource, PipelineConfig, Warehouse


def _landed_seq(warehouse: Warehouse) -> int | None:
    """The warehouse's highest landed seq, or None when it cannot be read now (a run holds the file)."""
    try:
        with duckdb.connect(warehouse.database, read_only=True) as con:
            return int(con.execute("select coalesce(max(last_seq), 0) from meta.watermarks").fetchone()[0])  # type: ignore[index]
    except duckdb.Error:
        return None


def _asset_graph(context: dg.SensorEvaluationContext) -> Any:
    if context.repository_def is not None:
        return context.repository_def.asset_graph
    return asset_graph()  # a sensor evaluated outside a code location


@dg.sensor(
    job=marts_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="When the ops store's max seq passes the warehouse watermark, requests a marts_job run of "
    "the assets downstream of the sources with new data (events, catalog, request log); forecasts are "
    "left to daily_forecast_schedule.",
)
def new_events_sensor(
    context: dg.SensorEvaluationContext, ops_store: OpsStoreResource, warehouse: Warehouse, dbt: DbtCli
) -> dg.SensorResult | dg.SkipReason:
    engine = ops_store.engine()
    newest = max_seq(engine)
    landed = _landed_seq(warehouse)
    requested = int(context.cursor or 0)
    if landed is None:
        return dg.SkipReason("warehouse busy (a run is in progress)")
    if newest <= max(landed, requested):
        return dg.SkipReason(f"no new events (ops store seq {newest}, landed {landed})")
    try:
        with duckdb.connect(warehouse.database, read_only=True) as con:
            selection = marts_selection(
                _asset_graph(context),
                pending_sources(con, engine),
                everything=project_changed(con, dbt.dbt_vars),
            )
    except duckdb.Error:
        return dg.SkipReason("warehouse busy (a run is in progress)")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"seq-{newest}", asset_selection=selection, tags={PLANNED_TAG: "true"})
        ],
        cursor=str(newest),
    )


def failure_report(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """What a failed run tells an operator: run id, job, the failure message, the failed steps."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        messages: list[str] = []
        while error is not None and len(messages) < 5:  # Dagster's wrapper first, then the causes
            messages.append(error.message.strip())
            error = error.cause
        steps.append({"step": event.step_key, "error": " <- ".join(messages)[:1000]})
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "message": (context.failure_event.message or "")[:2000],
        "failed_steps": steps,
    }


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="On a failed run: records it beside the serving snapshots (the API's health reports it) "
    "and POSTs a JSON alert to MONITORING_ALERT_WEBHOOK, retried with backoff.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, pipeline_config: PipelineConfig) -> None:
    report = failure_report(context)
    record_run_failure(pipeline_config.serving_dir_path, report)
    # Read at evaluation time, not from resource config: a webhook URL often holds a token, and resource
    # config is shown in the Dagster UI.
    webhook = get_settings().monitoring_alert_webhook
    payload = alert_payload(
        "pipeline_run_failure", f"Dagster run {report['run_id'][:8]} of {report['job']} failed", **report
    )
    if webhook and not send_alert(webhook, payload):
        context.log.warning("run failure alert could not be delivered to the webhook")


sensors = [new_events_sensor, run_failure_alert_sensor]

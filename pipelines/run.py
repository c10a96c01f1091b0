"""Materialize the asset graph in-process (the `chainsync pipeline run` command and the tests)."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from chainsync.settings import Settings


@dataclass
class PipelineResult:
    """What a run did: success, which assets materialized or were skipped, failed checks, seconds taken."""

    success: bool
    run_id: str
    seconds: float
    materialized: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)  # Dagster step key -> wall seconds


class _QuietSkippedChecks(logging.Filter):
    """Drop Dagster's note that a skipped dbt step emitted no check results: on a run with nothing new
    the whole dbt build is skipped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Blocking asset check")


_ACTIVE_EXECUTION_LOGGER = logging.getLogger("dagster._core.execution.plan.active")
if not any(isinstance(f, _QuietSkippedChecks) for f in _ACTIVE_EXECUTION_LOGGER.filters):
    _ACTIVE_EXECUTION_LOGGER.addFilter(_QuietSkippedChecks())


def _instance():  # type: ignore[no-untyped-def]
    """The DAGSTER_HOME instance when one is configured (runs then show in the UI), else an ephemeral one."""
    import dagster as dg

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()


def run_pipeline(
    settings: Settings,
    selection: str | None = None,
    console: Console | None = None,
    log_level: str = "WARNING",
    job: str | None = None,
) -> PipelineResult:
    """Materialize ``selection`` (Dagster asset selection syntax, e.g. ``key:raw_sales_events+`` or
    ``group:ingest``, or a comma-separated list of those; default everything) for ``settings``.

    ``job``: None runs the whole graph; ``"marts_job"`` without a ``selection`` runs what
    ``new_events_sensor`` would (only the assets downstream of sources with new data, nothing at all
    when nothing is new); ``"forecast_job"`` the daily forecast cadence.

    Incremental: only events above the warehouse watermark are read, and when nothing changed the dbt build
    and everything after it are skipped. Dagster's own log lines below ``log_level`` are hidden; ``console``
    gets a per-asset summary."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
    import dagster as dg

    from pipelines.definitions import build_definitions

    started = time.perf_counter()
    defs = build_definitions(settings)
    job_def = defs.resolve_job_def(job) if job else defs.resolve_implicit_global_asset_job_def()
    asset_keys = None
    tags: dict[str, str] = {}
    if selection:
        # A comma-separated list is a union, as in `dagster asset materialize --select a,b`.
        parts = [dg.AssetSelection.from_string(part.strip()) for part in selection.split(",") if part.strip()]
        union = parts[0]
        for part in parts[1:]:
            union = union | part
        asset_keys = list(union.resolve(defs.resolve_asset_graph()))
    elif job == "marts_job":
        asset_keys = _planned_marts(settings, defs)
        if not asset_keys:
            summary = PipelineResult(success=True, run_id="", seconds=time.perf_counter() - started)
            if console is not None:
                console.print(f"nothing new to land: no run ({summary.seconds:.1f}s)")
            return summary
        from pipelines.jobs import PLANNED_TAG

        tags[PLANNED_TAG] = "true"
    # dagster-dbt echoes dbt's log to stdout; keep it in a file so the console shows the summary only.
    log_dir = settings.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with _instance() as instance, open(log_dir / "pipeline.log", "a") as log_file, redirect_stdout(log_file):
        result = job_def.execute_in_process(
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            instance=instance,
            asset_selection=asset_keys,
            raise_on_error=False,
            tags=tags or None,
        )
        summary = _summarize(result, time.perf_counter() - started)
        summary.step_seconds = _step_seconds(instance.all_logs(result.run_id))
    if console is not None:
        _print_summary(console, summary, result)
    return summary


def _planned_marts(settings: Settings, defs: Any) -> list[Any]:
    """The marts-cadence assets downstream of the sources with something new (see ``pipelines.jobs``)."""
    import duckdb

    from chainsync.ops_store import make_engine
    from pipelines.defs.dbt.assets import project_changed
    from pipelines.jobs import marts_selection, pending_sources
    from pipelines.resources import dbt_vars

    engine = make_engine(settings.ops_store, read_only=True)
    try:
        with duckdb.connect(str(settings.warehouse)) as con:
            return marts_selection(
                defs.resolve_asset_graph(),
                pending_sources(con, engine),
                everything=project_changed(con, dbt_vars(settings)),
            )
    finally:
        engine.dispose()


def _summarize(result: Any, seconds: float) -> PipelineResult:
    import dagster as dg

    summary = PipelineResult(success=result.success, run_id=result.run_id, seconds=seconds)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            key = mat.asset_key.to_user_string()
            summary.materialized.append(key)
            summary.metadata[key] = {k: v.value for k, v in mat.metadata.items()}
        elif event.event_type == dg.DagsterEventType.STEP_SKIPPED:
            summary.skipped.append(event.step_key or "")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                summary.failed_checks.append(evaluation.asset_check_key.to_user_string())
    return summary


def _step_seconds(logs: Any) -> dict[str, float]:
    """Wall seconds of each step that started and succeeded, from the run's event log."""
    import dagster as dg

    step_times: dict[str, list[float]] = defaultdict(list)
    for entry in logs:
        event = entry.dagster_event
        if (
            event
            and event.step_key
            and event.event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)
        ):
            step_times[event.step_key].append(entry.timestamp)
    return {step: round(t[-1] - t[0], 2) for step, t in step_times.items() if len(t) == 2}


def _print_summary(console: Console, summary: PipelineResult, result: Any) -> None:
    import dagster as dg
    from rich.table import Table

    table = Table(title=f"pipeline run {summary.run_id[:8]}", show_lines=False)
    table.add_column("asset")
    table.add_column("status")
    table.add_column("details", overflow="fold")
    shown = {
        "rows",
        "events_landed",
        "sale_lines_landed",
        "sale_lines_quarantined",
        "series",
        "anomalies",
        "version",
    }
    for key in summary.materialized:
        details = ", ".join(f"{k}={v}" for k, v in summary.metadata[key].items() if k in shown)
        table.add_row(key, "[green]materialized[/]", details)
    for step in summary.skipped:
        table.add_row(step, "[yellow]skipped[/]", "nothing new upstream")
    for check_key in summary.failed_checks:
        table.add_row(check_key, "[red]check failed[/]", "")
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            table.add_row(
                event.step_key or "", "[red]failed[/]", str(event.event_specific_data.error.message)[:300]
            )
    console.print(table)
    timings = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in summary.step_seconds.items())
    if timings:
        console.print(f"[dim]steps: {timings}[/]")
    colour = "green" if summary.success else "red"
    console.print(f"[{colour}]{'succeeded' if summary.success else 'FAILED'}[/] in {summary.seconds:.1f}s")

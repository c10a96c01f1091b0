"""The business_insights asset (analytics.business_insights)."""

import dagster as dg

from pipelines.defs.forecasting.demand import empty_forecast
from pipelines.defs.insights.insights import (
    build_insights,
    empty_insights,
    flagged_sql,
    forecast_window_sql,
    sales_window_sql,
)
from pipelines.defs.inventory.reorder import empty_reorder
from pipelines.resources import PipelineConfig, Warehouse, frame_of, tables_present


@dg.asset(
    group_name="insights",
    kinds={"duckdb"},
    deps=[
        dg.AssetKey(k)
        for k in (
            "fct_sales_daily",
            "demand_forecast",
            "reorder_suggestions",
            "sales_anomalies",
            "cashier_anomalies",
            "security_anomalies",
            "inventory_anomalies",
        )
    ],
    description="Ranked revenue, inventory, operations and customer-behaviour recommendations with evidence "
    "and an action; priority = impact x confidence x urgency (analytics.business_insights).",
)
def business_insights(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    if not pipeline_config.ai_analytics_enabled:
        warehouse.replace_table("analytics.business_insights", empty_insights())
        return dg.MaterializeResult(metadata={"rows": 0, "disabled": True})
    # One connection for every read; only the rows the rules read (insights.py: the windows, the flags).
    with warehouse.get_connection() as con:
        present = tables_present(con)
        # Before the first daily forecast run (its own cadence) there is nothing to recommend from yet.
        forecast, reorder = "analytics.demand_forecast", "analytics.reorder_suggestions"
        frame = build_insights(
            sales=frame_of(con, sales_window_sql("marts.fct_sales_daily")),
            forecast=frame_of(con, forecast_window_sql(forecast))
            if forecast in present
            else empty_forecast(),
            reorder=frame_of(con, f"select * from {reorder}") if reorder in present else empty_reorder(),
            store_days=frame_of(con, "select * from analytics.sales_anomalies"),
            cashiers=frame_of(con, flagged_sql("analytics.cashier_anomalies")),
            security=frame_of(con, flagged_sql("analytics.security_anomalies")),
            shrinkage=frame_of(con, flagged_sql("analytics.inventory_anomalies")),
        )
    warehouse.replace_table("analytics.business_insights", frame)
    counts = dict(frame.group_by("category").len().iter_rows()) if frame.height else {}
    return dg.MaterializeResult(metadata={"rows": frame.height, **{f"n_{k}": v for k, v in counts.items()}})


assets = [business_insights]

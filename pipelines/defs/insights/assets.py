"""The business_insights asset (analytics.business_insights)."""

import dagster as dg

from pipelines.defs.forecasting.demand import empty_forecast
from pipelines.defs.insights.insights import (
    build_insights,
    empty_insights,
    forecast_window_sql,
    sales_window_sql,
)
from pipelines.defs.inventory.reorder import empty_reorder
from pipelines.resources import PipelineConfig, Warehouse


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
    read = warehouse.read_frame
    frame = build_insights(
        # Only the days the rules read, not the whole history and horizon.
        sales=read(sales_window_sql("marts.fct_sales_daily")),
        # Before the first daily forecast run (its own cadence) there is nothing to recommend from yet.
        forecast=warehouse.read_table_or(
            "analytics.demand_forecast", empty_forecast(), forecast_window_sql("analytics.demand_forecast")
        ),
        reorder=warehouse.read_table_or("analytics.reorder_suggestions", empty_reorder()),
        store_days=read("select * from analytics.sales_anomalies"),
        cashiers=read("select * from analytics.cashier_anomalies"),
        security=read("select * from analytics.security_anomalies"),
        shrinkage=read("select * from analytics.inventory_anomalies"),
    )
    warehouse.replace_table("analytics.business_insights", frame)
    counts = dict(frame.group_by("category").len().iter_rows()) if frame.height else {}
    return dg.MaterializeResult(metadata={"rows": frame.height, **{f"n_{k}": v for k, v in counts.items()}})


assets = [business_insights]

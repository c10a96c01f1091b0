"""The demand forecast asset: statsforecast over the daily sales mart, stored in analytics.demand_forecast."""

import dagster as dg

from pipelines.defs.forecasting.demand import empty_forecast, forecast_demand, history_sql
from pipelines.resources import PipelineConfig, Warehouse


@dg.asset(
    group_name="forecasting",
    kinds={"statsforecast", "duckdb"},
    deps=[dg.AssetKey("fct_sales_daily")],
    description="Daily units forecast per store x product for the next forecast_horizon_days, with 80/95 % "
    "intervals (analytics.demand_forecast). Empty when AI analytics are disabled.",
)
def demand_forecast(
    context: dg.AssetExecutionContext, warehouse: Warehouse, pipeline_config: PipelineConfig
) -> dg.MaterializeResult:
    if not pipeline_config.ai_analytics_enabled:
        warehouse.replace_table("analytics.demand_forecast", empty_forecast())
        return dg.MaterializeResult(metadata={"rows": 0, "disabled": True})
    history = warehouse.read_frame(history_sql())
    series = history.select("store_id", "product_id").n_unique() if history.height else 0
    context.log.info(f"forecasting {series} series, {history.height} history rows")
    forecast = forecast_demand(history, horizon=pipeline_config.forecast_horizon_days)
    warehouse.replace_table("analytics.demand_forecast", forecast)
    return dg.MaterializeResult(
        metadata={
            "rows": forecast.height,
            "series": series,
            "horizon_days": pipeline_config.forecast_horizon_days,
            "cutoff": str(forecast["cutoff"].max()) if forecast.height else "",
            "model": str(forecast["model"].first()) if forecast.height else "",
        }
    )


assets = [demand_forecast]

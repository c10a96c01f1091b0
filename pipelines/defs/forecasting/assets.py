"""Forecasting assets: demand_forecast (per store x product), forecast_accuracy (hold-out scores of the
base forecasts) and demand_forecast_totals (store / category / chain totals), in the analytics schema. The
series and totals form one coherent hierarchy, every total the sum of its published series: MinTrace-
reconciled by default, or the base series and their bottom-up sums, by FORECAST_RECONCILIATION."""

import dagster as dg

from pipelines.defs.forecasting.demand import (
    empty_accuracy,
    empty_forecast,
    empty_totals,
    forecast_accuracy,
    forecast_demand,
    history_sql,
    reconcile_forecast,
)
from pipelines.resources import PipelineConfig, Warehouse

CATEGORIES_SQL = "select product_id, category from marts.dim_product"


@dg.multi_asset(
    group_name="forecasting",
    can_subset=True,  # the three tables are always computed together; only the selected ones are reported
    specs=[
        dg.AssetSpec(
            "forecast_accuracy",
            kinds={"statsforecast", "duckdb"},
            deps=[dg.AssetKey("fct_sales_daily"), dg.AssetKey("dim_product")],
            description="Hold-out (last 28 days) MASE, WAPE, bias and 80/95 % coverage of the forecasting "
            "method's base (unreconciled) forecasts per series, store, category and chain "
            "(analytics.forecast_accuracy).",
        ),
        dg.AssetSpec(
            "demand_forecast",
            kinds={"statsforecast", "duckdb"},
            deps=[dg.AssetKey("fct_sales_daily"), dg.AssetKey("dim_product")],
            description="Daily units forecast per store x product for the next forecast_horizon_days, with "
            "80/95 % conformal intervals, the model chosen, the demand pattern and a confidence score "
            "(analytics.demand_forecast): MinTrace-reconciled with the store, category and chain totals by "
            "default (bounds moved with the point, clipped at 0), the base forecasts with "
            "FORECAST_RECONCILIATION=bottom_up. Empty when AI analytics are disabled.",
        ),
        dg.AssetSpec(
            "demand_forecast_totals",
            kinds={"duckdb"},
            deps=[dg.AssetKey("fct_sales_daily"), dg.AssetKey("dim_product")],
            description="Coherent forecast totals per store, category and chain, each exactly the sum of "
            "its published demand_forecast series: MinTrace (wls_struct) reconciliation of each total's own "
            "forecast with the series' by default, bounds its own conformal half-widths; bottom-up sums, "
            "bounds assuming independent errors, with FORECAST_RECONCILIATION=bottom_up "
            "(analytics.demand_forecast_totals).",
        ),
    ],
)
def demand_forecasts(
    context: dg.AssetExecutionContext, warehouse: Warehouse, pipeline_config: PipelineConfig
):  # type: ignore[no-untyped-def]
    if not pipeline_config.ai_analytics_enabled:
        warehouse.replace_table("analytics.forecast_accuracy", empty_accuracy())
        warehouse.replace_table("analytics.demand_forecast", empty_forecast())
        warehouse.replace_table("analytics.demand_forecast_totals", empty_totals())
        for key in ("forecast_accuracy", "demand_forecast", "demand_forecast_totals"):
            if dg.AssetKey(key) in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key, metadata={"rows": 0, "disabled": True})
        return
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    history = warehouse.read_frame(history_sql())
    categories = warehouse.read_frame(CATEGORIES_SQL)
    series = history.select("store_id", "product_id").n_unique() if history.height else 0
    context.log.info(f"forecasting {series} series, {history.height} history rows")

    holidays = pipeline_config.forecast_holiday_country.strip() or None
    accuracy = forecast_accuracy(history, categories, holidays=holidays, scheduler=pipeline_config.scheduler)
    warehouse.replace_table("analytics.forecast_accuracy", accuracy)
    chain = accuracy.filter(accuracy["level"] == "chain")
    if "forecast_accuracy" in selected:
        yield dg.MaterializeResult(
            asset_key="forecast_accuracy",
            metadata={
                "rows": accuracy.height,
                **(
                    {k: float(chain[k][0]) for k in ("mase", "wape", "bias", "coverage_80", "coverage_95")}
                    if chain.height and chain["mase"][0] is not None
                    else {}
                ),
            },
        )

    base = forecast_demand(
        history,
        horizon=pipeline_config.forecast_horizon_days,
        accuracy=accuracy,
        holidays=holidays,
        scheduler=pipeline_config.scheduler,
    )
    method = pipeline_config.forecast_reconciliation
    published = reconcile_forecast(base, categories, history=history, method=method, holidays=holidays)
    forecast = published.series
    warehouse.replace_table("analytics.demand_forecast", forecast)
    if "demand_forecast" in selected:
        yield dg.MaterializeResult(
            asset_key="demand_forecast",
            metadata={
                "rows": forecast.height,
                "series": series,
                "horizon_days": pipeline_config.forecast_horizon_days,
                "cutoff": str(forecast["cutoff"].max()) if forecast.height else "",
                "reconciliation": method,
                "holidays": holidays or "",
                "models": ", ".join(
                    f"{m} {n}"
                    for m, n in forecast.group_by("model").len().sort("len", descending=True).iter_rows()
                )
                if forecast.height
                else "",
            },
        )

    warehouse.replace_table("analytics.demand_forecast_totals", published.totals)
    if "demand_forecast_totals" in selected:
        yield dg.MaterializeResult(
            asset_key="demand_forecast_totals",
            metadata={"rows": published.totals.height, "reconciliation": method},
        )


assets = [demand_forecasts]

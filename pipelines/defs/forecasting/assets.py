"""Forecasting assets: demand_forecast (per store x product), forecast_accuracy (hold-out scores of the
base forecasts) and demand_forecast_totals (store / category / chain totals), in the analytics schema. The
series and totals form one coherent hierarchy, every total the sum of its published series: MinTrace-
reconciled by default, or the base series and their bottom-up sums, by FORECAST_RECONCILIATION."""

from pathlib import Path

import dagster as dg

from pipelines.defs.forecasting.demand import empty_accuracy, empty_forecast, empty_totals
from pipelines.defs.forecasting.partitioned import processes_for, run_forecasts
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
    holidays = pipeline_config.forecast_holiday_country.strip() or None
    method = pipeline_config.forecast_reconciliation
    # Partition by partition, each partition's forecasts written out before the next (partitioned.py): the
    # process never holds the whole history nor every series' forecasts.
    with warehouse.get_connection() as con:
        run = run_forecasts(
            con,
            Path(warehouse.database).resolve().parent / "forecast_work",
            horizon=pipeline_config.forecast_horizon_days,
            holidays=holidays,
            method=method,
            scheduler=pipeline_config.scheduler,
            categories_sql=CATEGORIES_SQL,
            processes=processes_for(pipeline_config.forecast_processes),
        )
    context.log.info(f"forecast {run.series} series: {run.forecast_rows} rows")
    accuracy = run.accuracy
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
    if "demand_forecast" in selected:
        yield dg.MaterializeResult(
            asset_key="demand_forecast",
            metadata={
                "rows": run.forecast_rows,
                "series": run.series,
                "horizon_days": pipeline_config.forecast_horizon_days,
                "cutoff": str(run.cutoff) if run.forecast_rows else "",
                "reconciliation": method,
                "holidays": holidays or "",
                "models": ", ".join(f"{m} {n}" for m, n in run.models),
            },
        )
    if "demand_forecast_totals" in selected:
        yield dg.MaterializeResult(
            asset_key="demand_forecast_totals",
            metadata={"rows": run.totals_rows, "reconciliation": method},
        )


assets = [demand_forecasts]

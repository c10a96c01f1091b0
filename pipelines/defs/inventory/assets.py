"""The reorder_suggestions asset (analytics.reorder_suggestions)."""

import dagster as dg

from pipelines.defs.inventory.reorder import empty_reorder
from pipelines.defs.inventory.reorder import reorder_suggestions as suggest
from pipelines.resources import PipelineConfig, Warehouse


@dg.asset(
    group_name="inventory",
    kinds={"duckdb"},
    deps=[dg.AssetKey("demand_forecast"), dg.AssetKey("fct_stock_levels"), dg.AssetKey("dim_product")],
    description="Days of cover, reorder point (lead-time demand + service-level safety stock from the "
    "forecast intervals) and reorder quantity per store x product (analytics.reorder_suggestions).",
)
def reorder_suggestions(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    if not pipeline_config.ai_analytics_enabled:
        warehouse.replace_table("analytics.reorder_suggestions", empty_reorder())
        return dg.MaterializeResult(metadata={"rows": 0, "disabled": True})
    forecast = warehouse.read_frame("select * from analytics.demand_forecast")
    stock = warehouse.read_frame("select store_id, product_id, on_hand_units from marts.fct_stock_levels")
    products = warehouse.read_frame("select product_id, category, lead_time_days from marts.dim_product")
    frame = suggest(forecast, stock, products)
    warehouse.replace_table("analytics.reorder_suggestions", frame)
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "needs_reorder": int(frame["needs_reorder"].sum()) if frame.height else 0,
            "stockout_risk": int(frame["stockout_risk"].sum()) if frame.height else 0,
        }
    )


assets = [reorder_suggestions]

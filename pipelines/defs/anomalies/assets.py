"""The sales anomalies asset: ECOD scores per store-day, stored in analytics.sales_anomalies."""

import dagster as dg

from pipelines.defs.anomalies.detectors import (
    CASHIER_FEATURES_SQL,
    SECURITY_FEATURES_SQL,
    SHRINKAGE_FEATURES_SQL,
    score_cashier_shifts,
    score_security,
    score_shrinkage,
)
from pipelines.defs.anomalies.scoring import FEATURES_SQL, empty_anomalies, score_sales_anomalies
from pipelines.resources import PipelineConfig, Warehouse


@dg.asset(
    group_name="anomalies",
    kinds={"pyod", "duckdb"},
    deps=[dg.AssetKey("int_sale_lines_localized"), dg.AssetKey("fct_sales_daily")],
    description="Store-day sales anomalies (net revenue, transactions, basket, refund/void/discount rates) "
    "scored by ECOD; threshold = anomaly_threshold_quantile of the raw scores (analytics.sales_anomalies).",
)
def sales_anomalies(
    context: dg.AssetExecutionContext, warehouse: Warehouse, pipeline_config: PipelineConfig
) -> dg.MaterializeResult:
    if not pipeline_config.ai_analytics_enabled:
        warehouse.replace_table("analytics.sales_anomalies", empty_anomalies())
        return dg.MaterializeResult(metadata={"rows": 0, "disabled": True})
    features = warehouse.read_frame(FEATURES_SQL)
    scored = score_sales_anomalies(features, threshold_quantile=pipeline_config.anomaly_threshold_quantile)
    warehouse.replace_table("analytics.sales_anomalies", scored)
    flagged = int(scored["is_anomaly"].sum()) if scored.height else 0
    context.log.info(f"scored {scored.height} store-days, {flagged} anomalies")
    return dg.MaterializeResult(
        metadata={
            "rows": scored.height,
            "anomalies": flagged,
            "threshold_quantile": pipeline_config.anomaly_threshold_quantile,
        }
    )


@dg.asset(
    group_name="anomalies",
    kinds={"pyod", "duckdb"},
    deps=[dg.AssetKey("int_sale_lines_localized")],
    description="Cashier-shift anomalies (refunds, refund value, voids against colleagues at the same store; "
    "robust z-scores, ECOD score kept) — analytics.cashier_anomalies.",
)
def cashier_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    features = warehouse.read_frame(CASHIER_FEATURES_SQL)
    if not pipeline_config.ai_analytics_enabled:
        features = features.clear()
    scored = score_cashier_shifts(features)
    warehouse.replace_table("analytics.cashier_anomalies", scored)
    return dg.MaterializeResult(
        metadata={"rows": scored.height, "anomalies": int(scored["is_anomaly"].sum()) if scored.height else 0}
    )


@dg.asset(
    group_name="anomalies",
    kinds={"pyod", "duckdb"},
    deps=[dg.AssetKey("fct_security_events")],
    description="Security anomalies per source IP and day (failures, usernames tried, velocity; robust "
    "z-scores, ECOD score kept) — analytics.security_anomalies.",
)
def security_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    features = warehouse.read_frame(SECURITY_FEATURES_SQL)
    if not pipeline_config.ai_analytics_enabled:
        features = features.clear()
    scored = score_security(features)
    warehouse.replace_table("analytics.security_anomalies", scored)
    return dg.MaterializeResult(
        metadata={"rows": scored.height, "anomalies": int(scored["is_anomaly"].sum()) if scored.height else 0}
    )


@dg.asset(
    group_name="anomalies",
    kinds={"duckdb"},
    deps=[dg.AssetKey("fct_stock_levels")],
    description="Inventory shrinkage: shelf counts far below the level the books expect (previous count + "
    "recorded movements - units sold) — analytics.inventory_anomalies.",
)
def inventory_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    counts = warehouse.read_frame(SHRINKAGE_FEATURES_SQL)
    if not pipeline_config.ai_analytics_enabled:
        counts = counts.clear()
    scored = score_shrinkage(counts)
    warehouse.replace_table("analytics.inventory_anomalies", scored)
    return dg.MaterializeResult(
        metadata={"rows": scored.height, "anomalies": int(scored["is_anomaly"].sum()) if scored.height else 0}
    )


assets = [sales_anomalies, cashier_anomalies, security_anomalies, inventory_anomalies]

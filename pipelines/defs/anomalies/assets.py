"""Anomaly assets: store-day sales, cashier shifts, source IPs and shelf counts, each scored into an
``analytics.*_anomalies`` table with raw scores kept so thresholds can change without refitting."""

from collections.abc import Callable

import dagster as dg
import polars as pl

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


def _score_into(
    warehouse: Warehouse,
    pipeline_config: PipelineConfig,
    table: str,
    features_sql: str,
    score: Callable[[pl.DataFrame], pl.DataFrame],
) -> dg.MaterializeResult:
    """Read the features, score them and replace ``table``. With AI analytics off the features query runs
    with no rows, so the table keeps its columns and nothing is computed."""
    sql = features_sql if pipeline_config.ai_analytics_enabled else f"select * from ({features_sql}) limit 0"
    scored = score(warehouse.read_frame(sql))
    warehouse.replace_table(table, scored)
    flagged = int(scored["is_anomaly"].sum()) if scored.height else 0
    return dg.MaterializeResult(metadata={"rows": scored.height, "anomalies": flagged})


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
    return _score_into(
        warehouse, pipeline_config, "analytics.cashier_anomalies", CASHIER_FEATURES_SQL, score_cashier_shifts
    )


@dg.asset(
    group_name="anomalies",
    kinds={"pyod", "duckdb"},
    deps=[dg.AssetKey("fct_security_events")],
    description="Security anomalies per source IP and day (failures, usernames tried, velocity; robust "
    "z-scores, ECOD score kept) — analytics.security_anomalies.",
)
def security_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    return _score_into(
        warehouse, pipeline_config, "analytics.security_anomalies", SECURITY_FEATURES_SQL, score_security
    )


@dg.asset(
    group_name="anomalies",
    kinds={"duckdb"},
    deps=[dg.AssetKey("fct_stock_levels")],
    description="Inventory shrinkage: shelf counts far below the level the books expect (previous count + "
    "recorded movements - units sold) — analytics.inventory_anomalies.",
)
def inventory_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    return _score_into(
        warehouse, pipeline_config, "analytics.inventory_anomalies", SHRINKAGE_FEATURES_SQL, score_shrinkage
    )


assets = [sales_anomalies, cashier_anomalies, security_anomalies, inventory_anomalies]

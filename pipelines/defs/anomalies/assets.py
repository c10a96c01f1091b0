"""Anomaly assets: store-day sales, cashier shifts, source IPs and shelf counts, each scored into an
``analytics.*_anomalies`` table with raw scores kept so thresholds can change without refitting."""

import hashlib
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from chainsync.parallel import map_partitions
from pipelines.defs.anomalies import detectors
from pipelines.defs.anomalies.detectors import (
    CASHIER_FEATURES_SQL,
    SECURITY_FEATURES_SQL,
    SHRINKAGE_FEATURES_SQL,
    score_cashier_shifts,
    score_security,
    score_shrinkage,
)
from pipelines.defs.anomalies.features import (
    SHRINKAGE_TABLE,
    FeatureTable,
    read_features,
    refresh_features,
    refresh_shrinkage_features,
)
from pipelines.defs.anomalies.scoring import (
    DETECTOR_FEATURES,
    DETECTOR_RESIDUAL,
    FEATURES_SQL,
    STORE_DAY_CONFIG,
    SalesThresholds,
    empty_anomalies,
    score_sales_panel,
)
from pipelines.defs.ingest.warehouse import build_fingerprint, record_build
from pipelines.resources import UNCHANGED, PipelineConfig, Warehouse, frame_of


def sales_thresholds(pipeline_config: PipelineConfig) -> SalesThresholds:
    """The sales decision knobs from the settings (ANOMALY_THRESHOLD_QUANTILE, ANOMALY_Z_THRESHOLD,
    ANOMALY_DRIVER_Z, ANOMALY_RESIDUAL_THRESHOLD, ANOMALY_RESIDUAL_MIN_Z)."""
    return SalesThresholds(
        score_quantile=pipeline_config.anomaly_threshold_quantile,
        z=pipeline_config.anomaly_z_threshold,
        driver_z=pipeline_config.anomaly_driver_z,
        residual=pipeline_config.anomaly_residual_threshold,
        residual_min_z=pipeline_config.anomaly_residual_min_z,
    )


# meta.build_state stage of the inventory scores: the knobs and the detectors' code they were last computed
# with.
SHRINKAGE_SCORES_STAGE = "scores:analytics.inventory_anomalies"
DETECTORS_CODE = hashlib.sha256(Path(detectors.__file__).read_bytes()).hexdigest()[:12]

SALES_FEATURES = FeatureTable("analytics.sales_anomaly_features", FEATURES_SQL, ("store_id", "sale_date"))
CASHIER_FEATURES = FeatureTable(
    "analytics.cashier_anomaly_features", CASHIER_FEATURES_SQL, ("store_id", "cashier_id", "sale_date")
)


def _stored_features(warehouse: Warehouse, features: FeatureTable) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The features table refreshed for the store-days new lines touched, read in key order."""
    with warehouse.get_connection() as con:
        refresh = refresh_features(con, features)
        return read_features(con, features), refresh.metadata()


def _on_cluster(
    score: Callable[[pl.DataFrame], pl.DataFrame], features: pl.DataFrame, scheduler: str | None
) -> pl.DataFrame:
    """``score(features)`` on the Dask cluster at ``scheduler`` (one task: each method pools the whole
    chain, so its panel is not split), or in-process when None."""
    return map_partitions(score, [features], scheduler)[0]


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
    description="Store-day sales anomalies (analytics.sales_anomalies), one row per store-day with every "
    "raw score: a pyod ensemble (ECOD + IForest, rank average) over robust z-scores of net revenue, "
    "transactions, basket, refund/void/discount rates, and the day's units and revenue judged by "
    "chainsync.anomalies (the method of `chainsync detect`: same weekdays around it, the chain's shock that "
    "day, the same day in other years); flagged by the ANOMALY_* thresholds, with the detectors that "
    "fired, drivers, severity and the expected range.",
)
def sales_anomalies(
    context: dg.AssetExecutionContext, warehouse: Warehouse, pipeline_config: PipelineConfig
) -> dg.MaterializeResult:
    if not pipeline_config.ai_analytics_enabled:
        warehouse.replace_table("analytics.sales_anomalies", empty_anomalies())
        return dg.MaterializeResult(metadata={"rows": 0, "disabled": True})
    features, refresh = _stored_features(warehouse, SALES_FEATURES)
    config = replace(STORE_DAY_CONFIG, holidays=pipeline_config.forecast_holiday_country or None)
    thresholds = sales_thresholds(pipeline_config)
    score = partial(score_sales_panel, config=config, thresholds=thresholds)
    scored = _on_cluster(score, features, pipeline_config.scheduler)
    warehouse.replace_table("analytics.sales_anomalies", scored)
    flagged = scored.filter(pl.col("is_anomaly"))
    by_detector = {
        name: int(flagged["detectors"].str.contains(name).sum())
        for name in (DETECTOR_FEATURES, DETECTOR_RESIDUAL)
    }
    context.log.info(f"scored {scored.height} store-days, {flagged.height} anomalies {by_detector}")
    return dg.MaterializeResult(
        metadata={
            "rows": scored.height,
            "anomalies": flagged.height,
            **refresh,
            "retrospective_store_days": int(scored["units_residual"].is_not_null().sum())
            if scored.height
            else 0,
            **{f"flagged_by_{name}": n for name, n in by_detector.items()},
            "threshold_quantile": thresholds.score_quantile,
            "z_threshold": thresholds.z,
            "residual_threshold": thresholds.residual,
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
    score = partial(
        score_cashier_shifts,
        z_threshold=pipeline_config.anomaly_z_threshold,
        min_count=pipeline_config.anomaly_min_cashier_events,
    )
    if not pipeline_config.ai_analytics_enabled:
        return _score_into(
            warehouse, pipeline_config, "analytics.cashier_anomalies", CASHIER_FEATURES_SQL, score
        )
    features, refresh = _stored_features(warehouse, CASHIER_FEATURES)
    scored = _on_cluster(score, features, pipeline_config.scheduler)
    warehouse.replace_table("analytics.cashier_anomalies", scored)
    flagged = int(scored["is_anomaly"].sum()) if scored.height else 0
    return dg.MaterializeResult(metadata={"rows": scored.height, "anomalies": flagged, **refresh})


@dg.asset(
    group_name="anomalies",
    kinds={"pyod", "duckdb"},
    deps=[dg.AssetKey("fct_security_events")],
    description="Security anomalies per source IP and day (failures, usernames tried, velocity; robust "
    "z-scores, ECOD score kept) — analytics.security_anomalies.",
)
def security_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    score = partial(
        score_security,
        z_threshold=pipeline_config.anomaly_z_threshold,
        min_count=pipeline_config.anomaly_min_security_failures,
    )
    return _score_into(
        warehouse, pipeline_config, "analytics.security_anomalies", SECURITY_FEATURES_SQL, score
    )


@dg.asset(
    group_name="anomalies",
    kinds={"duckdb"},
    deps=[dg.AssetKey("fct_stock_levels")],
    description="Inventory shrinkage: shelf counts far below the level the books expect (previous count + "
    "recorded movements - units sold) — analytics.inventory_anomalies.",
)
def inventory_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    score = partial(
        score_shrinkage,
        z_threshold=pipeline_config.anomaly_z_threshold,
        min_units=pipeline_config.anomaly_min_missing_units,
        min_share=pipeline_config.anomaly_min_missing_share,
    )
    if not pipeline_config.ai_analytics_enabled:
        result = _score_into(
            warehouse, pipeline_config, "analytics.inventory_anomalies", SHRINKAGE_FEATURES_SQL, score
        )
        with warehouse.get_connection() as con:
            record_build(con, SHRINKAGE_SCORES_STAGE, "disabled")
        return result
    # The count-interval features are kept in the warehouse and recomputed only for the pairs new
    # movements or lines touch (features.py); the scoring runs over the stored history. The scores are a
    # function of those features and the knobs alone: when no pair was recomputed (new sales after every
    # pair's last count, the usual increment) and the knobs are the ones last scored with, they stand.
    knobs = f"{pipeline_config.anomaly_z_threshold}:{pipeline_config.anomaly_min_missing_units}:"
    knobs += f"{pipeline_config.anomaly_min_missing_share}:{DETECTORS_CODE}"
    with warehouse.get_connection() as con:
        refresh = refresh_shrinkage_features(con, SHRINKAGE_FEATURES_SQL)
        refresh_meta = {
            "feature_rows": refresh.rows,
            "pairs_refreshed": refresh.store_days,
            "features_rebuilt": refresh.rebuilt,
        }
        if (
            not refresh.rebuilt
            and refresh.store_days == 0
            and build_fingerprint(con, SHRINKAGE_SCORES_STAGE) == knobs
        ):
            return dg.MaterializeResult(metadata={**refresh_meta, UNCHANGED: True})
        counts = frame_of(con, f"select * from {SHRINKAGE_TABLE} order by store_id, product_id, counted_at")
    scored = score(counts)
    warehouse.replace_table("analytics.inventory_anomalies", scored)
    with warehouse.get_connection() as con:
        record_build(con, SHRINKAGE_SCORES_STAGE, knobs)
    flagged = int(scored["is_anomaly"].sum()) if scored.height else 0
    return dg.MaterializeResult(metadata={"rows": scored.height, "anomalies": flagged, **refresh_meta})


assets = [sales_anomalies, cashier_anomalies, security_anomalies, inventory_anomalies]

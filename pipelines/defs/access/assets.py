"""Unusual data access: the audit trail's data-access records landed (``raw_data_access``), shaped by dbt
(``stg_ops__data_access`` -> ``fct_data_access_daily``) and scored per principal and day against the
principal's own history (``access_anomalies``)."""

from __future__ import annotations

import dagster as dg

from pipelines.defs.access.detector import FEATURES_SQL, TABLE, empty_access_features, score_access
from pipelines.defs.access.landing import land_data_access
from pipelines.resources import OpsStoreResource, PipelineConfig, Warehouse


@dg.asset(
    group_name="ingest",
    kinds={"sqlite", "duckdb"},
    description="The audit trail's data-access records (who read which store's figures, the operator's "
    "sensitive reads, admin writes) copied to raw.data_access, incrementally by the audit seq.",
)
def raw_data_access(ops_store: OpsStoreResource, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        result = land_data_access(con, ops_store.engine())
    return dg.MaterializeResult(metadata=result.metadata())


@dg.asset(
    group_name="anomalies",
    kinds={"duckdb"},
    deps=[dg.AssetKey("fct_data_access_daily")],
    description="Unusual data access per user or terminal and day: volume, stores read (and stores never "
    "read before) and the off-hours share against the principal's own earlier days (robust z-scores, "
    "material minimums) — analytics.access_anomalies.",
)
def access_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        built = con.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = 'marts' and table_name = 'fct_data_access_daily'"
        ).fetchall()[0][0]
    # With AI analytics off (or before the mart exists) the table keeps its columns and nothing is scored.
    features = (
        warehouse.read_frame(FEATURES_SQL)
        if built and pipeline_config.ai_analytics_enabled
        else empty_access_features()
    )
    scored = score_access(features, z_threshold=pipeline_config.anomaly_z_threshold)
    warehouse.replace_table(TABLE, scored)
    flagged = int(scored["is_anomaly"].sum()) if scored.height else 0
    return dg.MaterializeResult(metadata={"rows": scored.height, "anomalies": flagged})


assets = [raw_data_access, access_anomalies]

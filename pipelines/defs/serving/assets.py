"""The serving snapshot: marts and scores published as one immutable Parquet set for the API and
dashboards."""

from datetime import UTC, datetime

import dagster as dg

from chainsync.ops_store.audit_log import audit_head
from chainsync.serving import current_snapshot, publish_snapshot
from pipelines.resources import OpsStoreResource, PipelineConfig, Warehouse, frame_of

# Snapshot table name -> warehouse relation.
SNAPSHOT_TABLES: dict[str, str] = {
    "fct_sales_daily": "marts.fct_sales_daily",
    "dim_store": "marts.dim_store",
    "dim_product": "marts.dim_product",
    "fct_stock_levels": "marts.fct_stock_levels",
    "fct_security_events": "marts.fct_security_events",
    "fct_ip_risk": "marts.fct_ip_risk",
    "fct_sync_sessions": "marts.fct_sync_sessions",
    "fct_api_performance": "marts.fct_api_performance",
    "demand_forecast": "analytics.demand_forecast",
    "forecast_accuracy": "analytics.forecast_accuracy",
    "demand_forecast_totals": "analytics.demand_forecast_totals",
    "reorder_suggestions": "analytics.reorder_suggestions",
    "sales_anomalies": "analytics.sales_anomalies",
    "cashier_anomalies": "analytics.cashier_anomalies",
    "security_anomalies": "analytics.security_anomalies",
    "inventory_anomalies": "analytics.inventory_anomalies",
    "performance_anomalies": "analytics.performance_anomalies",
    "access_anomalies": "analytics.access_anomalies",
    "business_insights": "analytics.business_insights",
}


def _changed_in_run(context: dg.AssetExecutionContext) -> set[str]:
    """The snapshot tables whose assets materialized in this run (the others are as last published)."""
    changed = set()
    for name in SNAPSHOT_TABLES:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(name))
        if event is not None and event.run_id == context.run_id:
            changed.add(name)
    return changed


@dg.asset(
    group_name="serving",
    kinds={"parquet"},
    deps=[dg.AssetKey(name) for name in SNAPSHOT_TABLES],
    description="Publishes the marts, forecast and anomalies as a new serving snapshot (Parquet + manifest) "
    "and switches the current pointer atomically. Tables this run did not change are carried over from "
    "the current snapshot (hard links), so a marts run does not rewrite the forecasts, nor a forecast run "
    "the marts.",
)
def serving_snapshot(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    pipeline_config: PipelineConfig,
    ops_store: OpsStoreResource,
) -> dg.MaterializeResult:
    previous = current_snapshot(pipeline_config.serving_dir_path)
    carried = set(previous.tables) if previous is not None else set()
    refresh = _changed_in_run(context) | (set(SNAPSHOT_TABLES) - carried)
    with warehouse.get_connection() as con:
        present = {
            f"{schema}.{name}"
            for schema, name in con.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
        # A table never built (the forecasts before the first forecast run) is left out until it is.
        tables = {
            name: frame_of(con, f"select * from {relation}")
            for name, relation in SNAPSHOT_TABLES.items()
            if name in refresh and relation in present
        }
        events_seq = int(con.execute("select coalesce(max(last_seq), 0) from meta.watermarks").fetchone()[0])  # type: ignore[index]
    snapshot = publish_snapshot(
        pipeline_config.serving_dir_path,
        tables,
        run_id=context.run_id,
        keep=pipeline_config.serving_keep_versions,
        extra={
            "pipeline": {"finished_at": datetime.now(UTC).isoformat(), "events_seq": events_seq},
            # The audit trail's head, kept outside its table so a truncated trail is detected.
            "audit_head": _audit_head(ops_store),
        },
        carry=previous,
    )
    return dg.MaterializeResult(
        metadata={
            "version": snapshot.version,
            "events_seq": events_seq,
            "tables_published": ", ".join(sorted(tables)) or "none",
            "tables_carried": len(snapshot.tables) - len(tables),
            **{f"rows_{name}": frame.height for name, frame in tables.items()},
        }
    )


def _audit_head(ops_store: OpsStoreResource) -> dict[str, object] | None:
    head = audit_head(ops_store.engine())
    return None if head is None else {"seq": head.seq, "record_hash": head.record_hash}


assets = [serving_snapshot]

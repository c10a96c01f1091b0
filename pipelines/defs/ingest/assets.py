"""Raw landing assets: ops-store events and catalog copied into the warehouse's ``raw`` schema."""

import dagster as dg

from chainsync.ops_store.tables import products, stores
from pipelines.defs.ingest.warehouse import ensure_schema, land_events, refresh_catalog
from pipelines.resources import OpsStoreResource, PipelineConfig, Warehouse

GROUP = "ingest"
KINDS = {"sqlite", "duckdb"}


def _catalog_asset(name: str, table, description: str) -> dg.AssetsDefinition:  # type: ignore[no-untyped-def]
    @dg.asset(name=name, group_name=GROUP, kinds=KINDS, description=description)
    def _asset(ops_store: OpsStoreResource, warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            ensure_schema(con)
            rows, changed = refresh_catalog(con, ops_store.engine(), table)
        return dg.MaterializeResult(metadata={"rows": rows, "changed": changed})

    return _asset


raw_stores = _catalog_asset("raw_stores", stores, "The stores catalog, copied to raw.stores when it changes.")
raw_products = _catalog_asset(
    "raw_products", products, "The products catalog, copied to raw.products when it changes."
)


def _events_asset(name: str, event_type: str, description: str, deps: list) -> dg.AssetsDefinition:  # type: ignore[type-arg]
    @dg.asset(name=name, group_name=GROUP, kinds=KINDS, deps=deps, description=description)
    def _asset(
        context: dg.AssetExecutionContext,
        ops_store: OpsStoreResource,
        warehouse: Warehouse,
        pipeline_config: PipelineConfig,
    ) -> dg.MaterializeResult:
        with warehouse.get_connection() as con:
            ensure_schema(con)
            result = land_events(con, ops_store.engine(), event_type, pipeline_config.line_rules)
        context.log.info(
            f"{event_type}: landed {result.events} events (seq {result.from_seq} -> {result.to_seq})"
            + (f", {result.lines} lines, {result.quarantined} quarantined" if event_type == "sale" else "")
        )
        return dg.MaterializeResult(metadata=result.metadata())

    return _asset


raw_sales_events = _events_asset(
    "raw_sales_events",
    "sale",
    "New sale events (raw.sales_events) flattened to one row per line item (raw.sale_lines); bad lines go to "
    "raw.sale_lines_quarantine with a reason. Incremental by the ops store's seq watermark.",
    # Lines are checked against the catalog, so the catalog lands first.
    deps=[raw_stores, raw_products],
)
raw_inventory_events = _events_asset(
    "raw_inventory_events", "inventory", "New inventory events (raw.inventory_events), by seq watermark.", []
)
raw_security_events = _events_asset(
    "raw_security_events", "security", "New security events (raw.security_events), by seq watermark.", []
)
raw_sync_events = _events_asset(
    "raw_sync_events", "sync", "New offline-sync session events (raw.sync_events), by seq watermark.", []
)

assets = [
    raw_stores,
    raw_products,
    raw_sales_events,
    raw_inventory_events,
    raw_security_events,
    raw_sync_events,
]

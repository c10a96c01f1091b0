"""The two cadences of ARCHITECTURE.md as Dagster jobs, and the planner that picks a marts run's assets.

* ``marts_job``: landing, checks, dbt models and anomaly scores, then the snapshot. Started by
  ``new_events_sensor`` with only the assets downstream of the sources that hold new data (one dbt
  invocation over just those models; untouched marts and scores are not recomputed).
* ``forecast_job``: demand forecasts, their accuracy and the reorder suggestions, then the insights and
  the snapshot. Started daily by ``daily_forecast_schedule``.

The snapshot publishes the tables its run changed and carries the others over from the current snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg
import duckdb
from sqlalchemy import Engine

from chainsync.ops_store.events import max_seq
from chainsync.ops_store.tables import products, stores
from pipelines.defs.access.landing import data_access_pending
from pipelines.defs.ingest.request_log import request_stats_pending
from pipelines.defs.ingest.warehouse import EVENT_TABLES, catalog_pending

# Run tag of a marts run whose selection the planner made: its dbt build then vouches for every model.
PLANNED_TAG = "chainsync/planned"

FORECAST_ASSETS = dg.AssetSelection.groups("forecasting") | dg.AssetSelection.assets("reorder_suggestions")
PUBLISH_ASSETS = dg.AssetSelection.assets("business_insights", "serving_snapshot")

marts_job = dg.define_asset_job(
    "marts_job",
    selection=dg.AssetSelection.all() - FORECAST_ASSETS,
    description="Lands new events, checks them, builds the dbt models downstream of them, re-scores the "
    "anomalies whose inputs changed and publishes a snapshot. Started by new_events_sensor.",
    tags={PLANNED_TAG: "false"},
)
forecast_job = dg.define_asset_job(
    "forecast_job",
    selection=FORECAST_ASSETS | PUBLISH_ASSETS,
    description="Refits the demand forecasts (on the Dask cluster when CHAINSYNC_DASK_SCHEDULER is set), "
    "their accuracy and the reorder suggestions, then the insights and a snapshot. Daily.",
)

# Raw asset -> event type it lands (the sensor compares the ops store's max seq with the watermark).
EVENT_ASSETS = {
    "raw_sales_events": "sale",
    "raw_inventory_events": "inventory",
    "raw_security_events": "security",
    "raw_sync_events": "sync",
}
assert set(EVENT_ASSETS.values()) == set(EVENT_TABLES)


def pending_sources(con: duckdb.DuckDBPyConnection, engine: Engine) -> set[str]:
    """The raw assets whose landing would bring something new: events above the watermark, a changed
    catalog, new or grown request-log minutes. Every one on a warehouse never built. Reads only (a
    read-only connection will do)."""
    built = con.execute(
        "select count(*) from information_schema.tables"
        " where table_schema = 'meta' and table_name = 'build_state'"
    ).fetchall()[0][0]
    if not built or not con.execute("select count(*) from meta.build_state").fetchall()[0][0]:
        return {*EVENT_ASSETS, "raw_stores", "raw_products", "raw_request_stats", "raw_data_access"}
    landed = dict(con.execute("select source, last_seq from meta.watermarks").fetchall())
    pending = {
        asset for asset, kind in EVENT_ASSETS.items() if max_seq(engine, kind) > int(landed.get(kind, 0))
    }
    pending |= {f"raw_{t.name}" for t in (stores, products) if catalog_pending(con, engine, t)}
    if request_stats_pending(con, engine):
        pending.add("raw_request_stats")
    if data_access_pending(con, engine):
        pending.add("raw_data_access")
    return pending


def marts_selection(graph: Any, pending: Iterable[str], everything: bool = False) -> list[dg.AssetKey]:
    """The marts-cadence assets to run for ``pending`` raw assets: them, everything downstream of them
    but the forecast cadence, and the snapshot. ``everything``: the whole marts cadence (the dbt project
    changed, so every model is rebuilt). Empty when nothing is pending."""
    pending = list(pending)
    scope: dg.AssetSelection
    if everything:
        scope = dg.AssetSelection.all() - FORECAST_ASSETS
    elif not pending:
        return []
    else:
        scope = (
            dg.AssetSelection.assets(*pending).downstream() - FORECAST_ASSETS
        ) | dg.AssetSelection.assets("serving_snapshot")
    return sorted(scope.resolve(graph), key=lambda k: k.to_user_string())  # type: ignore[arg-type]

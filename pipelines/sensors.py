"""Start the pipeline when the ops store holds events the warehouse has not landed yet."""

import dagster as dg
import duckdb

from chainsync.ops_store.events import max_seq
from pipelines.resources import OpsStoreResource, Warehouse


def _landed_seq(warehouse: Warehouse) -> int | None:
    """The warehouse's highest landed seq, or None when it cannot be read now (a run holds the file)."""
    try:
        with duckdb.connect(warehouse.database, read_only=True) as con:
            return int(con.execute("select coalesce(max(last_seq), 0) from meta.watermarks").fetchone()[0])  # type: ignore[index]
    except duckdb.Error:
        return None


@dg.sensor(
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests a run of the whole graph when the ops store's max seq passes the warehouse "
    "watermark.",
)
def new_events_sensor(
    context: dg.SensorEvaluationContext, ops_store: OpsStoreResource, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    newest = max_seq(ops_store.engine())
    landed = _landed_seq(warehouse)
    requested = int(context.cursor or 0)
    if landed is None:
        return dg.SkipReason("warehouse busy (a run is in progress)")
    if newest <= max(landed, requested):
        return dg.SkipReason(f"no new events (ops store seq {newest}, landed {landed})")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"seq-{newest}")], cursor=str(newest))


sensors = [new_events_sensor]

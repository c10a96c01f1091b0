"""The serving snapshot: marts and scores published as one immutable Parquet set for the API and
dashboards. What it holds is declared in :mod:`chainsync.snapshot_contract`; every table is checked against
it before the new version is written, so a table short of a declared column fails the publish and the
current snapshot stays as it was."""

from datetime import UTC, datetime

import dagster as dg

from chainsync.ops_store.audit_log import audit_head
from chainsync.serving import current_snapshot, publish_snapshot
from chainsync.snapshot_contract import TABLES, check_tables
from pipelines.resources import UNCHANGED, OpsStoreResource, PipelineConfig, Warehouse, frame_of

# Snapshot table name -> warehouse relation, as the contract declares them.
SNAPSHOT_TABLES: dict[str, str] = {name: table.relation for name, table in TABLES.items()}


def _changed_in_run(context: dg.AssetExecutionContext) -> set[str]:
    """The snapshot tables whose assets materialized in this run and changed their table (the others are
    as last published; an asset that found its table up to date says so with ``UNCHANGED``)."""
    changed = set()
    for name in SNAPSHOT_TABLES:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(name))
        if event is None or event.run_id != context.run_id:
            continue
        materialization = event.asset_materialization
        unchanged = materialization is not None and UNCHANGED in materialization.metadata
        if not unchanged:
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
    check_tables(tables)  # SnapshotContractError names the table and the columns
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

"""The serving snapshot: marts and scores published as one immutable Parquet set for the API and
dashboards. What it holds is declared in :mod:`chainsync.snapshot_contract`; every table is checked against
it before the new version is written, so a table short of a declared column fails the publish and the
current snapshot stays as it was."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import duckdb
import polars as pl

from chainsync.ops_store.audit_log import audit_head
from chainsync.serving import Snapshot, current_snapshot, publish_snapshot
from chainsync.snapshot_contract import TABLES, check_tables
from pipelines.defs.dbt.assets import DBT_STAGE
from pipelines.defs.ingest.warehouse import build_fingerprint, record_build
from pipelines.resources import (
    UNCHANGED,
    OpsStoreResource,
    PipelineConfig,
    Warehouse,
    frame_of,
    tables_present,
)

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
        present = tables_present(con)
        # A table never built (the forecasts before the first forecast run) is left out until it is.
        tables = {
            name: frame_of(con, f"select * from {relation}")
            for name, relation in SNAPSHOT_TABLES.items()
            if name in refresh and relation in present and name != SALES_DAILY
        }
        parts, sales_state = {}, None
        if SALES_DAILY in refresh and SNAPSHOT_TABLES[SALES_DAILY] in present:
            months, sales_state = _sales_daily_parts(con, previous)
            if months is None:  # no rows at all: one empty file, with the columns
                tables[SALES_DAILY] = frame_of(con, f"select * from {SNAPSHOT_TABLES[SALES_DAILY]}")
            else:
                parts[SALES_DAILY] = months
        events_seq = int(con.execute("select coalesce(max(last_seq), 0) from meta.watermarks").fetchone()[0])  # type: ignore[index]
    # SnapshotContractError names the table and the columns (a table in parts: each part).
    check_tables(tables)
    for name, given in parts.items():
        for frame in given.values():
            check_tables({name: frame})
    snapshot = publish_snapshot(
        pipeline_config.serving_dir_path,
        tables,
        run_id=context.run_id,
        keep=pipeline_config.serving_keep_versions,
        extra={
            "pipeline": {
                "finished_at": datetime.now(UTC).isoformat(),
                "events_seq": events_seq,
                SALES_DAILY: sales_state or _state_of(previous),
            },
            # The audit trail's head, kept outside its table so a truncated trail is detected.
            "audit_head": _audit_head(ops_store),
        },
        carry=previous,
        parts=parts,
    )
    with warehouse.get_connection() as con:
        record_build(con, SNAPSHOT_STAGE, snapshot.version)  # this warehouse published this version
    published = {**{n: f.height for n, f in tables.items()}}
    published |= {n: sum(f.height for f in given.values()) for n, given in parts.items()}
    return dg.MaterializeResult(
        metadata={
            "version": snapshot.version,
            "events_seq": events_seq,
            "tables_published": ", ".join(sorted(published)) or "none",
            "tables_carried": len(snapshot.tables) - len(published),
            **{f"rows_{name}": rows for name, rows in published.items()},
            **{f"parts_{name}": ", ".join(sorted(given)) or "none" for name, given in parts.items()},
        }
    )


# fct_sales_daily is published in parts, one per month of sale_date: an increment changes the rows of a few
# days, so a publish rewrites the months those fall in and carries the others (the whole table is ~5 M rows
# at chain size). A row changes only when a sale line newer than every line in it lands on its day
# (fct_sales_daily recomputes the touched days; its max_seq is the newest line counted), so the months to
# rewrite are those with a row whose max_seq passes the largest max_seq of the previous publish — provided
# that publish came from this warehouse (meta.build_state, SNAPSHOT_STAGE, names its version) and the marts
# were built by the same dbt project since (a changed model rebuilds every row): otherwise every month.
SALES_DAILY = "fct_sales_daily"
SNAPSHOT_STAGE = "snapshot:fct_sales_daily"


def _state_of(snapshot: Snapshot | None) -> dict[str, Any] | None:
    return None if snapshot is None else snapshot.manifest.get("pipeline", {}).get(SALES_DAILY)


def _sales_daily_parts(
    con: duckdb.DuckDBPyConnection, previous: Snapshot | None
) -> tuple[dict[str, pl.DataFrame] | None, dict[str, object]]:
    """The months of fct_sales_daily to (re)publish, as frames by ``YYYY-MM`` (None: the table has no rows
    and is published whole), and the state to record."""
    relation = SNAPSHOT_TABLES[SALES_DAILY]
    max_seq = int(con.execute(f"select coalesce(max(max_seq), 0) from {relation}").fetchall()[0][0])
    built = build_fingerprint(con, DBT_STAGE) or ""
    state: dict[str, object] = {"max_seq": max_seq, "dbt_project": built.rpartition(":")[2]}
    before = _state_of(previous)
    incremental = (
        previous is not None
        and isinstance(before, dict)
        and "parts" in previous.manifest["tables"].get(SALES_DAILY, {})
        and build_fingerprint(con, SNAPSHOT_STAGE) == previous.version
        and before.get("dbt_project") == state["dbt_project"]
    )
    month = "strftime(sale_date, '%Y-%m')"
    if incremental:
        months = [
            m
            for (m,) in con.execute(
                f"select distinct {month} from {relation} where max_seq > ?",
                [int(before["max_seq"]) if before is not None else 0],
            ).fetchall()
        ]
        scope = f"where {month} in ({', '.join(repr(m) for m in months)})" if months else "where false"
    else:
        scope = ""
    # A fresh cursor: the fetchone() of build_fingerprint leaves its result open on ``con``.
    frame = frame_of(con.cursor(), f"select *, {month} as sale_month from {relation} {scope}")
    if frame.is_empty():
        return ({} if incremental else None), state
    by_month = frame.partition_by("sale_month", as_dict=True, include_key=False, maintain_order=True)
    return {str(key[0]): part for key, part in sorted(by_month.items())}, state


def _audit_head(ops_store: OpsStoreResource) -> dict[str, object] | None:
    head = audit_head(ops_store.engine())
    return None if head is None else {"seq": head.seq, "record_hash": head.record_hash}


assets = [serving_snapshot]

"""Anomaly features kept in the warehouse and refreshed only where new sale lines land.

The store-day features of ``sales_anomalies`` and the cashier-shift features of ``cashier_anomalies`` are
aggregates of one store's lines on one business day. Each is stored in its own table
(``analytics.sales_anomaly_features``, ``analytics.cashier_anomaly_features``); a run recomputes only the
store-days touched by lines newer than the table's watermark (``meta.build_state``, stage
``features:<table>``) and replaces just those rows, so the detectors read their history from the warehouse
instead of aggregating every line again. A row depends on its store-day's lines alone, so the table equals
one built from scratch, row for row. A new features query, a changed store catalog (a timezone moves lines
to another business day) or a warehouse rebuilt from scratch rebuilds the table whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import duckdb
import polars as pl

from pipelines.defs.ingest.warehouse import build_fingerprint, ensure_schema, record_build
from pipelines.resources import dbt_project_var, frame_of

SALE_LINES = "intermediate.int_sale_lines_localized"  # what the features queries read
TOUCHED = "anomaly_touched_store_days"  # temp table: the store-days to recompute


@dataclass(frozen=True)
class FeatureTable:
    """A stored features table: its name, the query that builds it whole and the columns that key a row
    (in the query's order; store_id and sale_date among them: a store-day is the unit a refresh
    recomputes)."""

    table: str
    sql: str
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        assert {"store_id", "sale_date"} <= set(self.keys), self.keys
        assert self.sql.count(f"from {SALE_LINES}") == 1, f"{self.table}: reads {SALE_LINES} once"

    @property
    def stage(self) -> str:
        return f"features:{self.table}"

    def scoped_sql(self) -> str:
        """The query restricted to the touched store-days. The range on the stored ``occurred_at`` is
        redundant with the semi join (``business_day_margin_days`` in ``dbt_project.yml``) but lets the scan
        skip the history outside the touched days instead of converting every line's timezone first."""
        margin = int(dbt_project_var("business_day_margin_days"))
        scoped = (
            f"from (select * from {SALE_LINES} semi join {TOUCHED} using (store_id, sale_date)"
            f" where occurred_at >= (select min(sale_date) from {TOUCHED}) - interval {margin} day"
            f" and occurred_at < (select max(sale_date) from {TOUCHED}) + interval {margin + 1} day)"
        )
        return self.sql.replace(f"from {SALE_LINES}", scoped)


@dataclass(frozen=True)
class FeatureRefresh:
    """What a refresh did: ``rebuilt`` the whole table, or recomputed ``store_days`` touched store-days."""

    rows: int
    store_days: int
    rebuilt: bool

    def metadata(self) -> dict[str, int | bool]:
        return {
            "feature_rows": self.rows,
            "store_days_refreshed": self.store_days,
            "features_rebuilt": self.rebuilt,
        }


def _fingerprint(con: duckdb.DuckDBPyConnection, features: FeatureTable) -> str:
    """What the stored rows were built from, besides the lines: the query and the stores catalog."""
    stores = con.execute("select fingerprint from meta.catalog_state where source = 'stores'").fetchone()
    digest = hashlib.sha256(f"{features.sql}|{stores[0] if stores else ''}".encode()).hexdigest()
    return digest[:16]


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
    )


def refresh_features(con: duckdb.DuckDBPyConnection, features: FeatureTable) -> FeatureRefresh:
    """Bring ``features.table`` up to the lines landed so far: recompute the store-days touched by lines
    above its watermark, or rebuild it whole (see the module docstring). One transaction."""
    ensure_schema(con)
    landed = int(con.execute(f"select coalesce(max(seq), 0) from {SALE_LINES}").fetchall()[0][0])
    fingerprint = _fingerprint(con, features)
    previous = build_fingerprint(con, features.stage)
    done, _, built_from = (previous or "").partition(":")
    rebuild = (
        previous is None
        or built_from != fingerprint
        or not _exists(con, features.table)
        or int(done) > landed  # the raw tables were rebuilt: the watermark means nothing any more
    )
    con.execute("begin transaction")
    try:
        con.execute("create schema if not exists analytics")
        if rebuild:
            con.execute(f"create or replace table {features.table} as {features.sql}")
            store_days = int(
                con.execute(
                    f"select count(*) from (select distinct store_id, sale_date from {features.table})"
                ).fetchall()[0][0]
            )
        else:
            con.execute(
                f"create or replace temp table {TOUCHED} as select distinct store_id, sale_date"
                f" from {SALE_LINES} where seq > ?",
                [int(done)],
            )
            store_days = int(con.execute(f"select count(*) from {TOUCHED}").fetchall()[0][0])
            if store_days:
                con.execute(
                    f"delete from {features.table} as f using {TOUCHED} as t"
                    " where f.store_id = t.store_id and f.sale_date = t.sale_date"
                )
                con.execute(f"insert into {features.table} by name select * from ({features.scoped_sql()})")
            con.execute(f"drop table {TOUCHED}")
        record_build(con, features.stage, f"{landed}:{fingerprint}")
        rows = int(con.execute(f"select count(*) from {features.table}").fetchall()[0][0])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return FeatureRefresh(rows=rows, store_days=store_days, rebuilt=rebuild)


def read_features(con: duckdb.DuckDBPyConnection, features: FeatureTable) -> pl.DataFrame:
    """The stored features in key order (the order the detectors' randomised parts see on every run)."""
    return frame_of(con, f"select * from {features.table} order by {', '.join(features.keys)}")


# The shrinkage features (one row per shelf-count interval of a store x product, SHRINKAGE_FEATURES_SQL)
# are kept the same way, by pair instead of store-day: a row depends only on its pair's movements and sale
# lines, so a run recomputes the pairs with a movement newer than the table's movement watermark, or with a
# sale line newer than its sale watermark that falls at or before the pair's last shelf count (a line after
# the last count belongs to no interval yet; the count that closes its interval is a new movement, which
# recomputes the pair then).
MOVEMENTS = "staging.stg_pos__inventory_movements"
LINES = "staging.stg_pos__sale_lines"
SHRINKAGE_TABLE = "analytics.shrinkage_features"
TOUCHED_PAIRS = "anomaly_touched_pairs"  # temp table: the store x product pairs to recompute


def _shrinkage_scoped(sql: str) -> str:
    assert sql.count(f"from {MOVEMENTS}") == 1 and sql.count(f"join {LINES} as l") == 1
    return sql.replace(
        f"from {MOVEMENTS}",
        f"from (select * from {MOVEMENTS} semi join {TOUCHED_PAIRS} using (store_id, product_id))",
    ).replace(
        f"join {LINES} as l",
        f"join (select * from {LINES} semi join {TOUCHED_PAIRS} using (store_id, product_id)) as l",
    )


def refresh_shrinkage_features(con: duckdb.DuckDBPyConnection, sql: str) -> FeatureRefresh:
    """Bring :data:`SHRINKAGE_TABLE` (the rows of ``sql``, SHRINKAGE_FEATURES_SQL) up to the movements and
    lines landed so far: recompute the touched pairs (see above), or rebuild it whole when ``sql`` changed,
    the table is missing or the staging tables were rebuilt. One transaction. ``store_days`` of the result
    counts the pairs recomputed."""
    ensure_schema(con)
    stage = f"features:{SHRINKAGE_TABLE}"
    landed_moves = int(con.execute(f"select coalesce(max(seq), 0) from {MOVEMENTS}").fetchall()[0][0])
    landed_lines = int(con.execute(f"select coalesce(max(seq), 0) from {LINES}").fetchall()[0][0])
    fingerprint = hashlib.sha256(sql.encode()).hexdigest()[:16]
    previous = (build_fingerprint(con, stage) or "").split(":")
    rebuild = (
        len(previous) != 3
        or previous[2] != fingerprint
        or not _exists(con, SHRINKAGE_TABLE)
        or int(previous[0]) > landed_moves
        or int(previous[1]) > landed_lines
    )
    con.execute("begin transaction")
    try:
        con.execute("create schema if not exists analytics")
        if rebuild:
            con.execute(f"create or replace table {SHRINKAGE_TABLE} as {sql}")
            pairs = int(
                con.execute(
                    f"select count(*) from (select distinct store_id, product_id from {SHRINKAGE_TABLE})"
                ).fetchall()[0][0]
            )
        else:
            done_moves, done_lines = int(previous[0]), int(previous[1])
            con.execute(
                f"""
                create or replace temp table {TOUCHED_PAIRS} as
                select distinct store_id, product_id from {MOVEMENTS} where seq > {done_moves}
                union
                select l.store_id, l.product_id
                from {LINES} as l
                join (
                    select store_id, product_id, max(occurred_at) as last_count_at
                    from {MOVEMENTS} where movement_kind = 'count' group by all
                ) as c using (store_id, product_id)
                where l.seq > {done_lines} and l.occurred_at <= c.last_count_at
                """
            )
            pairs = int(con.execute(f"select count(*) from {TOUCHED_PAIRS}").fetchall()[0][0])
            if pairs:
                con.execute(
                    f"delete from {SHRINKAGE_TABLE} as f using {TOUCHED_PAIRS} as t"
                    " where f.store_id = t.store_id and f.product_id = t.product_id"
                )
                con.execute(f"insert into {SHRINKAGE_TABLE} by name select * from ({_shrinkage_scoped(sql)})")
            con.execute(f"drop table {TOUCHED_PAIRS}")
        record_build(con, stage, f"{landed_moves}:{landed_lines}:{fingerprint}")
        rows = int(con.execute(f"select count(*) from {SHRINKAGE_TABLE}").fetchall()[0][0])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return FeatureRefresh(rows=rows, store_days=pairs, rebuilt=rebuild)

"""The API's request log (ops store ``request_stats``) landed into ``raw.request_stats``, incrementally.

The rows have no ``seq``: an API instance writes a minute once it is over (and adds to it if a late request
of that minute arrives), and several instances flush independently. So each landing re-reads a short
trailing window — from ``OVERLAP`` before the newest minute already landed — by an index range scan on
``bucket_start``, and replaces that window in ``raw`` in one DuckDB transaction (an instance that cannot
write for longer drops its buckets older than ``OVERLAP``, ``api/request_log.py``: they would land nowhere).
A fingerprint of the window in ``meta.catalog_state`` (source ``request_stats``) changes only when something
new or changed was landed, so an idle API does not trigger a dbt rebuild.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
from sqlalchemy import Engine

from chainsync.ops_store.request_stats import COLUMNS, LANDING_OVERLAP, request_stats_since
from pipelines.defs.ingest.warehouse import ensure_schema
from pipelines.resources import OpsStoreResource, Warehouse

SOURCE = "request_stats"
OVERLAP = LANDING_OVERLAP  # the API drops (does not retry) buckets older than this

_ARROW_SCHEMA = pa.schema(
    [
        ("bucket_start", pa.timestamp("us")),
        ("instance", pa.string()),
        ("method", pa.string()),
        ("route", pa.string()),
        ("requests", pa.int64()),
        ("errors_4xx", pa.int64()),
        ("errors_5xx", pa.int64()),
        ("latency_ms_sum", pa.float64()),
        ("latency_ms_max", pa.float64()),
        ("latency_ms_p50", pa.float64()),
        ("latency_ms_p95", pa.float64()),
    ]
)
assert tuple(_ARROW_SCHEMA.names) == COLUMNS


def ensure_request_stats(con: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(con)
    con.execute(
        "create table if not exists raw.request_stats (bucket_start timestamp not null,"
        " instance varchar not null, method varchar not null, route varchar not null,"
        " requests bigint not null, errors_4xx bigint not null, errors_5xx bigint not null,"
        " latency_ms_sum double not null, latency_ms_max double not null,"
        " latency_ms_p50 double not null, latency_ms_p95 double not null)"
    )


@dataclass(frozen=True)
class RequestLogLanding:
    """One landing: rows re-read from the ops store (the window), new minutes, whether anything changed."""

    since: datetime | None
    rows_read: int
    new_rows: int
    changed: bool
    newest_minute: datetime | None

    def metadata(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "new_rows": self.new_rows,
            "changed": self.changed,
            "window_since": str(self.since) if self.since else "start",
            "newest_minute": str(self.newest_minute) if self.newest_minute else "none",
        }


def _read_window(
    con: duckdb.DuckDBPyConnection, engine: Engine
) -> tuple[datetime | None, datetime | None, pa.Table]:
    """(newest landed minute, window start, the ops store's rows of the window) for the next landing."""
    newest = con.execute("select max(bucket_start) from raw.request_stats").fetchall()[0][0]
    since = newest - OVERLAP if newest is not None else None
    chunks = [
        pa.Table.from_arrays(
            [
                pa.array(col, type=f.type)
                for col, f in zip(zip(*chunk, strict=True), _ARROW_SCHEMA, strict=True)
            ],
            schema=_ARROW_SCHEMA,
        )
        for chunk in request_stats_since(engine, since)
    ]
    return newest, since, pa.concat_tables(chunks) if chunks else _ARROW_SCHEMA.empty_table()


def _landed_digest(con: duckdb.DuckDBPyConnection) -> str | None:
    state = con.execute("select fingerprint from meta.catalog_state where source = ?", [SOURCE]).fetchall()
    return state[0][0] if state else None


def request_stats_pending(con: duckdb.DuckDBPyConnection, engine: Engine) -> bool:
    """Whether a landing now would change ``raw.request_stats`` (new or grown minutes in the window). Only
    reads the warehouse, so a read-only connection will do."""
    landed = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'raw'"
        " and table_name = 'request_stats'"
    ).fetchall()[0][0]
    if not landed:
        return True
    _newest, since, window = _read_window(con, engine)
    con.register("window_rows", window)
    try:
        return _window_digest(con, "window_rows", since) != _landed_digest(con)
    finally:
        con.unregister("window_rows")


def land_request_stats(con: duckdb.DuckDBPyConnection, engine: Engine) -> RequestLogLanding:
    """Copy the ops store's ``request_stats`` from ``OVERLAP`` before the newest landed minute on (all of
    it on the first run) into ``raw.request_stats``, replacing that window."""
    ensure_request_stats(con)
    newest, since, window = _read_window(con, engine)
    con.register("window_rows", window)
    try:
        digest = _window_digest(con, "window_rows", since)
        if digest == _landed_digest(con):
            return RequestLogLanding(since, window.num_rows, 0, False, newest)
        added = int(
            con.execute(
                "select count(*) from window_rows where ?::timestamp is null or bucket_start > ?",
                [newest, newest],
            ).fetchall()[0][0]
        )
        con.execute("begin transaction")
        try:
            if since is not None:
                con.execute("delete from raw.request_stats where bucket_start >= ?", [since])
            con.execute("insert into raw.request_stats by name select * from window_rows")
            total = int(con.execute("select count(*) from raw.request_stats").fetchall()[0][0])
            newest_after = con.execute("select max(bucket_start) from raw.request_stats").fetchall()[0][0]
            # What the next landing will compare: the window it is going to re-read, as landed now.
            next_since = newest_after - OVERLAP if newest_after is not None else None
            con.execute(
                "insert or replace into meta.catalog_state values (?, ?, ?, ?)",
                [
                    SOURCE,
                    _window_digest(con, "raw.request_stats", next_since),
                    total,
                    datetime.now(UTC).replace(tzinfo=None),
                ],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        return RequestLogLanding(since, window.num_rows, added, True, newest_after)
    finally:
        con.unregister("window_rows")


def _window_digest(con: duckdb.DuckDBPyConnection, relation: str, since: datetime | None) -> str:
    """A fingerprint of ``relation``'s rows from ``since`` on. Minutes only grow (the API's upsert adds),
    so counts and sums tell any change."""
    summary = con.execute(
        "select count(*), sum(requests), sum(errors_4xx), sum(errors_5xx), round(sum(latency_ms_sum), 3),"
        f" max(bucket_start) from {relation} where ?::timestamp is null or bucket_start >= ?",
        [since, since],
    ).fetchall()
    return hashlib.sha256(f"{since}|{summary}".encode()).hexdigest()


@dg.asset(
    group_name="ingest",
    kinds={"sqlite", "duckdb"},
    description="The API's per-minute request log (raw.request_stats), re-landed from a short window "
    "before the newest minute already landed (instances flush finished minutes on their own schedule).",
)
def raw_request_stats(ops_store: OpsStoreResource, warehouse: Warehouse) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        result = land_request_stats(con, ops_store.engine())
    return dg.MaterializeResult(metadata=result.metadata())


assets = [raw_request_stats]

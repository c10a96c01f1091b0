"""Landing the request log: a real ops store (SQLite, written by the API's upsert) into a real DuckDB
warehouse, incrementally by a trailing window, with late rows of an instance picked up and nothing doubled."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from sqlalchemy import Engine, func, select

from api.request_log import RequestLog
from chainsync.ops_store import make_engine
from chainsync.ops_store.request_stats import merge_request_stats
from chainsync.ops_store.tables import request_stats
from chainsync.settings import Settings
from pipelines.defs.ingest.request_log import OVERLAP, ensure_request_stats, land_request_stats
from pipelines.resources import Warehouse

T0 = datetime(2026, 3, 1, 10, 0)


def _row(minute: int, instance: str, requests: int, errors_5xx: int = 0) -> dict:
    return {
        "bucket_start": T0 + timedelta(minutes=minute),
        "instance": instance,
        "method": "GET",
        "route": "/api/sync/download",
        "requests": requests,
        "errors_4xx": 0,
        "errors_5xx": errors_5xx,
        "latency_ms_sum": 50.0 * requests,
        "latency_ms_max": 200.0,
        "latency_ms_p50": 40.0,
        "latency_ms_p95": 120.0,
    }


def _totals(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    return con.execute("select count(*), sum(requests), sum(errors_5xx) from raw.request_stats").fetchall()[0]  # type: ignore[return-value]


def test_landing_is_incremental_and_picks_up_late_minutes(ops_engine: Engine, tmp_path: Path) -> None:
    merge_request_stats(ops_engine, [_row(m, "a:1", 10) for m in range(60)])
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        first = land_request_stats(con, ops_engine)
        assert (first.rows_read, first.new_rows, first.changed) == (60, 60, True)
        assert _totals(con) == (60, 600, 0)

        again = land_request_stats(con, ops_engine)  # nothing new: nothing rewritten, dbt not triggered
        assert again.changed is False and again.rows_read == OVERLAP.total_seconds() // 60 + 1
        fingerprint = con.execute("select fingerprint from meta.catalog_state").fetchall()

        # Instance b flushes its last minutes late, a adds a late request to its last minute, new minutes.
        merge_request_stats(ops_engine, [_row(m, "b:2", 5, errors_5xx=1) for m in range(50, 60)])
        merge_request_stats(ops_engine, [_row(59, "a:1", 1)])
        merge_request_stats(ops_engine, [_row(m, "a:1", 10) for m in range(60, 63)])
        third = land_request_stats(con, ops_engine)
        assert third.changed and third.new_rows == 3
        assert _totals(con) == (60 + 10 + 3, 600 + 50 + 1 + 30, 10)
        assert con.execute("select fingerprint from meta.catalog_state").fetchall() != fingerprint
        assert third.newest_minute == T0 + timedelta(minutes=62)


def test_an_instance_down_longer_than_the_window_drops_what_would_not_land(
    ops_engine: Engine, tmp_path: Path
) -> None:
    # Instance b cannot write while a can; when b is back, a's minutes have been landed far past b's oldest
    # buckets. What b still writes must land: every request in the ops store reaches the warehouse.
    now = T0.replace(tzinfo=UTC).timestamp()
    b = RequestLog(
        make_engine(f"sqlite:///{tmp_path / 'unreachable.sqlite'}"), instance="b:2", clock=lambda: now
    )
    for minute in (40, 65):
        now = T0.replace(tzinfo=UTC).timestamp() + 60 * minute
        b.observe("GET", "/api/sync/download", 200, 0.05)
    now += 60
    assert b.flush() == 0 and b.pending() == 2  # the ops store is unreachable for b; both kept

    merge_request_stats(ops_engine, [_row(m, "a:1", 10) for m in range(90)])
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        land_request_stats(con, ops_engine)
        now = T0.replace(tzinfo=UTC).timestamp() + 60 * 90 + 5  # a's minutes landed up to 89: window 59 on
        b.engine = ops_engine
        assert b.flush() == 1 and b.dropped_buckets == 1  # minute 40 would land nowhere: dropped
        landing = land_request_stats(con, ops_engine)
        assert landing.new_rows == 0 and landing.changed  # b's minute 65 re-read inside the window
        with ops_engine.connect() as conn:
            stored = conn.execute(select(func.count(), func.sum(request_stats.c.requests))).one()
        assert _totals(con)[:2] == tuple(stored) == (91, 901)


def test_fct_api_performance_unit_tests_pass(settings: Settings) -> None:
    # The model's dbt unit tests (fct_api_performance.yml), among them a quiet instance whose single slow
    # request must not set the endpoint-hour's p95; they need the model's relations, built empty.
    warehouse = Warehouse(database=str(settings.warehouse))
    settings.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(warehouse.database) as con:
        ensure_request_stats(con)
    dbt = [str(Path(sys.executable).parent / "dbt")]
    paths = ["--profiles-dir", ".", "--target-path", str(warehouse.dbt_target_path)]
    paths += ["--log-path", str(warehouse.dbt_target_path / "logs")]
    with warehouse.dbt_env():
        for args in (
            ["run", "--select", "+fct_api_performance", "--empty"],
            ["test", "--select", "fct_api_performance,test_type:unit"],
        ):
            done = subprocess.run(
                [*dbt, *args, *paths], cwd=settings.dbt_project_dir, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stdout[-3000:]
    assert "PASS=2 " in done.stdout

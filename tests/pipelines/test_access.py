"""Unusual data access: audit records written by the ops store's own append, landed by seq into a real
DuckDB warehouse, shaped by a real dbt build and scored against each principal's own history."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
from sqlalchemy import Engine

from chainsync.data_access import describe
from chainsync.ops_store.audit_log import append_audit
from chainsync.serving import current_snapshot
from chainsync.settings import Settings
from pipelines.defs.access.detector import score_access
from pipelines.defs.access.landing import data_access_pending, land_data_access
from pipelines.defs.ingest.warehouse import record_build
from pipelines.jobs import pending_sources
from pipelines.run import run_pipeline
from tests.pipelines.chain import seed_catalog

DAY0 = datetime(2026, 3, 1)
HISTORY_DAYS = 14
LAST_DAY = DAY0 + timedelta(days=HISTORY_DAYS)
STORES = [f"S{i:02d}" for i in range(1, 21)]


def _read(engine: Engine, at: datetime, actor: str, role: str, route: str, store: str | None) -> None:
    append_audit(
        engine,
        {
            "occurred_at": at,
            "category": "data_access",
            "action": "data_access",
            "outcome": "success",
            "actor": actor,
            "role": role,
            "source_ip": "10.1.2.3",
            "method": "GET",
            "route": route,
            "detail": describe("GET", route, store),
        },
    )


def _ordinary_day(
    engine: Engine,
    rng: random.Random,
    day: datetime,
    actor: str,
    role: str,
    stores: list[str],
    reads: tuple[int, int],
) -> None:
    """A working day: ``reads`` (min, max) reads of ``stores`` between 08:00 and 18:00."""
    for _ in range(rng.randint(*reads)):
        at = day + timedelta(hours=rng.uniform(8, 18))
        _read(engine, at, actor, role, "/api/ai/forecast", rng.choice(stores))


def _plant_history(engine: Engine) -> None:
    """Two weeks of ordinary reads, then a last day on which mallory reads every store at 3 am."""
    rng = random.Random(7)
    for d in range(HISTORY_DAYS + 1):
        day = DAY0 + timedelta(days=d)
        _ordinary_day(engine, rng, day, "mona", "manager", ["S01", "S02"], (8, 14))
        _ordinary_day(engine, rng, day, "oscar", "manager", ["S03"], (4, 8))
        # Head office reads every store every day: ordinary for them, whatever a global rule would say.
        _ordinary_day(engine, rng, day, "hq-analyst", "admin", STORES, (35, 50))
        for _ in range(rng.randint(6, 10)):
            at = day + timedelta(hours=rng.uniform(6, 21))
            _read(engine, at, "device:S01/S01-T01", "device", "/api/sync/download", "S01")
        if d < HISTORY_DAYS:
            _ordinary_day(engine, rng, day, "mallory", "manager", ["S04", "S05"], (6, 10))
    # Ordinary variation on the last day: mona looks at a third store in the afternoon.
    _read(engine, LAST_DAY + timedelta(hours=15), "mona", "manager", "/api/ai/insights", "S06")
    # mallory, at 03:00-03:40, reads all twenty stores' figures, three routes each.
    for i, store in enumerate(STORES):
        for j, route in enumerate(("/api/ai/forecast", "/api/ai/anomalies", "/api/ai/insights")):
            _read(
                engine,
                LAST_DAY + timedelta(hours=3, minutes=2 * i, seconds=20 * j),
                "mallory",
                "manager",
                route,
                store,
            )


def test_landing_is_incremental_by_audit_seq(ops_engine: Engine, tmp_path: Path) -> None:
    _read(ops_engine, DAY0, "mona", "manager", "/api/ai/forecast", "S01")
    _read(ops_engine, DAY0, "alice", "admin", "/api/observability/metrics", None)
    append_audit(  # not a data-access record: never landed
        ops_engine,
        {"occurred_at": DAY0, "category": "authentication", "action": "login_success", "outcome": "success"},
    )
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        assert data_access_pending(con, ops_engine)
        first = land_data_access(con, ops_engine)
        assert first.records == 2 and not data_access_pending(con, ops_engine)
        assert land_data_access(con, ops_engine).records == 0
        _read(
            ops_engine, DAY0 + timedelta(hours=1), "device:S01/S01-T01", "device", "/api/sync/download", "S01"
        )
        third = land_data_access(con, ops_engine)
        assert (third.records, third.from_seq) == (1, first.to_seq)
        rows = con.execute("select actor, route, store_id from raw.data_access order by seq").fetchall()
    assert rows == [
        ("mona", "/api/ai/forecast", "S01"),
        ("alice", "/api/observability/metrics", None),
        ("device:S01/S01-T01", "/api/sync/download", "S01"),
    ]


def test_a_user_who_suddenly_reads_every_store_at_3am_is_flagged_and_nobody_else(
    settings: Settings, ops_engine: Engine
) -> None:
    seed_catalog(ops_engine, stores=20, products=2)
    _plant_history(ops_engine)
    result = run_pipeline(
        settings,
        selection="raw_stores,raw_data_access,stg_pos__stores,stg_ops__data_access,fct_data_access_daily,"
        "access_anomalies,serving_snapshot",
    )
    assert result.success, result
    assert not result.failed_checks
    snapshot = current_snapshot(settings.serving)
    assert snapshot is not None
    scores = snapshot.read("access_anomalies")
    flagged = scores.filter(pl.col("is_anomaly"))
    assert flagged.select("principal", "access_date").rows() == [("mallory", LAST_DAY.date())]
    row = flagged.row(0, named=True)
    assert set(row["drivers"].split(",")) >= {"distinct_stores", "new_stores", "off_hours_share"}
    assert row["distinct_stores"] == 20 and row["new_stores"] == 18 and row["off_hours_share"] == 1.0
    assert row["expected_stores"] == 2 and row["severity"] in ("high", "critical")
    # Everyone was scored on the last day (enough history), head office's twenty stores included.
    last = scores.filter(pl.col("access_date") == LAST_DAY.date())
    assert set(last["principal"]) == {"mona", "oscar", "hq-analyst", "device:S01/S01-T01", "mallory"}
    assert last["baseline_days"].min() >= 10
    assert last.filter(pl.col("principal") == "hq-analyst")["distinct_stores"].item() >= 17


def test_a_threshold_is_relative_to_the_principals_own_baseline() -> None:
    """The same day (30 reads of 12 stores) is ordinary for one principal and flagged for another."""
    base = {
        "role": "manager",
        "principal_kind": "user",
        "stores": None,
        "distinct_routes": 1,
        "off_hours_reads": 0,
        "off_hours_share": 0.0,
        "source_ips": 1,
        "first_at": DAY0,
        "last_at": DAY0,
        "new_stores": 0,
        "baseline_days": 20,
        "baseline_new_stores": 0.0,
        "baseline_mad_new_stores": 0.0,
        "baseline_off_hours": 0.0,
        "baseline_mad_off_hours": 0.0,
        "access_date": LAST_DAY.date(),
        "reads": 30,
        "log_reads": 3.434,
        "distinct_stores": 12,
    }
    wide = {
        **base,
        "principal": "wide",
        "baseline_log_reads": 3.4,
        "baseline_mad_log_reads": 0.2,
        "baseline_stores": 12.0,
        "baseline_mad_stores": 1.0,
    }
    narrow = {
        **base,
        "principal": "narrow",
        "baseline_log_reads": 2.0,
        "baseline_mad_log_reads": 0.1,
        "baseline_stores": 2.0,
        "baseline_mad_stores": 0.0,
    }
    scored = score_access(pl.DataFrame([wide, narrow]), z_threshold=6.0)
    assert dict(zip(scored["principal"], scored["is_anomaly"], strict=True)) == {
        "wide": False,
        "narrow": True,
    }
    assert scored.filter(pl.col("principal") == "narrow")["drivers"].item() == "distinct_stores"


def test_the_marts_planner_lands_new_access_records(ops_engine: Engine, tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        land_data_access(con, ops_engine)
        record_build(con, "dbt_build", "built once")
        assert "raw_data_access" not in pending_sources(con, ops_engine)
        _read(ops_engine, DAY0, "mona", "manager", "/api/ai/forecast", "S01")
        assert "raw_data_access" in pending_sources(con, ops_engine)
        land_data_access(con, ops_engine)
        assert "raw_data_access" not in pending_sources(con, ops_engine)
        # The audit seq is not an event seq: the inbox watermarks (the new-events sensor's) are untouched.
        assert con.execute("select count(*) from meta.watermarks").fetchall()[0][0] == 0


def test_a_steady_readers_tenfold_day_is_flagged_on_volume_and_an_ordinary_busy_day_is_not() -> None:
    base = {
        "principal": "oscar",
        "role": "manager",
        "principal_kind": "user",
        "stores": "S03",
        "distinct_stores": 1,
        "new_stores": 0,
        "distinct_routes": 1,
        "off_hours_reads": 0,
        "off_hours_share": 0.0,
        "source_ips": 1,
        "first_at": DAY0,
        "last_at": DAY0,
        "baseline_days": 20,
        "baseline_log_reads": 2.398,  # log1p(10): about ten reads a day
        "baseline_mad_log_reads": 0.15,
        "baseline_stores": 1.0,
        "baseline_mad_stores": 0.0,
        "baseline_new_stores": 0.0,
        "baseline_mad_new_stores": 0.0,
        "baseline_off_hours": 0.0,
        "baseline_mad_off_hours": 0.0,
    }
    days = [
        {**base, "access_date": LAST_DAY.date(), "reads": 100, "log_reads": 4.615},
        {**base, "access_date": DAY0.date(), "reads": 25, "log_reads": 3.258},
    ]
    scored = score_access(pl.DataFrame(days), z_threshold=6.0)
    assert scored["is_anomaly"].to_list() == [True, False]
    assert scored["drivers"].to_list() == ["reads", ""]
    assert 30 < scored["expected_reads_hi"][0] < 100  # the range the dashboard shows beside the day

"""The request log: histogram percentiles, the additive flush into a real SQLite ops store, a failed flush
kept for the next one, and a live API process whose requests are in ``request_stats`` once it stops."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from api.request_log import MinuteStats, RequestLog
from chainsync.ops_store import get_engine, make_engine
from chainsync.ops_store.request_stats import COLUMNS, LANDING_OVERLAP
from chainsync.ops_store.tables import request_stats
from chainsync.settings import Settings
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy

MINUTE = 1_800_000_000 - 1_800_000_000 % 60  # a whole minute, epoch seconds


class Clock:
    """A settable wall clock for the aggregator (the minute a request falls in)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        result = conn.execute(select(request_stats).order_by(request_stats.c.route))
        return [dict(zip(COLUMNS, r, strict=True)) for r in result]


def test_histogram_percentiles_are_within_five_percent() -> None:
    rng = random.Random(3)
    values = sorted(rng.lognormvariate(3.0, 1.0) for _ in range(5000))  # ms, median ~20, long tail
    stats = MinuteStats()
    for v in values:
        stats.add(200, v)
    for q in (0.5, 0.95):
        exact = values[int(q * len(values)) - 1]
        assert stats.percentile(q) == pytest.approx(exact, rel=0.05), q
    assert stats.latency_ms_max == values[-1]
    assert stats.percentile(1.0) <= values[-1]
    one = MinuteStats()
    one.add(200, 7.5)
    assert one.percentile(0.5) == one.percentile(0.95) == pytest.approx(7.5, rel=0.1)
    assert MinuteStats().percentile(0.95) == 0.0


def test_flush_writes_completed_minutes_and_adds_up(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    clock = Clock(MINUTE + 5)
    log = RequestLog(engine, instance="host-a:1", clock=clock)
    for status, ms in ((200, 10), (200, 20), (404, 30), (503, 400)):
        log.observe("GET", "/api/items/{item_id}", status, ms / 1000)
    log.observe("POST", "/api/events/sales", 201, 0.005)

    assert log.flush() == 0  # the minute is not over yet: nothing written
    clock.now = MINUTE + 65
    log.observe("GET", "/api/items/{item_id}", 200, 0.010)  # next minute, still open
    assert log.flush() == 2
    assert log.pending() == 1
    rows = {r["route"]: r for r in _rows(engine)}
    items = rows["/api/items/{item_id}"]
    assert items["bucket_start"] == datetime.fromtimestamp(MINUTE, UTC).replace(tzinfo=None)
    assert (items["requests"], items["errors_4xx"], items["errors_5xx"]) == (4, 1, 1)
    assert items["latency_ms_sum"] == pytest.approx(460.0)
    assert items["latency_ms_max"] == pytest.approx(400.0)
    assert 10 <= items["latency_ms_p50"] <= 30 and items["latency_ms_p95"] > 100
    assert rows["/api/events/sales"]["requests"] == 1

    # A late request of the same minute, flushed again: the counts add up, nothing counted twice.
    clock.now = MINUTE + 30
    log.observe("GET", "/api/items/{item_id}", 500, 0.050)
    clock.now = MINUTE + 125
    assert log.flush() == 2  # the late bucket and the (now complete) next minute
    assert log.flush() == 0
    items = {r["bucket_start"]: r for r in _rows(engine) if r["route"] == "/api/items/{item_id}"}
    first = items[datetime.fromtimestamp(MINUTE, UTC).replace(tzinfo=None)]
    assert (first["requests"], first["errors_4xx"], first["errors_5xx"]) == (5, 1, 2)
    assert first["latency_ms_sum"] == pytest.approx(510.0)
    assert first["latency_ms_max"] == pytest.approx(400.0)
    assert sum(r["requests"] for r in items.values()) == 6


def test_a_failed_flush_keeps_the_buckets_bounded_and_retries(tmp_path: Path, settings: Settings) -> None:
    broken = make_engine(f"sqlite:///{tmp_path / 'not-migrated.sqlite'}")  # no request_stats table
    clock = Clock(MINUTE)
    log = RequestLog(broken, instance="host-b:2", clock=clock, max_buckets=3)
    for i in range(5):
        clock.now = MINUTE + 60 * i
        log.observe("GET", "/api/health", 200, 0.001)
    assert log.pending() == 3 and log.dropped_buckets == 2  # the oldest minutes went first
    clock.now = MINUTE + 600
    assert log.flush() == 0 and log.failed_flushes == 1
    assert log.pending() == 3  # kept for the next attempt

    log.engine = get_engine(settings.ops_store)
    assert log.flush() == 3
    rows = _rows(log.engine)
    assert sorted(r["bucket_start"].replace(tzinfo=UTC).timestamp() - MINUTE for r in rows) == [120, 180, 240]
    assert sum(r["requests"] for r in rows) == 3


def test_buckets_older_than_the_landing_window_are_dropped_not_retried(
    tmp_path: Path, settings: Settings
) -> None:
    # The pipeline re-reads only LANDING_OVERLAP behind the newest landed minute: a minute written later than
    # that would sit in request_stats but never reach the warehouse, so it is dropped (and counted) instead.
    broken = make_engine(f"sqlite:///{tmp_path / 'not-migrated.sqlite'}")  # no request_stats table
    clock = Clock(MINUTE)
    log = RequestLog(broken, instance="host-c:3", clock=clock)
    for minutes in (0, 10, 25):
        clock.now = MINUTE + 60 * minutes
        log.observe("GET", "/api/health", 200, 0.001)
    clock.now = MINUTE + 60 * 26
    assert log.flush() == 0 and log.failed_flushes == 1
    assert log.pending() == 3 and log.dropped_buckets == 0  # all within the window: kept for a retry

    clock.now = MINUTE + 600 + LANDING_OVERLAP.total_seconds()  # minute 0 is now too old, minute 10 just not
    assert log.flush() == 0 and log.failed_flushes == 2
    assert log.pending() == 2 and log.dropped_buckets == 1

    log.engine = get_engine(settings.ops_store)
    assert log.flush() == 2
    rows = _rows(log.engine)
    assert sorted(r["bucket_start"].replace(tzinfo=UTC).timestamp() - MINUTE for r in rows) == [600, 1500]
    assert log.pending() == 0 and log.dropped_buckets == 1


@pytest.mark.slow
def test_a_live_api_writes_its_requests_at_shutdown(data_dir: Path, settings: Settings) -> None:
    port = free_port()
    # A flush interval far beyond the test: everything reaches the table by the shutdown flush.
    env = api_env(data_dir, settings.jwt_key(), CHAINSYNC_REQUEST_LOG_FLUSH_SECONDS="3600")
    proc = start_api(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(5):
                assert http.get("/api/observability/health").status_code == 200
            for _ in range(3):
                assert http.get("/api/ai/forecast", params={"store_id": "S001"}).status_code == 401
            assert http.get("/no/such/route").status_code == 404
    finally:
        stop_api(proc)
    # uvicorn shuts down gracefully on SIGTERM (lifespan end, the final flush), then re-raises the signal.
    assert proc.returncode in (0, -15), proc.stderr.read() if proc.stderr else ""

    rows = _rows(get_engine(settings.ops_store))
    by_route: dict[tuple[str, str], dict] = {}
    for r in rows:  # a run that crosses a minute boundary has two buckets per route: sum them
        agg = by_route.setdefault(
            (r["method"], r["route"]), dict.fromkeys(("requests", "errors_4xx", "errors_5xx"), 0)
        )
        for c in agg:
            agg[c] += r[c]
    health = by_route[("GET", "/api/observability/health")]
    assert health["requests"] >= 5 + 1  # ours plus wait_healthy's probe(s)
    assert health["errors_4xx"] == health["errors_5xx"] == 0
    assert by_route[("GET", "/api/ai/forecast")] == {"requests": 3, "errors_4xx": 3, "errors_5xx": 0}
    assert by_route[("GET", "unmatched")] == {"requests": 1, "errors_4xx": 1, "errors_5xx": 0}
    assert {r["instance"].rsplit(":", 1)[1] for r in rows} == {str(proc.pid)}
    assert all(r["latency_ms_p50"] <= r["latency_ms_p95"] <= r["latency_ms_max"] + 1e-6 for r in rows)

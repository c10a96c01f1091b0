"""The generated request log: the last 14 days, per minute and route, shaped like the ops store's
``request_stats``, with its planted degradations visible in the numbers and recorded in the ground truth."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from chainsync.ops_store.request_stats import COLUMNS
from tools.generator import generate_chain
from tools.generator.requests import PLANTED, REQUEST_LOG_DAYS, ROUTES

END = date(2025, 6, 30)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chain") / "requests"
    generate_chain(out, stores=4, products=10, days=40, seed=11, end=END)
    return out


def test_request_log_covers_the_last_two_weeks_per_minute(chain: Path) -> None:
    log = pl.read_parquet(chain / "request_stats.parquet")
    assert tuple(log.columns) == COLUMNS
    first = datetime.combine(END - timedelta(days=REQUEST_LOG_DAYS - 1), datetime.min.time(), UTC)
    assert log["bucket_start"].min() >= first
    assert log["bucket_start"].max() < first + timedelta(days=REQUEST_LOG_DAYS)
    assert (log["bucket_start"].dt.second() == 0).all()
    assert log.select("bucket_start", "instance", "method", "route").is_unique().all()
    assert set(zip(log["method"], log["route"], strict=True)) == {(r[0], r[1]) for r in ROUTES}
    assert (log["requests"] > 0).all()
    assert (log["errors_4xx"] + log["errors_5xx"] <= log["requests"]).all()
    ordered = (log["latency_ms_p50"] <= log["latency_ms_p95"]) & (
        log["latency_ms_p95"] <= log["latency_ms_max"]
    )
    assert ordered.all()
    manifest = json.loads((chain / "manifest.json").read_text())
    assert manifest["row_counts"]["request_stats"] == log.height


def test_planted_degradations_stand_out_and_are_in_the_ground_truth(chain: Path) -> None:
    log = pl.read_parquet(chain / "request_stats.parquet").with_columns(
        endpoint=pl.col("method") + " " + pl.col("route")
    )
    truth = pl.read_parquet(chain / "ground_truth.parquet").filter(pl.col("route").is_not_null())
    assert truth.height == len(PLANTED)
    assert truth["anomaly_type"].to_list() == [p[0] for p in PLANTED]
    for row in truth.iter_rows(named=True):
        mine = log.filter(pl.col("endpoint") == row["route"])
        inside = pl.col("bucket_start").is_between(row["start_at"], row["end_at"], closed="left")
        during, outside = mine.filter(inside), mine.filter(~inside)
        assert during.height > 0, row
        if row["anomaly_type"] == "latency_regression":
            # Request-weighted p95 (a one-request minute's p95 is its one latency, as the API records it).
            def p95(frame: pl.DataFrame) -> float:
                return float((frame["latency_ms_p95"] * frame["requests"]).sum() / frame["requests"].sum())

            assert p95(during) > 3 * p95(outside), row
        else:
            during_rate = during["errors_5xx"].sum() / during["requests"].sum()
            outside_rate = outside["errors_5xx"].sum() / outside["requests"].sum()
            assert during_rate > 0.15 and outside_rate < 0.01

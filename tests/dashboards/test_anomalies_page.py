"""Anomalies: the flagged store-days by severity, each explained, and the data behind one."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings
from dashboards.auth import Session
from tests.dashboards.snapshot import START, metrics, open_page

DAY = START + timedelta(days=40)


def test_timeline_lists_flagged_days_with_explanations(
    published: Snapshot, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    at = open_page("anomalies", admin)
    shown = metrics(at)
    assert shown == {"Anomalies": "2", "Critical": "1", "Stores affected": "2"}
    listed = at.dataframe[0].value
    assert sorted(listed["store_id"]) == ["S001", "S002"]
    assert set(listed["severity"]) == {"critical", "high"}
    revenue = (
        tables["fct_sales_daily"]
        .filter((pl.col("store_id") == "S001") & (pl.col("sale_date") == DAY))["net_revenue_cents"]
        .sum()
    )
    s001 = listed[listed["store_id"] == "S001"].iloc[0]
    assert str(s001["day"])[:10] == DAY.isoformat()
    assert s001["explanation"].startswith(f"net revenue {revenue / 100:,.2f} vs usual ")


def test_severity_filter_and_the_data_behind(
    published: Snapshot, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    at = open_page("anomalies", admin, store_filter="S001")
    assert metrics(at)["Anomalies"] == "1"
    at.multiselect(key="anomaly_severity").set_value(["high"]).run()
    assert metrics(at)["Anomalies"] == "0"
    at.multiselect(key="anomaly_severity").set_value(["critical"]).run()
    assert metrics(at)["Anomalies"] == "1"
    # Behind it: the store's days around the anomaly, and that day's product lines.
    around, lines = at.dataframe[1].value, at.dataframe[2].value
    assert len(around) == 29  # 14 days either side
    assert sorted(lines["product_id"]) == ["P0001", "P0002", "P0003"]
    expected = tables["fct_sales_daily"].filter((pl.col("store_id") == "S001") & (pl.col("sale_date") == DAY))
    assert lines["net_revenue_cents"].sum() == expected["net_revenue_cents"].sum()


def test_performance_anomalies_are_listed_with_their_numbers(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    import streamlit as st

    hour = datetime(DAY.year, DAY.month, DAY.day, 14)
    tables["performance_anomalies"] = pl.DataFrame(
        {
            "endpoint": ["GET /api/sync/download", "GET /api/sync/download"],
            "hour_start": [hour, hour - timedelta(hours=1)],
            "requests": [420, 400],
            "errors_5xx": [0, 0],
            "error_rate_5xx": [0.0, 0.0],
            "latency_ms_p95": [1450.0, 250.0],
            "expected_latency_p95_ms": [240.0, 240.0],
            "expected_latency_p95_hi_ms": [390.0, 390.0],
            "expected_error_rate": [0.001, 0.001],
            "expected_error_rate_hi": [0.04, 0.04],
            "anomaly_score": [36.1, 0.3],
            "is_anomaly": [True, False],
            "severity": ["critical", "low"],
            "drivers": ["latency_p95", ""],
        }
    )
    st.cache_data.clear()
    publish_snapshot(dashboard_settings.serving, tables, run_id="test-run")
    at = open_page("anomalies", admin)
    assert metrics(at) == {"Anomalies": "3", "Critical": "2", "Stores affected": "2"}
    listed = at.dataframe[0].value
    perf = listed[listed["type"] == "performance"].iloc[0]
    assert perf["subject"] == "GET /api/sync/download" and str(perf["day"])[:10] == DAY.isoformat()
    assert (
        perf["explanation"] == "14:00 UTC, 420 requests; p95 1,450 ms vs usual 240 ms (expected up to 390 ms)"
    )

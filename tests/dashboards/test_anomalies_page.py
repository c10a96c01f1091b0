"""Anomalies: the flagged store-days by severity, each explained, and the data behind one."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from chainsync.serving import Snapshot
from tests.dashboards.snapshot import START, metrics, open_page

DAY = START + timedelta(days=40)


def test_timeline_lists_flagged_days_with_explanations(
    published: Snapshot, tables: dict[str, pl.DataFrame]
) -> None:
    at = open_page("anomalies")
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


def test_severity_filter_and_the_data_behind(published: Snapshot, tables: dict[str, pl.DataFrame]) -> None:
    at = open_page("anomalies", store_filter="S001")
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

"""Inventory: days of cover from stock and forecast, stock-outs; absent tables said so."""

from __future__ import annotations

import polars as pl

from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings
from dashboards.auth import Session
from tests.dashboards.snapshot import infos, metrics, open_page


def test_days_of_cover_and_stock_outs(published: Snapshot, admin: Session) -> None:
    at = open_page("inventory", admin, store_filter="S001")
    shown = metrics(at)
    assert shown["Store × product pairs"] == "3"
    assert shown["Out of stock"] == "1"  # P0002 at 0
    cover = at.dataframe[0].value.set_index("product_id")["days_of_cover"]
    # On hand / forecast 3 units a day.
    assert cover["P0001"] == 10.0 and cover["P0003"] == 30.0 and cover["P0002"] == 0.0
    assert shown["Under 7 days of cover"] == "1"
    assert shown["Median days of cover"] == "10.0"
    notices = infos(at)
    assert any("reorder_suggestions" in i for i in notices)
    assert any("inventory_anomalies" in i for i in notices)


def test_reorder_suggestions_when_published(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    tables["reorder_suggestions"] = pl.DataFrame(
        {"store_id": ["S001", "S002"], "product_id": ["P0002", "P0002"], "reorder_qty": [40, 25]}
    )
    publish_snapshot(dashboard_settings.serving, tables)
    at = open_page("inventory", admin, category_filter="Drinks")
    assert metrics(at)["Units to reorder"] == "65"
    assert not any("reorder_suggestions" in i for i in infos(at))


def test_shrinkage_shows_the_flagged_counts_of_the_store(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    # The columns the pipeline's inventory_anomalies asset writes (shelf counts against expected stock).
    tables["inventory_anomalies"] = pl.DataFrame(
        {
            "store_id": ["S001", "S001", "S002"],
            "product_id": ["P0001", "P0003", "P0001"],
            "counted_level": [4, 29, 1],
            "expected_level": [30, 30, 25],
            "missing_units": [26, 1, 24],
            "is_anomaly": [True, False, True],
            "severity": ["high", "low", "high"],
        }
    )
    publish_snapshot(dashboard_settings.serving, tables)
    at = open_page("inventory", admin, store_filter="S001")
    shown = at.dataframe[-1].value
    assert shown["product_id"].tolist() == ["P0001"]  # S001's flagged count only
    assert shown["missing_units"].tolist() == [26]
    assert not any("inventory_anomalies" in i for i in infos(at))

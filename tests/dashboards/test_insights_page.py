"""Insights: recommendations ranked by priority with their evidence; a clear notice when absent."""

from __future__ import annotations

import polars as pl

from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings
from dashboards.auth import Session
from tests.dashboards.snapshot import infos, metrics, open_page


def test_absent_table_is_explained(published: Snapshot, admin: Session) -> None:
    at = open_page("insights", admin)
    assert any("business_insights" in i for i in infos(at))


def test_ranked_with_evidence(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    tables["business_insights"] = pl.DataFrame(
        {
            "store_id": ["S001", "S002", "S001"],
            "category": ["inventory", "revenue", "operations"],
            "title": ["Reorder tea", "Weekend promotion", "Train cashier"],
            "priority": [0.4, 0.9, 0.1],
            "evidence": ["0 units on hand", "Saturday sales 30 % below", "void rate 6 %"],
            "action": ["Order 40 units", "Run a promotion", "Review voids"],
        }
    )
    publish_snapshot(dashboard_settings.serving, tables)
    at = open_page("insights", admin)
    assert metrics(at)["Recommendations"] == "3"
    assert [e.label.split(" — ")[0] for e in at.expander] == [
        "Weekend promotion",
        "Reorder tea",
        "Train cashier",
    ]
    assert at.dataframe[0].value["title"].tolist()[0] == "Weekend promotion"
    assert any("Saturday sales 30 % below" in m.value for m in at.markdown)

    at = open_page("insights", admin, store_filter="S001")
    assert metrics(at)["Recommendations"] == "2"

"""System: pipeline runs (published snapshots) and asset freshness; API notice when it is down."""

from __future__ import annotations

import polars as pl

from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings
from dashboards.auth import Session
from tests.dashboards.snapshot import LAST, infos, metrics, open_page


def test_runs_and_freshness(
    published: Snapshot, dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    newer = publish_snapshot(dashboard_settings.serving, tables, run_id="second-run")
    at = open_page("system", admin)
    shown = metrics(at)
    assert shown["Tables published"] == "8"
    runs = at.dataframe[0].value
    assert runs["run_id"].tolist() == ["second-run", "test-run"]
    assert runs["current"].tolist() == [True, False]
    assert runs["version"].tolist()[0] == newer.version
    fresh = at.dataframe[1].value.set_index("table")
    assert fresh.loc["fct_sales_daily", "rows"] == tables["fct_sales_daily"].height
    assert fresh.loc["fct_sales_daily", "latest_data"] == LAST.isoformat()
    assert any("API unreachable" in i for i in infos(at))

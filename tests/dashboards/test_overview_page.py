"""Overview: the latest day's sales, transactions and basket, forecast, threat level, sync, freshness."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from chainsync.serving import Snapshot
from dashboards.auth import Session
from tests.dashboards.snapshot import LAST, infos, metrics, open_page


@pytest.mark.parametrize("store", [None, "S002"])
def test_latest_day_against_forecast(
    published: Snapshot, tables: dict[str, pl.DataFrame], store: str | None, admin: Session
) -> None:
    at = open_page("overview", admin, store_filter=store or "All stores")
    sales = tables["fct_sales_daily"]
    if store:
        sales = sales.filter(pl.col("store_id") == store)
    day = sales.filter(pl.col("sale_date") == LAST)
    week_before = sales.filter(pl.col("sale_date") == LAST - timedelta(days=7))
    revenue, txns = int(day["net_revenue_cents"].sum()), int(day["transactions"].sum())
    shown = {m.label: m for m in at.metric}
    assert shown["Net sales"].value == f"{revenue / 100:,.2f}"
    assert shown["Transactions"].value == f"{txns:,}"
    assert shown["Average basket"].value == f"{revenue / txns / 100:,.2f}"
    assert shown["Units sold"].value == f"{int(day['units_sold'].sum()):,}"
    assert shown["Transactions"].delta.startswith(f"{txns - int(week_before['transactions'].sum()):+,}")
    n_series = 3 if store else 6
    first = LAST + timedelta(days=1)
    assert shown[f"Forecast units, {first:%a %d %b}"].value == f"{3 * n_series}"
    assert shown["80 % band"].value == f"{2 * n_series} – {4 * n_series}"


def test_threat_sync_and_freshness(published: Snapshot, admin: Session) -> None:
    at = open_page("overview", admin)
    shown = metrics(at)
    # 12 failed events on the latest security day: "elevated" (10 to 49).
    assert shown["Threat level"] == "ELEVATED"
    assert shown["Terminals synced (last 7 days)"] == "4"
    assert shown["Items rejected (last 7 days)"] == "3"
    assert shown["Snapshot age"] == "0.0 h"
    assert any("test-run" in c.value and "#1234" in c.value for c in at.caption)
    # No API: a clear notice for each live figure, never a traceback.
    notices = infos(at)
    assert any("API unreachable" in i for i in notices)
    assert sum("API unreachable" in i for i in notices) == 4  # today, sync, health, stores: all live


def test_forecast_for_a_given_day_sums_the_series(published: Snapshot) -> None:
    from dashboards.domain import forecasts

    first = LAST + timedelta(days=1)
    planned = forecasts.forecast_on(published, None, first)
    assert planned is not None
    assert (planned["yhat"], planned["lo_80"], planned["hi_80"]) == (3 * 6, 2 * 6, 4 * 6)
    assert forecasts.forecast_on(published, "S002", first)["yhat"] == 3 * 3  # type: ignore[index]
    assert forecasts.forecast_on(published, None, LAST) is None  # history, not forecast

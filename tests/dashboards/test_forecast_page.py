"""The sales-and-forecast page renders from a real published snapshot and shows its numbers."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from chainsync.serving import publish_snapshot
from chainsync.settings import Settings

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def _snapshot_tables() -> dict[str, pl.DataFrame]:
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(60)]
    sales = pl.DataFrame(
        {
            "store_id": ["S001"] * 60 + ["S002"] * 60,
            "product_id": ["P0001"] * 120,
            "sale_date": days * 2,
            "units_sold": [i % 7 + 1 for i in range(60)] + [2] * 60,
            "net_revenue_cents": [100 * (i % 7 + 1) for i in range(60)] + [200] * 60,
        }
    )
    cutoff = days[-1]
    fc_rows = []
    for store in ("S001", "S002"):
        for h in range(1, 91):
            fc_rows.append(
                {
                    "store_id": store,
                    "product_id": "P0001",
                    "ds": cutoff + timedelta(days=h),
                    "horizon_day": h,
                    "yhat": 3.0,
                    "lo_80": 2.0,
                    "hi_80": 4.0,
                    "lo_95": 1.0,
                    "hi_95": 5.0,
                    "model": "AutoTheta",
                    "cutoff": cutoff,
                }
            )
    return {
        "fct_sales_daily": sales,
        "dim_store": pl.DataFrame({"store_id": ["S001", "S002"], "name": ["North", "South"]}),
        "dim_product": pl.DataFrame({"product_id": ["P0001"], "name": ["Coffee"], "category": ["Drinks"]}),
        "demand_forecast": pl.DataFrame(fc_rows),
    }


def test_page_without_snapshot_explains_what_to_do(settings: Settings) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("No serving snapshot" in i.value for i in at.info)


@pytest.mark.parametrize("store", ["All stores", "S001"])
def test_page_shows_snapshot_figures(settings: Settings, store: str) -> None:
    tables = _snapshot_tables()
    publish_snapshot(settings.serving, tables, run_id="test")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    at.selectbox(key="store_filter").set_value(store).run()
    assert not at.exception

    sales = tables["fct_sales_daily"]
    if store != "All stores":
        sales = sales.filter(pl.col("store_id") == store)
    last_28 = sales.group_by("sale_date").agg(pl.col("units_sold").sum()).sort("sale_date").tail(28)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Units, last 28 days"] == f"{int(last_28['units_sold'].sum()):,}"
    n_stores = 2 if store == "All stores" else 1
    assert metrics["Forecast units, next 30 days"] == f"{3.0 * 30 * n_stores:,.0f}"
    shown = at.dataframe[0].value
    assert len(shown) == 30
    assert (shown["lo_95"] <= shown["yhat"]).all() and (shown["yhat"] <= shown["hi_95"]).all()

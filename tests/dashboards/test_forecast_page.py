"""Sales and forecast: figures, the drill chain → store → category → product, the forecast table, models."""

from __future__ import annotations

import polars as pl
import pytest

from chainsync.serving import Snapshot
from chainsync.settings import Settings
from dashboards.auth import Session
from tests.dashboards.snapshot import PRODUCTS, app, infos, metrics, open_page


def test_without_snapshot_every_page_explains_what_to_do(
    dashboard_settings: Settings, admin: Session
) -> None:
    at = app(admin)
    assert not at.exception
    for page in ("forecast", "anomalies", "inventory", "insights", "security", "sync", "system"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, page
        assert any("No serving snapshot" in i for i in infos(at)), page


@pytest.mark.parametrize(("store", "category"), [(None, None), ("S001", None), ("S001", "Drinks")])
def test_figures_match_the_snapshot(
    published: Snapshot,
    tables: dict[str, pl.DataFrame],
    store: str | None,
    category: str | None,
    admin: Session,
) -> None:
    session = {"store_filter": store or "All stores", "category_filter": category or "All categories"}
    at = open_page("forecast", admin, **session)
    sales = tables["fct_sales_daily"]
    products = [p for p, v in PRODUCTS.items() if category is None or v[1] == category]
    sales = sales.filter(pl.col("product_id").is_in(products))
    if store:
        sales = sales.filter(pl.col("store_id") == store)
    last_28 = (
        sales.group_by("sale_date").agg(pl.col("units_sold", "net_revenue_cents").sum()).sort("sale_date")
    )
    last_28 = last_28.tail(28)
    shown = metrics(at)
    assert shown["Units, last 28 days"] == f"{int(last_28['units_sold'].sum()):,}"
    assert shown["Net revenue, last 28 days"] == f"{last_28['net_revenue_cents'].sum() / 100:,.2f}"
    n_series = (1 if store else 2) * len(products)
    assert shown["Forecast units, next 30 days"] == f"{3.0 * 30 * n_series:,.0f}"

    # The drill table is the next level down, and its revenue adds up to the period's revenue.
    breakdown = at.dataframe[0].value
    level = "store_id" if store is None else "category" if category is None else "product_id"
    assert breakdown.columns[0] == level
    period = sales.filter(pl.col("sale_date") > sales["sale_date"].max() - pl.duration(days=90))
    assert breakdown["net_revenue"].sum() == pytest.approx(period["net_revenue_cents"].sum() / 100)
    expected_rows = {"store_id": 2, "category": 2, "product_id": len(products)}[level]
    assert len(breakdown) == expected_rows

    forecast = at.dataframe[1].value
    assert len(forecast) == 30
    assert (forecast["lo_95"] <= forecast["yhat"]).all() and (forecast["yhat"] <= forecast["hi_95"]).all()
    assert any("forecast_accuracy" in i for i in infos(at))  # not published yet: said so, no error


def test_product_drill_shows_its_model(published: Snapshot, admin: Session) -> None:
    at = open_page("forecast", admin, store_filter="S002")
    at.selectbox(key="product_filter").set_value("P0002 — Tea").run()
    assert not at.exception
    assert metrics(at)["Forecast units, next 30 days"] == "90"
    models = at.dataframe[-1].value
    assert models["model"].tolist() == ["CrostonOptimized"] and models["series"].tolist() == [1]
    assert any("CrostonOptimized" in c.value for c in at.caption)


def test_accuracy_is_shown_when_the_snapshot_has_it(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    from chainsync.serving import publish_snapshot

    tables["forecast_accuracy"] = pl.DataFrame(
        {
            "store_id": ["S001", "S001", "S002"],
            "product_id": ["P0001", "P0002", "P0001"],
            "model": ["AutoTheta", "CrostonOptimized", "AutoTheta"],
            "mase": [0.8, 1.2, 0.9],
            "wape": [0.25, 0.5, 0.3],
        }
    )
    publish_snapshot(dashboard_settings.serving, tables)
    at = open_page("forecast", admin, store_filter="S001")
    shown = metrics(at)
    assert shown["Mean mase"] == "1.000"
    assert shown["Mean wape"] == "0.375"
    assert not any("forecast_accuracy" in i for i in infos(at))


def test_coherent_totals_are_used_for_chain_store_and_category(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    from datetime import timedelta

    from chainsync.serving import publish_snapshot
    from tests.dashboards.snapshot import LAST

    rows = [
        {
            "level": level,
            "key": key,
            "ds": LAST + timedelta(days=h),
            "horizon_day": h,
            "yhat": value,
            "lo_80": value - 1,
            "hi_80": value + 1,
            "lo_95": value - 2,
            "hi_95": value + 2,
            "n_series": 3,
        }
        for level, key, value in (
            ("chain", "chain", 100.0),
            ("store", "S001", 40.0),
            ("category", "Drinks", 7.0),
        )
        for h in range(1, 91)
    ]
    tables["demand_forecast_totals"] = pl.DataFrame(rows)
    publish_snapshot(dashboard_settings.serving, tables)
    assert metrics(open_page("forecast", admin))["Forecast units, next 30 days"] == "3,000"
    assert (
        metrics(open_page("forecast", admin, store_filter="S001"))["Forecast units, next 30 days"] == "1,200"
    )
    assert (
        metrics(open_page("forecast", admin, category_filter="Drinks"))["Forecast units, next 30 days"]
        == "210"
    )
    # Store × category is not a reconciled level: the series are summed (S001's two drinks, 3 a day each).
    shown = metrics(open_page("forecast", admin, store_filter="S001", category_filter="Drinks"))
    assert shown["Forecast units, next 30 days"] == "180"

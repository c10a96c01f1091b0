"""Pages by role: a manager (logged in at the real API, stores S001 and S002) sees only their stores' rows in
every table, chart and download of every page, on a snapshot that also holds S003; administrators see
everything. The limit is in the data access (dashboards/data.py), below every widget."""

from __future__ import annotations

import polars as pl
import pytest

from chainsync.serving import publish_snapshot
from chainsync.settings import Settings
from dashboards import data
from dashboards.auth import Session
from tests.dashboards.conftest import MANAGER_STORES
from tests.dashboards.snapshot import LAST, OTHER, metrics, open_page, three_stores

MANAGER_PAGES = ("overview", "forecast", "anomalies", "inventory", "insights", "sync")


@pytest.fixture
def chain(dashboard_settings: Settings) -> dict[str, pl.DataFrame]:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    tables = three_stores()
    publish_snapshot(dashboard_settings.serving, tables, run_id="roles-test")
    return tables


def test_the_data_access_limits_every_table(chain: dict[str, pl.DataFrame]) -> None:
    view = data.snapshot(MANAGER_STORES)
    assert view is not None
    for name in view.tables:
        frame = data.table(view, name)
        if name in data.ADMIN_TABLES:
            assert not data.has(view, name) and frame.is_empty(), name
        elif "store_id" in frame.columns:
            assert set(frame["store_id"].drop_nulls()) <= set(MANAGER_STORES), name
            assert frame["store_id"].null_count() == 0, name  # chain-wide rows are not theirs either
        elif name == "demand_forecast_totals":
            assert frame["level"].unique().to_list() == ["store"] and frame["key"].unique().to_list() == [
                "S001"
            ]
        else:
            assert name in data.SHARED_TABLES, name
    # Administrators see every store.
    everything = data.snapshot(None)
    assert everything is not None
    assert OTHER in data.table(everything, "fct_sales_daily")["store_id"].to_list()
    assert data.has(everything, "fct_ip_risk")


def _shown_stores(at) -> set[str]:  # type: ignore[no-untyped-def]
    """Every store id in any table the page shows (the CSV download holds the same frame)."""
    seen: set[str] = set()
    for frame in (d.value for d in at.dataframe):
        for col in frame.columns:
            values = {str(v) for v in frame[col].dropna().tolist()}
            seen |= {v for v in values if v in {"S001", "S002", OTHER}}
    return seen


@pytest.mark.parametrize("page", MANAGER_PAGES)
def test_a_manager_sees_only_their_stores(
    chain: dict[str, pl.DataFrame], manager: Session, admin: Session, page: str
) -> None:
    at = open_page(page, manager)
    assert at.sidebar.selectbox(key="store_filter").options == ["All stores", "S001 — North", "S002 — South"]
    assert OTHER not in _shown_stores(at)
    assert not any(OTHER in t.value or "East" in t.value for t in [*at.caption, *at.markdown])
    assert len(at.get("download_button")) == len(at.dataframe) - (1 if page == "forecast" else 0)


def test_admins_see_the_other_store_on_the_same_pages(chain: dict[str, pl.DataFrame], admin: Session) -> None:
    seen = set().union(*(_shown_stores(open_page(page, admin)) for page in MANAGER_PAGES))
    assert OTHER in seen


def test_a_managers_figures_add_up_their_stores_only(
    chain: dict[str, pl.DataFrame], manager: Session
) -> None:
    sales = chain["fct_sales_daily"].filter(
        pl.col("store_id").is_in(MANAGER_STORES) & (pl.col("sale_date") == LAST)
    )
    at = open_page("overview", manager)
    assert metrics(at)["Net sales"] == f"{sales['net_revenue_cents'].sum() / 100:,.2f}"
    assert "Threat level" not in metrics(at)  # security figures are for administrators
    # "All stores" is their stores: the series summed (6 of them, 3 a day), not the chain's total of 100.
    at = open_page("forecast", manager)
    assert metrics(at)["Forecast units, next 30 days"] == f"{3.0 * 30 * 6:,.0f}"
    breakdown = at.dataframe[0].value
    assert sorted(breakdown["store_id"]) == ["S001", "S002"]
    assert breakdown["share"].sum() == pytest.approx(1.0)
    at = open_page("insights", manager)
    assert metrics(at)["Recommendations"] == "1"

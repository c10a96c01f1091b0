"""Inventory figures: stock on hand against demand, as days of cover per store and product."""

from __future__ import annotations

import polars as pl
import streamlit as st

from chainsync.serving import Snapshot
from dashboards.data import CACHE_TTL, products, scoped, store_scope, table, view_at


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _stock_cover(
    root: str, version: str, stores: tuple[str, ...] | None, store_id: str | None, category: str | None
) -> pl.DataFrame:
    snap = view_at(root, stores)
    stock = scoped(snap, table(snap, "fct_stock_levels"), store_id=store_id, category=category)
    if stock.is_empty():
        return pl.DataFrame()
    sales = scoped(
        snap,
        table(snap, "fct_sales_daily"),
        store_id=store_id,
        category=category,
        date_col="sale_date",
        days=28,
    )
    demand = sales.group_by("store_id", "product_id").agg(
        (pl.col("units_sold").sum() / 28).alias("avg_daily_units")
    )
    fc = table(snap, "demand_forecast")
    if not fc.is_empty():
        demand_fc = (
            scoped(snap, fc.filter(pl.col("horizon_day") <= 28), store_id=store_id, category=category)
            .group_by("store_id", "product_id")
            .agg(pl.col("yhat").mean().alias("forecast_daily_units"))
        )
        demand = demand.join(demand_fc, on=["store_id", "product_id"], how="full", coalesce=True)
    else:
        demand = demand.with_columns(forecast_daily_units=pl.lit(None, pl.Float64))
    rate = pl.coalesce(pl.col("forecast_daily_units"), pl.col("avg_daily_units"))
    out = (
        stock.select(
            "store_id",
            "product_id",
            "on_hand_units",
            *[c for c in ("last_counted_at", "last_sale_at") if c in stock.columns],
        )
        .join(demand, on=["store_id", "product_id"], how="left")
        .join(products(snap), on="product_id", how="left")
        .with_columns(
            days_of_cover=pl.when(rate > 0).then(pl.col("on_hand_units").clip(lower_bound=0) / rate),
            stock_out=pl.col("on_hand_units") <= 0,
        )
    )
    return out.sort("days_of_cover", nulls_last=True)


def stock_cover(snap: Snapshot, store_id: str | None, category: str | None) -> pl.DataFrame:
    """Per store × product: on hand, average daily units over the last 28 days, forecast daily units (next
    28 days), days of cover (on hand ÷ forecast rate, else the recent rate) and whether it is out of stock."""
    return _stock_cover(str(snap.root), snap.version, store_scope(snap), store_id, category)

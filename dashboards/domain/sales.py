"""Sales figures from the snapshot: daily history, the drill-down one level below a selection, and
the store-day figures of the overview (net revenue in cents, transactions, units, average basket).
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from chainsync.serving import Snapshot
from dashboards.data import CACHE_TTL, products, scoped, store_names, store_scope, table, view_at


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _sales_history(
    root: str,
    version: str,
    stores: tuple[str, ...] | None,
    store_id: str | None,
    category: str | None,
    product_id: str | None,
) -> pl.DataFrame:
    snap = view_at(root, stores)
    sales = scoped(
        snap, table(snap, "fct_sales_daily"), store_id=store_id, category=category, product_id=product_id
    )
    if sales.is_empty():
        return pl.DataFrame(
            schema={"sale_date": pl.Date, "units_sold": pl.Int64, "net_revenue_cents": pl.Int64}
        )
    return (
        sales.group_by("sale_date")
        .agg(pl.col("units_sold").sum(), pl.col("net_revenue_cents").sum())
        .sort("sale_date")
    )


def sales_history(
    snap: Snapshot, store_id: str | None, product_id: str | None = None, category: str | None = None
) -> pl.DataFrame:
    """Daily units and net revenue (cents) for the chain, a store, a category or a product."""
    return _sales_history(str(snap.root), snap.version, store_scope(snap), store_id, category, product_id)


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _drill(
    root: str,
    version: str,
    stores: tuple[str, ...] | None,
    store_id: str | None,
    category: str | None,
    days: int | None,
) -> pl.DataFrame:
    snap = view_at(root, stores)
    sales = scoped(
        snap,
        table(snap, "fct_sales_daily"),
        store_id=store_id,
        category=category,
        date_col="sale_date",
        days=days,
    )
    if sales.is_empty():
        return pl.DataFrame()
    if store_id is None:
        level = "store_id"
        names = pl.DataFrame(
            {"store_id": list(store_names(snap)), "name": list(store_names(snap).values())},
            schema={"store_id": pl.String, "name": pl.String},
        )
    else:
        prods = products(snap).rename({"product_name": "name"})
        sales = sales.join(prods.select("product_id", "category"), on="product_id", how="left")
        level = "category" if category is None else "product_id"
        names = prods.select("product_id", "name") if level == "product_id" else None
    out = (
        sales.group_by(level)
        .agg(
            pl.col("units_sold").sum().alias("units"),
            (pl.col("net_revenue_cents").sum() / 100).alias("net_revenue"),
            pl.col("sale_date").n_unique().alias("days"),
        )
        .sort("net_revenue", descending=True)
    )
    if names is not None and not names.is_empty():
        out = out.join(names, on=level, how="left").select(level, "name", "units", "net_revenue", "days")
    total = out["net_revenue"].sum()
    return out.with_columns(share=pl.col("net_revenue") / total if total else pl.lit(0.0))


def drill(snap: Snapshot, store_id: str | None, category: str | None, days: int | None) -> pl.DataFrame:
    """The next level down from the selection: stores of the chain, categories of a store, products of a
    store's category; units, net revenue and revenue share over the period, largest first."""
    return _drill(str(snap.root), snap.version, store_scope(snap), store_id, category, days)


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _store_days(
    root: str, version: str, stores: tuple[str, ...] | None, store_id: str | None
) -> pl.DataFrame:
    snap = view_at(root, stores)
    features = table(snap, "sales_anomalies")
    if {"net_revenue_cents", "transactions"} <= set(features.columns) and features.height:
        days = (
            scoped(snap, features, store_id=store_id)
            .group_by("sale_date")
            .agg(pl.col("net_revenue_cents").sum(), pl.col("transactions").sum())
        )
        units = (
            scoped(snap, table(snap, "fct_sales_daily"), store_id=store_id)
            .group_by("sale_date")
            .agg(pl.col("units_sold").sum())
        )
        days = days.join(units, on="sale_date", how="left")
    else:
        # Without store-day features a transaction spanning products counts once per product (upper bound).
        sales = scoped(snap, table(snap, "fct_sales_daily"), store_id=store_id)
        if sales.is_empty():
            return pl.DataFrame()
        days = sales.group_by("sale_date").agg(
            pl.col("net_revenue_cents").sum(), pl.col("transactions").sum(), pl.col("units_sold").sum()
        )
    return days.with_columns(
        avg_basket_cents=pl.col("net_revenue_cents")
        / pl.when(pl.col("transactions") > 0).then(pl.col("transactions"))
    ).sort("sale_date")


def store_days(snap: Snapshot, store_id: str | None) -> pl.DataFrame:
    """Per day: net revenue (cents), transactions (sales, not refunds or voids), units, average basket."""
    return _store_days(str(snap.root), snap.version, store_scope(snap), store_id)

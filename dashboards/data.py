"""Data access for the dashboards: the current serving snapshot, read-only.

Tables are cached per snapshot version, so a newly published snapshot is picked up on the next rerun and
a cached table is never served for the wrong version. Dashboards never open the warehouse.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from chainsync.serving import Snapshot, current_snapshot
from chainsync.settings import get_settings


def snapshot() -> Snapshot | None:
    """The snapshot ``current.json`` names right now (a cheap read of two small JSON files)."""
    return current_snapshot(get_settings().serving)


@st.cache_data(ttl=3600, max_entries=64, show_spinner=False)
def _table(root: str, version: str, table: str) -> pl.DataFrame:
    # ``version`` is part of the cache key: a new snapshot never hits an old entry.
    return pl.read_parquet(f"{root}/{table}.parquet")


def table(snap: Snapshot, name: str) -> pl.DataFrame:
    """A snapshot table as a polars frame (empty frame if the snapshot lacks it)."""
    if name not in snap.manifest["tables"]:
        return pl.DataFrame()
    return _table(str(snap.root), snap.version, name)


def sales_history(snap: Snapshot, store_id: str | None, product_id: str | None) -> pl.DataFrame:
    """Daily units and net revenue for the chain, a store, or a store × product."""
    sales = table(snap, "fct_sales_daily")
    if store_id:
        sales = sales.filter(pl.col("store_id") == store_id)
    if product_id:
        sales = sales.filter(pl.col("product_id") == product_id)
    return (
        sales.group_by("sale_date")
        .agg(pl.col("units_sold").sum(), pl.col("net_revenue_cents").sum())
        .sort("sale_date")
    )


def forecast(snap: Snapshot, store_id: str | None, product_id: str | None, horizon: int) -> pl.DataFrame:
    """Forecast units per day, summed bottom-up over the selected series, with summed interval bounds.

    Summing bounds over series is a conservative (wide) interval for a total; per-series bounds are exact."""
    fc = table(snap, "demand_forecast")
    if fc.is_empty():
        return fc
    fc = fc.filter(pl.col("horizon_day") <= horizon)
    if store_id:
        fc = fc.filter(pl.col("store_id") == store_id)
    if product_id:
        fc = fc.filter(pl.col("product_id") == product_id)
    return (
        fc.group_by("ds")
        .agg(pl.col(c).sum() for c in ("yhat", "lo_80", "hi_80", "lo_95", "hi_95"))
        .sort("ds")
    )


def models_used(snap: Snapshot, store_id: str | None, product_id: str | None) -> pl.DataFrame:
    fc = table(snap, "demand_forecast")
    if fc.is_empty():
        return fc
    if store_id:
        fc = fc.filter(pl.col("store_id") == store_id)
    if product_id:
        fc = fc.filter(pl.col("product_id") == product_id)
    return fc.select("store_id", "product_id", "model").unique().group_by("model").len("series").sort("model")

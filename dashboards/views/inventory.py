"""Inventory: days of cover, reorder suggestions, stock-outs and shrinkage."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import charts, data, filters, ui
from dashboards.domain import inventory

st.title("Inventory")
snap = ui.require_snapshot()
f = filters.current()
st.caption(f"Scope: {f.store_id or filters.ALL_STORES} · {f.category or filters.ALL_CATEGORIES}")

if not ui.missing(snap, "fct_stock_levels", "Stock levels"):
    cover = inventory.stock_cover(snap, f.store_id, f.category)
    outs = cover.filter(pl.col("stock_out")) if not cover.is_empty() else cover
    low = cover.filter(pl.col("days_of_cover") < 7) if not cover.is_empty() else cover
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Store × product pairs", f"{cover.height:,}")
    c2.metric("Out of stock", f"{outs.height:,}")
    c3.metric("Under 7 days of cover", f"{low.height:,}")
    median = cover["days_of_cover"].median() if not cover.is_empty() else None
    c4.metric("Median days of cover", "—" if median is None else f"{median:,.1f}")
    if not cover.is_empty():
        st.altair_chart(charts.cover_histogram(cover), width="stretch")
    tab_cover, tab_outs = st.tabs(["Days of cover (lowest first)", "Stock-outs"])
    with tab_cover:
        ui.table(cover, "days_of_cover")
    with tab_outs:
        ui.table(outs, "stock_outs")

st.subheader("Reorder suggestions")
if not ui.missing(snap, "reorder_suggestions", "Reorder suggestions"):
    reorder = data.scoped(
        snap, data.table(snap, "reorder_suggestions"), store_id=f.store_id, category=f.category
    )
    qty = next(
        (
            c
            for c in ("reorder_qty", "reorder_quantity", "suggested_qty", "order_qty")
            if c in reorder.columns
        ),
        None,
    )
    if "needs_reorder" in reorder.columns:
        reorder = reorder.filter(pl.col("needs_reorder"))
    if qty is not None and not reorder.is_empty():
        reorder = reorder.sort(qty, descending=True)
        r1, r2 = st.columns(2)
        r1.metric("Products to reorder", f"{reorder.height:,}")
        r2.metric("Units to reorder", f"{int(reorder[qty].sum()):,}")
    ui.table(reorder, "reorder_suggestions")

st.subheader("Shrinkage and stock anomalies")
if not ui.missing(snap, "inventory_anomalies", "Shrinkage"):
    inv = data.scoped(snap, data.table(snap, "inventory_anomalies"), store_id=f.store_id, category=f.category)
    if "is_anomaly" in inv.columns:
        inv = inv.filter(pl.col("is_anomaly"))
    ui.table(inv, "inventory_anomalies")
ui.footer(snap)

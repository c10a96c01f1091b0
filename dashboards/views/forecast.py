"""Sales and forecast: drill from chain to store, category and product; history with the demand forecast
and its 80/95 % bands; backtest accuracy and the models used."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import charts, data, filters, ui
from dashboards.domain import forecasts, sales

st.title("Sales and forecast")
snap = ui.require_snapshot()
f = filters.current()

# Product: the last step of the drill, within the sidebar's store and category.
choices = data.products(snap, f.category)
labels = ["All products"] + [
    f"{r['product_id']} — {r['product_name']}" if r["product_name"] else r["product_id"]
    for r in choices.iter_rows(named=True)
]
col_product, col_horizon = st.columns([4, 1])
product_label = col_product.selectbox("Product", labels, key="product_filter")
product_id = None if product_label == "All products" else product_label.split(" — ", 1)[0]
horizon = col_horizon.selectbox("Horizon (days)", [7, 14, 30, 90], index=2, key="horizon_filter")

level = " › ".join(x for x in ["Chain", f.store_id, f.category, product_id] if x)
st.caption(f"Drill: {level} · change store and category in the sidebar, product above")

history = sales.sales_history(snap, f.store_id, product_id, f.category)
forecast = forecasts.forecast(snap, f.store_id, product_id, horizon, f.category)

last_28 = history.tail(28)
next_h = forecast["yhat"].sum() if not forecast.is_empty() else 0.0
m1, m2, m3 = st.columns(3)
m1.metric("Units, last 28 days", f"{int(last_28['units_sold'].sum()):,}")
m2.metric("Net revenue, last 28 days", ui.money(last_28["net_revenue_cents"].sum()))
m3.metric(f"Forecast units, next {horizon} days", f"{next_h:,.0f}")

st.altair_chart(charts.history_with_forecast(history, forecast), width="stretch")

if product_id is None:
    breakdown = sales.drill(snap, f.store_id, f.category, f.days)
    next_level = "store" if f.store_id is None else "category" if f.category is None else "product"
    st.subheader(f"By {next_level} ({f.scope})")
    if not breakdown.is_empty():
        st.altair_chart(
            charts.share_bars(breakdown, breakdown.columns[0], "net_revenue", "net revenue"), width="stretch"
        )
    ui.table(breakdown, f"sales_by_{next_level}")

st.subheader("Forecast")
if forecast.is_empty():
    st.info("No demand forecast for this selection in the snapshot.")
ui.table(forecast, "forecast")

st.subheader("Backtest accuracy and models")
acc_col, model_col = st.columns([3, 2])
with acc_col:
    if not ui.missing(snap, "forecast_accuracy", "Backtest accuracy"):
        head, series = forecasts.accuracy(snap, f.store_id, product_id, f.category)
        summary = forecasts.accuracy_summary(head)
        if summary:
            shown = list(summary.items())[:5]
            cols = st.columns(len(shown))
            prefix = "" if head.height == 1 else "Mean "
            for i, (name, value) in enumerate(shown):
                cols[i].metric(f"{prefix}{name}", f"{value:,.3f}")
            days = head["holdout_days"].max() if "holdout_days" in head.columns else None
            st.caption(
                "Backtest on the last "
                + (f"{days} days" if days else "weeks")
                + " before the cutoff: MASE < 1 beats the seasonal naive forecast; coverage is the share of "
                "actuals inside the 80 / 95 % intervals. Series rows below, worst MASE first."
            )
        ui.table(series, "forecast_accuracy")
with model_col:
    models = forecasts.models_used(snap, f.store_id, product_id, f.category)
    if models.is_empty():
        st.caption("No model recorded for this selection.")
    else:
        st.dataframe(models, hide_index=True, width="stretch")
        if product_id is not None and f.store_id is not None:
            st.caption(
                f"Model for {f.store_id} × {product_id}: " + ", ".join(models["model"].cast(pl.String))
            )
ui.footer(snap)

"""Sales and forecast: history with the demand forecast and its 80/95 % bands, chain → store → product."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import charts, data

st.title("Sales and forecast")

snap = data.snapshot()
if snap is None:
    st.info("No serving snapshot yet. Run `chainsync pipeline run` (or `make demo`) to publish one.")
    st.stop()

stores = data.table(snap, "dim_store")
products = data.table(snap, "dim_product")
store_ids = stores["store_id"].sort().to_list() if not stores.is_empty() else []

col_store, col_product, col_horizon = st.columns([2, 3, 1])
store_id = col_store.selectbox("Store", ["All stores", *store_ids], key="store_filter")
store_id = None if store_id == "All stores" else store_id
product_choices = products.sort("product_id") if not products.is_empty() else pl.DataFrame({"product_id": []})
product_labels = ["All products"] + [
    f"{r['product_id']} — {r.get('name', '')}" for r in product_choices.iter_rows(named=True)
]
product_label = col_product.selectbox("Product", product_labels, key="product_filter")
product_id = None if product_label == "All products" else product_label.split(" — ", 1)[0]
horizon = col_horizon.selectbox("Horizon (days)", [7, 14, 30, 90], index=2, key="horizon_filter")

history = data.sales_history(snap, store_id, product_id)
forecast = data.forecast(snap, store_id, product_id, horizon)

last_28 = history.tail(28)
next_h = forecast["yhat"].sum() if not forecast.is_empty() else 0.0
m1, m2, m3 = st.columns(3)
m1.metric("Units, last 28 days", f"{int(last_28['units_sold'].sum()):,}")
m2.metric("Net revenue, last 28 days", f"{last_28['net_revenue_cents'].sum() / 100:,.2f}")
m3.metric(f"Forecast units, next {horizon} days", f"{next_h:,.0f}")

st.altair_chart(charts.history_with_forecast(history, forecast), use_container_width=True)

st.subheader("Forecast")
st.dataframe(forecast, use_container_width=True, hide_index=True)
st.download_button("Download forecast (CSV)", forecast.write_csv(), file_name="forecast.csv", mime="text/csv")
st.subheader("Models")
st.dataframe(data.models_used(snap, store_id, product_id), hide_index=True)
st.caption(f"Snapshot {snap.version}, published {snap.created_at:%Y-%m-%d %H:%M} UTC")

"""Anomalies: a timeline by type and severity, each with its explanation, and the data behind the one
chosen."""

from __future__ import annotations

import polars as pl
import streamlit as st

from chainsync import snapshot_contract as contract
from dashboards import charts, data, filters, ui
from dashboards.domain import anomalies

st.title("Anomalies")
snap = ui.require_snapshot()
f = filters.current()

present = [t for t in anomalies.ANOMALY_TABLES.values() if data.has(snap, t)]
if not present:
    ui.missing(snap, "sales_anomalies", "Anomalies")
    st.stop()
# Tables hidden from this reader (a manager: security and performance) are not "absent".
absent = [
    t
    for t in anomalies.ANOMALY_TABLES.values()
    if t not in present and data.visible(data.store_scope(snap), t)
]
if absent:
    st.caption("Not in this snapshot yet: " + ", ".join(f"`{t}`" for t in absent))

found = anomalies.anomalies(snap, f.store_id, f.days)
severities = st.multiselect(
    "Severity", anomalies.SEVERITY_ORDER, default=["medium", "high", "critical"], key="anomaly_severity"
)
shown = found.filter(pl.col("severity").is_in(severities)) if severities else found

c1, c2, c3 = st.columns(3)
c1.metric("Anomalies", f"{shown.height:,}")
c2.metric("Critical", f"{shown.filter(pl.col('severity') == 'critical').height:,}")
c3.metric("Stores affected", f"{shown['store_id'].drop_nulls().n_unique():,}")
st.caption(f"Scope: {f.scope}")

if shown.is_empty():
    st.success("No anomalies for this selection.")
    ui.footer(snap)
    st.stop()

st.altair_chart(charts.anomaly_timeline(shown), width="stretch")
st.subheader("Anomalies, newest first")
ui.table(shown, "anomalies")

sales = shown.filter(pl.col("type") == "sales")
if not sales.is_empty():
    st.subheader("The data behind an anomaly")
    options = [
        f"{r['store_id']} · {r['day']} · {r['severity']}" for r in sales.head(200).iter_rows(named=True)
    ]
    chosen = st.selectbox("Sales anomaly", options, key="anomaly_pick")
    row = sales.row(options.index(chosen), named=True)
    st.markdown(f"**Why:** {row['explanation']}")
    around, lines = anomalies.anomaly_context(snap, row["store_id"], row["day"])
    if not around.is_empty():
        feature = st.radio(
            "Feature",
            [c for c in contract.STORE_DAY_FEATURES if c in around.columns],
            horizontal=True,
            key="anomaly_feature",
        )
        st.altair_chart(charts.feature_around(around, row["day"], feature), width="stretch")
        ui.table(around, "anomaly_store_days")
    st.markdown(f"Product lines of {row['store_id']} on {row['day']}:")
    ui.table(lines, "anomaly_product_lines")
ui.footer(snap)

"""Insights: the prioritised recommendations with their evidence and the action each asks for."""

from __future__ import annotations

import streamlit as st

from chainsync import snapshot_contract as contract
from dashboards import charts, data, filters, ui
from dashboards.domain import insights

st.title("Insights")
snap = ui.require_snapshot()
f = filters.current()

if ui.missing(snap, contract.BUSINESS_INSIGHTS.name, "Recommendations"):
    st.stop()

# The insights' own `category` is the kind of recommendation, not a product category: filter by store only.
INSIGHTS = contract.BUSINESS_INSIGHTS
shown = data.scoped(snap, data.table(snap, INSIGHTS.name), store_id=f.store_id)
priority = data.declared(shown, INSIGHTS.score_column)
if priority is not None and shown[priority].dtype.is_numeric():
    shown = shown.sort(priority, descending=True, nulls_last=True)
kinds = data.declared(shown, "category")
title = data.declared(shown, "title")
evidence = data.declared(shown, "evidence")
action = data.declared(shown, "action")

c1, c2 = st.columns(2)
c1.metric("Recommendations", f"{shown.height:,}")
if kinds is not None and shown.height:
    c2.metric("Kinds", f"{shown[kinds].n_unique():,}")
st.caption(
    f"Scope: {f.store_id or filters.ALL_STORES}; highest priority first (priority = impact × confidence × "
    "urgency, as the pipeline scores it)"
)
if kinds is not None and shown.height:
    by_kind = shown.group_by(kinds).len("recommendations").sort("recommendations", descending=True)
    st.altair_chart(charts.share_bars(by_kind, kinds, "recommendations", "recommendations"), width="stretch")

for row in shown.head(10).iter_rows(named=True):
    head = row.get(title) if title else None
    score = row.get(priority) if priority else None
    label = f"{head or 'Recommendation'}" + (
        f" — priority {score:,.2f}" if isinstance(score, float | int) else ""
    )
    with st.expander(label, expanded=False):
        if row.get("store_id"):
            st.markdown(f"**Store:** {row['store_id']}")
        if evidence and row.get(evidence) is not None:
            st.markdown(f"**Evidence:** {insights.evidence_text(row[evidence])}")
        if action and row.get(action) is not None:
            st.markdown(f"**Action:** {row[action]}")
st.subheader("All recommendations")
ui.table(shown, "business_insights")
ui.footer(snap)

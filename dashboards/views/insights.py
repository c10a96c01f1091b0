"""Insights: the prioritised recommendations with their evidence and the action each asks for."""

from __future__ import annotations

import streamlit as st

from dashboards import charts, data, filters, ui

st.title("Insights")
snap = ui.require_snapshot()
f = filters.current()

if ui.missing(snap, "business_insights", "Recommendations"):
    st.stop()

# The insights' own `category` is the kind of recommendation, not a product category: filter by store only.
insights = data.scoped(snap, data.table(snap, "business_insights"), store_id=f.store_id)
priority = next((c for c in ("priority_score", "priority", "score") if c in insights.columns), None)
if priority is not None and insights[priority].dtype.is_numeric():
    insights = insights.sort(priority, descending=True, nulls_last=True)
kinds = next((c for c in ("category", "insight_type", "kind", "type") if c in insights.columns), None)

c1, c2 = st.columns(2)
c1.metric("Recommendations", f"{insights.height:,}")
if kinds is not None and insights.height:
    c2.metric("Kinds", f"{insights[kinds].n_unique():,}")
st.caption(
    f"Scope: {f.store_id or filters.ALL_STORES}; highest priority first (priority = impact × confidence × "
    "urgency, as the pipeline scores it)"
)
if kinds is not None and insights.height:
    by_kind = insights.group_by(kinds).len("recommendations").sort("recommendations", descending=True)
    st.altair_chart(charts.share_bars(by_kind, kinds, "recommendations", "recommendations"), width="stretch")

title = next((c for c in ("title", "headline", "summary", "recommendation") if c in insights.columns), None)
evidence = next((c for c in ("evidence", "detail", "rationale") if c in insights.columns), None)
action = next((c for c in ("action", "recommended_action", "next_step") if c in insights.columns), None)
for row in insights.head(10).iter_rows(named=True):
    head = row.get(title) if title else None
    score = row.get(priority) if priority else None
    label = f"{head or 'Recommendation'}" + (
        f" — priority {score:,.2f}" if isinstance(score, float | int) else ""
    )
    with st.expander(label, expanded=False):
        if row.get("store_id"):
            st.markdown(f"**Store:** {row['store_id']}")
        if evidence and row.get(evidence) is not None:
            st.markdown(f"**Evidence:** {data.evidence_text(row[evidence])}")
        if action and row.get(action) is not None:
            st.markdown(f"**Action:** {row[action]}")
st.subheader("All recommendations")
ui.table(insights, "business_insights")
ui.footer(snap)

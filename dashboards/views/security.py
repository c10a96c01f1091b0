"""Security: threat level, riskiest IPs and users, the event timeline, blocks in force, unusual data
access."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import api, charts, data, filters, ui
from dashboards.domain import security

ui.require_admin("Security")
st.title("Security")
snap = ui.require_snapshot()
f = filters.current()

threat = security.threat(snap)
if ui.missing(snap, "fct_security_events", "Security events"):
    st.stop()
events = security.security_events(snap, f.store_id, f.days)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Threat level", (threat["level"] or "unknown").upper(), help=threat["basis"])
c2.metric("Security events", f"{events.height:,}")
c3.metric("Failed", f"{int(events['is_failure'].sum()) if events.height else 0:,}")
c4.metric("Distinct source IPs", f"{events['source_ip'].drop_nulls().n_unique() if events.height else 0:,}")
st.caption(
    f"{threat['basis']} · scope: {f.store_id or filters.ALL_STORES}, "
    + (f"last {f.days} days" if f.days else "all history")
)

if events.height:
    st.altair_chart(charts.events_timeline(events), width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Riskiest IPs")
    risk = security.ip_risk(snap)
    flagged = security.flagged_ips(snap, f.days) if risk.is_empty() else pl.DataFrame()
    if not risk.is_empty():
        ui.table(risk, "ip_risk")
    elif not flagged.is_empty():
        st.caption("Flagged by the security anomaly model (`fct_ip_risk` not in this snapshot yet).")
        ui.table(flagged, "flagged_ips")
    else:
        st.caption("Ranked by failed events (`fct_ip_risk` not in this snapshot yet).")
        ui.table(security.risky(events, "source_ip"), "risky_ips")
with right:
    st.subheader("Riskiest users")
    ui.table(security.risky(events, "username"), "risky_users")

st.subheader("Blocks in force")


def live_blocks() -> None:
    # Blocks are decided by the API and kept in its ops store: read them live (admin login needed).
    live = api.security_status()
    if live.ok:
        st.metric("Threat level (live)", str(live.data.get("threat_level", "?")).upper())
        if live.data.get("dry_run"):
            st.caption("Dry run: decisions are logged, not enforced.")
        blocks = pl.DataFrame(live.data.get("active_blocks") or [], infer_schema_length=None)
        ui.table(blocks, "blocks_in_force")
    else:
        api.notice(live, "blocks")
        if data.has(snap, "fct_ip_risk"):
            st.caption(
                "From the last snapshot: the addresses at the block score (`risk_level` critical). The API "
                "decides and expires blocks; log in as an admin with the API reachable for the live list."
            )
            ui.table(security.blocks_in_force(security.ip_risk(snap)), "blocks_in_force")


ui.live(live_blocks)

st.subheader("Unusual data access")
if data.has(snap, "access_anomalies"):
    st.caption(
        "Users and terminals whose reads departed from their own history (volume, stores read, stores never "
        "read before, off-hours share), each against their own earlier days."
    )
    ui.table(security.unusual_access(snap, f.store_id, f.days), "unusual_access")
else:
    st.caption("`access_anomalies` not in this snapshot yet (published by a pipeline run that includes it).")

st.subheader("Events")
ui.table(events.sort("occurred_at", descending=True), "security_events")
ui.footer(snap)

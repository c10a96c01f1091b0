"""Sync: terminals, lag, clock skew, open conflicts and dead letters — sessions from the snapshot, live
device status from the API."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import api, charts, filters, ui
from dashboards.domain import sync

st.title("Sync")
snap = ui.require_snapshot()
f = filters.current()


def live_devices() -> None:
    st.subheader("Live device status")
    status = api.sync_status()
    health = api.sync_health()
    if health.ok:
        h = health.data
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Sync service", str(h.get("status", "?")).upper())
        c2.metric("Open conflicts", f"{h.get('open_conflicts', 0):,}")
        c3.metric("Dead letters", f"{h.get('dead_letters', 0):,}")
        c4.metric("Error rate", f"{100 * float(h.get('error_rate') or 0):.1f} %")
        oldest = h.get("oldest_unsynced_device")
        if oldest:
            st.caption(
                f"Longest without an upload: {oldest['store_id']} / {oldest['device_id']}, "
                f"{oldest['lag_seconds'] / 60:,.0f} min"
            )
    else:
        api.notice(health, "sync health")
    if status.ok:
        devices = pl.DataFrame(
            [
                {
                    "store_id": d["store_id"],
                    "device_id": d["device_id"],
                    "last_upload_at": (d.get("last_checkpoint") or {}).get("upload_at"),
                    "lag_seconds": d.get("lag_seconds"),
                    "clock_skew_seconds": d.get("clock_skew_seconds"),
                    "pending": d.get("pending"),
                    "rejected": d.get("rejected"),
                    "open_conflicts": d.get("open_conflicts"),
                    "offline_since": d.get("offline_since"),
                }
                for d in status.data.get("devices", [])
                if f.store_id is None or d["store_id"] == f.store_id
            ]
        )
        ui.table(devices, "sync_devices_live")
        dead = [
            {"store_id": d["store_id"], "device_id": d["device_id"], **{k: str(v) for k, v in x.items()}}
            for d in status.data.get("devices", [])
            for x in d.get("dead_letters", [])
            if f.store_id is None or d["store_id"] == f.store_id
        ]
        if dead:
            st.markdown("Recent dead letters")
            ui.table(pl.DataFrame(dead), "dead_letters")
    else:
        api.notice(status, "device status")


ui.live(live_devices)

st.subheader("Sync sessions in the snapshot")
if not ui.missing(snap, "fct_sync_sessions", "Sync sessions"):
    sessions = sync.sync_sessions(snap, f.store_id, f.days)
    terms = sync.terminals(sessions)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Terminals", f"{terms.height:,}")
    c2.metric("Sessions", f"{sessions.height:,}")
    c3.metric("Items rejected", f"{int(terms['rejected'].sum()) if terms.height else 0:,}")
    c4.metric("Worst clock skew (s)", f"{int(terms['worst_skew_s'].max() or 0) if terms.height else 0:,}")
    if sessions.height:
        st.altair_chart(charts.sync_lag(sessions), width="stretch")
    st.markdown("Terminals")
    ui.table(terms, "sync_terminals")
    st.markdown("Sessions")
    ui.table(sessions.sort("synced_at", descending=True), "sync_sessions")
ui.footer(snap)

"""System: API health, latency and errors (live), pipeline runs (published snapshots), asset freshness."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import api, charts, ui
from dashboards.domain import system

ui.require_admin("System")
st.title("System")
snap = ui.require_snapshot()


def live_api() -> None:
    st.subheader("API")
    health = api.health()
    if health.ok:
        h = health.data
        c1, c2, c3 = st.columns(3)
        c1.metric("Status", str(h.get("status", "?")).upper())
        c2.metric("Version", str(h.get("version", "?")))
        c3.metric("Ops store", "reachable" if h.get("ops_store_reachable") else "unreachable")
        checks = h.get("checks") or {}
        if checks:
            ui.table(
                pl.DataFrame(
                    [
                        {"check": k, "status": v.get("status"), "detail": v.get("detail")}
                        for k, v in checks.items()
                    ],
                    schema={"check": pl.String, "status": pl.String, "detail": pl.String},
                ),
                "api_health_checks",
            )
    else:
        api.notice(health, "API health")

    perf = api.performance()
    if perf.ok:
        p = perf.data
        overall = {
            k: v for k, v in p.items() if k not in ("slowest", "endpoints") and not isinstance(v, dict | list)
        }
        if overall:
            cols = st.columns(min(len(overall), 5))
            for i, (k, v) in enumerate(list(overall.items())[:5]):
                cols[i].metric(k.replace("_", " "), f"{v:,.2f}" if isinstance(v, float) else str(v))
        slowest = pl.DataFrame(p.get("slowest") or [])
        if not slowest.is_empty() and {"p50_ms", "p95_ms", "p99_ms"} <= set(slowest.columns):
            st.altair_chart(charts.latency_bars(slowest), width="stretch")
        ui.table(slowest, "api_slowest_endpoints")
    else:
        api.notice(perf, "API latency and errors")


ui.live(live_api)

st.subheader("Pipeline runs")
fresh = system.freshness(snap)
c1, c2, c3 = st.columns(3)
c1.metric("Current snapshot age", f"{fresh['age_hours']:.1f} h")
c2.metric("Tables published", f"{len(snap.tables):,}")
c3.metric("Events watermark", "—" if fresh["events_seq"] is None else f"#{fresh['events_seq']:,}")
ui.table(system.pipeline_runs(snap), "pipeline_runs")

st.subheader("Asset freshness")
ui.table(system.asset_freshness(snap), "asset_freshness")
ui.footer(snap)

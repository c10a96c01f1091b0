"""Overview: the latest day's sales, transactions and basket against forecast; threat level; sync health;
pipeline freshness. Figures from the snapshot; live ones from the API when it answers."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import streamlit as st

from dashboards import api, charts, filters, ui
from dashboards.domain import forecasts, sales, security, sync, system

st.title("Overview")
snap = ui.require_snapshot()
f = filters.current()
st.caption(f"Scope: {f.store_id or filters.ALL_STORES} (the store filter applies; category does not)")

days = sales.store_days(snap, f.store_id)
if days.is_empty():
    st.info("The snapshot holds no sales yet.")
else:
    latest = days.row(days.height - 1, named=True)
    week_ago = days.filter(pl.col("sale_date") == latest["sale_date"] - timedelta(days=7))
    prior = week_ago.row(0, named=True) if week_ago.height else None

    def delta(col: str, scale: float = 1.0, fmt: str = "{:+,.0f}") -> str | None:
        if prior is None or prior[col] is None or latest[col] is None:
            return None
        return fmt.format((latest[col] - prior[col]) * scale) + " vs a week before"

    st.subheader(f"Latest day in the snapshot: {latest['sale_date']:%A %d %B %Y}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(
        "Net sales", ui.money(latest["net_revenue_cents"]), delta("net_revenue_cents", 0.01, "{:+,.2f}")
    )
    c2.metric("Transactions", f"{int(latest['transactions']):,}", delta("transactions"))
    c3.metric(
        "Average basket",
        ui.money(latest["avg_basket_cents"]),
        delta("avg_basket_cents", 0.01, "{:+,.2f}"),
    )
    c4.metric("Units sold", f"{int(latest['units_sold'] or 0):,}", delta("units_sold"))

    nxt = forecasts.next_day_forecast(snap, f.store_id)
    if nxt is None:
        st.info("No demand forecast in this snapshot.")
    else:
        f1, f2 = st.columns(2)
        f1.metric(
            f"Forecast units, {nxt['ds']:%a %d %b}",
            f"{nxt['yhat']:,.0f}",
            help="Sum of the series forecasts for the first forecast day; band: summed 80 % bounds.",
        )
        f2.metric("80 % band", f"{nxt['lo_80']:,.0f} – {nxt['hi_80']:,.0f}")
        inside = nxt["lo_80"] <= (latest["units_sold"] or 0) <= nxt["hi_80"]
        st.caption(
            f"The latest day's {int(latest['units_sold'] or 0):,} units are "
            + ("inside" if inside else "outside")
            + " the next day's 80 % band."
        )
    st.altair_chart(
        charts.daily_bars(days.tail(56), "sale_date", "net_revenue_cents", "net sales (cents)"),
        width="stretch",
    )


def today_so_far() -> None:
    st.subheader("Today so far (live from the API)")
    today = api.sales_today(f.store_id)
    if today.ok:
        total = today.data["total"]
        t1, t2, t3 = st.columns(3)
        t1.metric("Net sales today (live)", ui.money(total["net_revenue_cents"]))
        t2.metric("Transactions today (live)", f"{total['transactions']:,}")
        t3.metric("Average basket today (live)", ui.money(total["avg_basket_cents"]))
        st.caption(f"Refunds {total['refunds']:,}, voids {total['voids']:,}, units {total['units']:,}.")
        days_now = {s["business_day"] for s in today.data["stores"]}
        planned = (
            forecasts.forecast_on(snap, f.store_id, date.fromisoformat(min(days_now))) if days_now else None
        )
        if planned is None:
            st.caption("No forecast in this snapshot covers today; the next pipeline run will add one.")
        else:
            st.caption(
                f"Units so far today: {total['units']:,}, against a whole-day forecast of "
                f"{planned['yhat']:,.0f} (80 % band {planned['lo_80']:,.0f} – {planned['hi_80']:,.0f})."
            )
    else:
        api.notice(today, "today's sales")


ui.live(today_so_far)


def sync_service() -> None:
    live = api.sync_health()
    if live.ok:
        st.metric("Sync service (live)", str(live.data.get("status", "?")).upper())
        st.caption(
            f"{live.data.get('open_conflicts', 0)} open conflicts, "
            f"{live.data.get('dead_letters', 0)} dead letters"
        )
    else:
        api.notice(live, "sync health")


def api_health() -> None:
    health = api.health()
    if health.ok:
        st.metric("API (live)", str(health.data.get("status", "?")).upper())
        if health.data.get("degraded"):
            st.caption("Degraded: " + ", ".join(health.data["degraded"]))
    else:
        api.notice(health, "API health")


def stores_this_week() -> None:
    stores_live = api.ai_dashboard()
    if stores_live.ok:
        rows = [
            {k: v for k, v in store.items() if not isinstance(v, dict | list)}
            for store in stores_live.data.get("stores", [])
            if f.store_id is None or store.get("store_id") == f.store_id
        ]
        ui.table(pl.DataFrame(rows), "stores_this_week")
        st.caption(
            "Forecast units for the next 7 days with the 80 % band, anomalies flagged over the last 7 days "
            "of data, products to reorder and at stockout risk — as `/api/ai/dashboard` answers for your "
            "stores."
        )
    else:
        api.notice(stores_live, "store summary")


st.divider()
# Security figures are for administrators: a manager's overview leaves the threat level out.
columns = st.columns(3 if ui.is_admin() else 2)
if ui.is_admin():
    with columns[0]:
        st.subheader("Threat level")
        threat = security.threat(snap)
        st.metric("Threat level", (threat["level"] or "unknown").upper())
        st.caption(threat["basis"])
with columns[-2]:
    st.subheader("Sync health")
    sessions = sync.sync_sessions(snap, f.store_id, 7)
    terms = sync.terminals(sessions)
    st.metric("Terminals synced (last 7 days)", f"{terms.height:,}")
    if not terms.is_empty():
        st.metric("Items rejected (last 7 days)", f"{int(terms['rejected'].sum()):,}")
    ui.live(sync_service)
with columns[-1]:
    st.subheader("Pipeline freshness")
    fresh = system.freshness(snap)
    st.metric("Snapshot age", f"{fresh['age_hours']:.1f} h")
    st.caption(
        f"Published {fresh['created_at']:%Y-%m-%d %H:%M} UTC by run {fresh['run_id'] or '—'}; "
        f"events up to #{fresh['events_seq'] if fresh['events_seq'] is not None else '—'}"
    )
    ui.live(api_health)
st.divider()
st.subheader("Stores this week (live from the API)")
ui.live(stores_this_week)
ui.footer(snap)

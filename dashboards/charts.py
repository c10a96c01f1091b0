"""Altair charts for the dashboards. Each function takes polars frames and returns a chart."""

from __future__ import annotations

import altair as alt
import polars as pl


def history_with_forecast(
    history: pl.DataFrame, forecast: pl.DataFrame, days_back: int = 120
) -> alt.LayerChart:
    """Units per day: the last ``days_back`` days of history, then the forecast with 80 and 95 % bands."""
    hist = history.tail(days_back).select(
        pl.col("sale_date").alias("day"), pl.col("units_sold").alias("units")
    )
    hist_chart = (
        alt.Chart(hist.to_pandas())
        .mark_line(color="#1f77b4")
        .encode(x=alt.X("day:T", title="day"), y=alt.Y("units:Q", title="units per day"))
    )
    layers: list[alt.Chart] = []
    if not forecast.is_empty():
        fc = forecast.rename({"ds": "day"}).to_pandas()
        base = alt.Chart(fc).encode(x="day:T")
        layers = [
            base.mark_area(opacity=0.15, color="#ff7f0e").encode(y="lo_95:Q", y2="hi_95:Q"),
            base.mark_area(opacity=0.30, color="#ff7f0e").encode(y="lo_80:Q", y2="hi_80:Q"),
            base.mark_line(color="#ff7f0e", strokeDash=[4, 2]).encode(
                y=alt.Y("yhat:Q", title="units per day")
            ),
        ]
    return alt.layer(hist_chart, *layers).properties(height=360)


SEVERITY_COLORS = alt.Scale(
    domain=["low", "medium", "high", "critical"], range=["#9ecae1", "#fdae6b", "#e6550d", "#a50f15"]
)


def daily_bars(frame: pl.DataFrame, x: str, y: str, title: str, color: str = "#1f77b4") -> alt.Chart:
    """One bar per day."""
    return (
        alt.Chart(frame.select(x, y).to_pandas())
        .mark_bar(color=color)
        .encode(x=alt.X(f"{x}:T", title="day"), y=alt.Y(f"{y}:Q", title=title), tooltip=[f"{x}:T", f"{y}:Q"])
        .properties(height=220)
    )


def share_bars(frame: pl.DataFrame, label: str, value: str, title: str) -> alt.Chart:
    """Horizontal bars, largest first (the drill-down breakdown)."""
    return (
        alt.Chart(frame.head(25).select(label, value).to_pandas())
        .mark_bar(color="#1f77b4")
        .encode(
            y=alt.Y(f"{label}:N", sort="-x", title=None),
            x=alt.X(f"{value}:Q", title=title),
            tooltip=[f"{label}:N", alt.Tooltip(f"{value}:Q", format=",.2f")],
        )
        .properties(height=max(120, 22 * min(frame.height, 25)))
    )


def anomaly_timeline(frame: pl.DataFrame) -> alt.Chart:
    """Anomalies as points: day across, type down, colour by severity, size by score."""
    return (
        alt.Chart(frame.select("day", "type", "store_id", "severity", "score", "explanation").to_pandas())
        .mark_circle(opacity=0.8)
        .encode(
            x=alt.X("day:T", title="day"),
            y=alt.Y("type:N", title=None),
            color=alt.Color("severity:N", scale=SEVERITY_COLORS),
            size=alt.Size("score:Q", legend=None),
            tooltip=["day:T", "type:N", "store_id:N", "severity:N", "explanation:N"],
        )
        .properties(height=200)
    )


def feature_around(frame: pl.DataFrame, day: object, feature: str) -> alt.LayerChart:
    """A store's daily ``feature`` around an anomaly, with the anomalous day marked."""
    base = alt.Chart(frame.select("sale_date", feature).to_pandas()).encode(
        x=alt.X("sale_date:T", title="day")
    )
    line = base.mark_line(point=True).encode(y=alt.Y(f"{feature}:Q", title=feature))
    rule = (
        alt.Chart(pl.DataFrame({"sale_date": [day]}).to_pandas())
        .mark_rule(color="#a50f15")
        .encode(x="sale_date:T")
    )
    return alt.layer(line, rule).properties(height=220)


def cover_histogram(frame: pl.DataFrame) -> alt.Chart:
    """How many store × product pairs have each band of days of cover."""
    bands = frame.filter(pl.col("days_of_cover").is_not_null()).select(
        pl.col("days_of_cover").clip(upper_bound=60).alias("days_of_cover")
    )
    return (
        alt.Chart(bands.to_pandas())
        .mark_bar(color="#2ca02c")
        .encode(
            x=alt.X("days_of_cover:Q", bin=alt.Bin(step=3), title="days of cover (60+ folded in)"),
            y=alt.Y("count():Q", title="store × product pairs"),
        )
        .properties(height=220)
    )


def events_timeline(frame: pl.DataFrame) -> alt.Chart:
    """Security events per day, stacked by kind."""
    daily = frame.group_by("event_date", "security_kind").len("events")
    return (
        alt.Chart(daily.to_pandas())
        .mark_bar()
        .encode(
            x=alt.X("event_date:T", title="day"),
            y=alt.Y("events:Q", title="events"),
            color=alt.Color("security_kind:N", title="kind"),
            tooltip=["event_date:T", "security_kind:N", "events:Q"],
        )
        .properties(height=240)
    )


def sync_lag(frame: pl.DataFrame) -> alt.Chart:
    """Offline spell (minutes) of each sync session over time, one colour per terminal."""
    data = frame.select(
        "synced_at",
        "device_id",
        (pl.col("offline_seconds") / 60).alias("offline_minutes"),
        "clock_skew_seconds",
    )
    return (
        alt.Chart(data.to_pandas())
        .mark_circle(size=40)
        .encode(
            x=alt.X("synced_at:T", title="synced at"),
            y=alt.Y("offline_minutes:Q", title="offline before sync (min)"),
            color=alt.Color("device_id:N", title="terminal"),
            tooltip=["synced_at:T", "device_id:N", "offline_minutes:Q", "clock_skew_seconds:Q"],
        )
        .properties(height=240)
    )


def latency_bars(frame: pl.DataFrame) -> alt.Chart:
    """p50 / p95 / p99 latency (ms) per endpoint."""
    long = frame.unpivot(
        index="endpoint", on=["p50_ms", "p95_ms", "p99_ms"], variable_name="percentile", value_name="ms"
    )
    return (
        alt.Chart(long.to_pandas())
        .mark_bar()
        .encode(
            y=alt.Y("endpoint:N", title=None),
            x=alt.X("ms:Q", title="latency (ms)"),
            color="percentile:N",
            yOffset="percentile:N",
            tooltip=["endpoint:N", "percentile:N", "ms:Q"],
        )
        .properties(height=max(120, 40 * frame.height))
    )

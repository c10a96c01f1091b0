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

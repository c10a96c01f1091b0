"""Forecast figures: units per day with their bounds for a selection (the pipeline's coherent totals
where it has them), the models in use, backtest accuracy, and single days of the forecast.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import polars as pl
import streamlit as st

from chainsync.serving import Snapshot
from dashboards.data import CACHE_TTL, scoped, store_scope, table, view_at


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _forecast(
    root: str,
    version: str,
    stores: tuple[str, ...] | None,
    store_id: str | None,
    category: str | None,
    product_id: str | None,
    horizon: int,
) -> pl.DataFrame:
    snap = view_at(root, stores)
    totals = table(snap, "demand_forecast_totals")
    level = _total_level(store_id, category, product_id)
    if level is not None and {"level", "key"} <= set(totals.columns):
        picked = totals.filter(
            (pl.col("level") == level[0]) & (pl.col("key") == level[1]) & (pl.col("horizon_day") <= horizon)
        )
        if picked.height:
            return picked.select("ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95").sort("ds")
    fc = table(snap, "demand_forecast")
    if fc.is_empty():
        return fc
    fc = scoped(
        snap,
        fc.filter(pl.col("horizon_day") <= horizon),
        store_id=store_id,
        category=category,
        product_id=product_id,
    )
    return (
        fc.group_by("ds")
        .agg(pl.col(c).sum() for c in ("yhat", "lo_80", "hi_80", "lo_95", "hi_95"))
        .sort("ds")
    )


def _total_level(
    store_id: str | None, category: str | None, product_id: str | None
) -> tuple[str, str] | None:
    """The demand_forecast_totals (level, key) of a selection, if it is one the pipeline reconciles."""
    if product_id is not None or (store_id and category):
        return None
    if store_id:
        return ("store", store_id)
    if category:
        return ("category", category)
    return ("chain", "chain")


def forecast(
    snap: Snapshot,
    store_id: str | None,
    product_id: str | None,
    horizon: int,
    category: str | None = None,
) -> pl.DataFrame:
    """Forecast units per day for the selection, with 80 and 95 % bounds: the pipeline's coherent totals
    (demand_forecast_totals) for the chain, a store or a category when the snapshot has them; otherwise the
    series summed bottom-up with summed bounds (a conservative, wide interval for a total)."""
    return _forecast(str(snap.root), snap.version, store_scope(snap), store_id, category, product_id, horizon)


def models_used(
    snap: Snapshot, store_id: str | None, product_id: str | None, category: str | None = None
) -> pl.DataFrame:
    """How many series each forecasting model serves in the selection."""
    fc = scoped(
        snap, table(snap, "demand_forecast"), store_id=store_id, category=category, product_id=product_id
    )
    if fc.is_empty() or "model" not in fc.columns:
        return pl.DataFrame()
    extra = [c for c in ("pattern", "confidence") if c in fc.columns]
    per_series = fc.group_by("store_id", "product_id").agg(pl.col("model", *extra).first())
    aggs = [pl.len().alias("series")]
    if "confidence" in extra:
        aggs.append(pl.col("confidence").mean().round(3).alias("mean_confidence"))
    if "pattern" in extra:
        aggs.append(pl.col("pattern").unique().sort().str.join(", ").alias("demand_patterns"))
    return per_series.group_by("model").agg(aggs).sort(["series", "model"], descending=[True, False])


def accuracy(
    snap: Snapshot, store_id: str | None, product_id: str | None, category: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Backtest accuracy (forecast_accuracy) for the selection: the row(s) at its own level (chain, store,
    category or series) for the headline, and the series rows within it, worst MASE first."""
    acc = table(snap, "forecast_accuracy")
    if "level" not in acc.columns:
        rows = scoped(snap, acc, store_id=store_id, category=category, product_id=product_id)
        return rows, rows
    series = scoped(
        snap,
        acc.filter(pl.col("level") == "series"),
        store_id=store_id,
        category=category,
        product_id=product_id,
    )
    if "mase" in series.columns:
        series = series.sort("mase", descending=True, nulls_last=True)
    if product_id is not None or (store_id and category):
        return series, series
    if store_id:
        head = acc.filter((pl.col("level") == "store") & (pl.col("store_id") == store_id))
    elif category:
        head = acc.filter((pl.col("level") == "category") & (pl.col("category") == category))
    else:
        head = acc.filter(pl.col("level") == "chain")
    return (head if head.height else series), series


def accuracy_summary(acc: pl.DataFrame) -> dict[str, float]:
    """Mean of each accuracy metric the table has (MASE, WAPE, bias, coverage), over its rows."""
    out: dict[str, float] = {}
    for col in acc.columns:
        low = col.lower()
        if (
            any(k in low for k in ("mase", "wape", "bias", "coverage", "smape", "mae"))
            and acc[col].dtype.is_numeric()
        ):
            value = acc[col].drop_nulls().drop_nans().mean() if acc[col].dtype.is_float() else acc[col].mean()
            if value is not None:
                out[col] = float(value)  # type: ignore[arg-type]
    return out


def next_day_forecast(snap: Snapshot, store_id: str | None) -> dict[str, Any] | None:
    """The first forecast day: its date and summed yhat and 80 % bounds (units)."""
    fc = forecast(snap, store_id, None, 1)
    if fc.is_empty():
        return None
    return fc.row(0, named=True)


def forecast_on(snap: Snapshot, store_id: str | None, day: date) -> dict[str, Any] | None:
    """The forecast for one day (summed yhat and 80 % bounds, units), or None when no forecast covers it."""
    fc = forecast(snap, store_id, None, 90)
    if fc.is_empty():
        return None
    row = fc.filter(pl.col("ds") == day)
    return row.row(0, named=True) if row.height else None

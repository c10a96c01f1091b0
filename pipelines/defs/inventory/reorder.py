"""Reorder suggestions per store x product from the demand forecast's quantiles over the product's lead time.

For a product with lead time ``L`` days:

- ``lead_time_demand`` = Σ yhat over forecast days 1..L (units);
- daily forecast spread σ_d = (hi_80 − lo_80) / (2 · 1.2816) (the 80 % interval of a normal), and over the
  lead time σ_L = sqrt(Σ σ_d²) (independent days);
- ``safety_stock`` = z(service level) · σ_L, with z = 1.645 for the default 95 % cycle service level;
- ``reorder_point`` = lead_time_demand + safety_stock;
- ``reorder_quantity`` = max(0, reorder_point + demand over the review period (7 days) − on_hand_units),
  rounded up to whole units, when on_hand_units <= reorder_point, else 0;
- ``days_of_cover`` = on_hand_units / mean daily forecast over the next 30 days (null when no demand is
  forecast), and ``stockout_risk`` = days_of_cover < lead_time_days.
"""

from __future__ import annotations

from statistics import NormalDist

import polars as pl

SERVICE_LEVEL = 0.95
REVIEW_DAYS = 7
COVER_WINDOW_DAYS = 30
Z_80 = NormalDist().inv_cdf(0.9)

REORDER_SCHEMA = pl.Schema(
    {
        "store_id": pl.String(),
        "product_id": pl.String(),
        "category": pl.String(),
        "on_hand_units": pl.Float64(),
        "avg_daily_demand": pl.Float64(),
        "days_of_cover": pl.Float64(),
        "lead_time_days": pl.Int32(),
        "lead_time_demand": pl.Float64(),
        "safety_stock": pl.Float64(),
        "reorder_point": pl.Float64(),
        "reorder_quantity": pl.Int64(),
        "needs_reorder": pl.Boolean(),
        "stockout_risk": pl.Boolean(),
        "service_level": pl.Float64(),
        "confidence": pl.Float64(),
    }
)


def empty_reorder() -> pl.DataFrame:
    return pl.DataFrame(schema=REORDER_SCHEMA)


def reorder_suggestions(
    forecast: pl.DataFrame,
    stock: pl.DataFrame,
    products: pl.DataFrame,
    *,
    service_level: float = SERVICE_LEVEL,
    review_days: int = REVIEW_DAYS,
) -> pl.DataFrame:
    """``forecast``: demand_forecast rows; ``stock``: store_id, product_id, on_hand_units; ``products``:
    product_id, category, lead_time_days. One row per forecast series (module docstring for the rules)."""
    if forecast.is_empty():
        return empty_reorder()
    z = NormalDist().inv_cdf(service_level)
    frame = forecast.join(
        products.select("product_id", "category", "lead_time_days"), on="product_id", how="left"
    )
    frame = frame.with_columns(
        lead_time_days=pl.col("lead_time_days").fill_null(7).cast(pl.Int32),
        sigma=((pl.col("hi_80") - pl.col("lo_80")) / (2 * Z_80)).clip(lower_bound=0.0),
    )
    per_series = frame.group_by("store_id", "product_id").agg(
        category=pl.col("category").first(),
        lead_time_days=pl.col("lead_time_days").first(),
        confidence=pl.col("confidence").first()
        if "confidence" in frame.columns
        else pl.lit(None, pl.Float64),
        avg_daily_demand=pl.col("yhat").filter(pl.col("horizon_day") <= COVER_WINDOW_DAYS).mean(),
        lead_time_demand=pl.col("yhat").filter(pl.col("horizon_day") <= pl.col("lead_time_days")).sum(),
        lead_time_var=(pl.col("sigma") ** 2).filter(pl.col("horizon_day") <= pl.col("lead_time_days")).sum(),
        review_demand=pl.col("yhat")
        .filter(
            (pl.col("horizon_day") > pl.col("lead_time_days"))
            & (pl.col("horizon_day") <= pl.col("lead_time_days") + review_days)
        )
        .sum(),
    )
    out = (
        per_series.join(
            stock.select("store_id", "product_id", "on_hand_units"), on=["store_id", "product_id"], how="left"
        )
        .with_columns(
            on_hand_units=pl.col("on_hand_units").fill_null(0).cast(pl.Float64).clip(lower_bound=0.0),
            safety_stock=z * pl.col("lead_time_var").sqrt(),
        )
        .with_columns(reorder_point=pl.col("lead_time_demand") + pl.col("safety_stock"))
        .with_columns(
            days_of_cover=pl.when(pl.col("avg_daily_demand") > 0)
            .then(pl.col("on_hand_units") / pl.col("avg_daily_demand"))
            .otherwise(None),
            needs_reorder=pl.col("on_hand_units") <= pl.col("reorder_point"),
        )
        .with_columns(
            reorder_quantity=pl.when(pl.col("needs_reorder"))
            .then(
                (pl.col("reorder_point") + pl.col("review_demand") - pl.col("on_hand_units"))
                .clip(lower_bound=0.0)
                .ceil()
            )
            .otherwise(0.0)
            .cast(pl.Int64),
            stockout_risk=pl.col("days_of_cover").fill_null(float("inf")) < pl.col("lead_time_days"),
            service_level=pl.lit(service_level),
        )
    )
    return out.select(list(REORDER_SCHEMA)).cast(REORDER_SCHEMA).sort("store_id", "product_id")

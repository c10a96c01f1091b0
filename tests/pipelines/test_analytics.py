"""Tier 2: the forecasting and anomaly functions on small real frames."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from pipelines.defs.anomalies.scoring import ANOMALY_SCHEMA, FEATURES, score_sales_anomalies
from pipelines.defs.forecasting.demand import FORECAST_SCHEMA, forecast_demand


def _history(series: int, days: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = date(2025, 1, 1)
    frames = []
    for i in range(series):
        level = rng.uniform(0.3, 12)
        weekly = 1 + 0.4 * np.sin(np.arange(days) * 2 * np.pi / 7)
        frames.append(
            pl.DataFrame(
                {
                    "store_id": f"S{i % 2}",
                    "product_id": f"P{i}",
                    "ds": [start + timedelta(days=d) for d in range(days)],
                    "y": rng.poisson(level * weekly).astype(float),
                }
            )
        )
    return pl.concat(frames)


def test_forecast_has_the_served_shape() -> None:
    history = _history(series=4, days=120)
    forecast = forecast_demand(history, horizon=30, n_jobs=1)
    assert forecast.schema == pl.Schema(FORECAST_SCHEMA)
    assert forecast.height == 4 * 30
    assert forecast.group_by("store_id", "product_id").agg(pl.col("horizon_day").sort()).height == 4
    assert forecast["horizon_day"].min() == 1 and forecast["horizon_day"].max() == 30
    assert (forecast["cutoff"] == date(2025, 1, 1) + timedelta(days=119)).all()
    assert (
        forecast.select((pl.col("ds") - pl.col("cutoff")).dt.total_days() == pl.col("horizon_day"))
        .to_series()
        .all()
    )
    ordered = forecast.filter(
        (pl.col("lo_95") <= pl.col("lo_80"))
        & (pl.col("lo_80") <= pl.col("yhat"))
        & (pl.col("yhat") <= pl.col("hi_80"))
        & (pl.col("hi_80") <= pl.col("hi_95"))
        & (pl.col("lo_95") >= 0)
    )
    assert ordered.height == forecast.height


def test_intermittent_series_get_croston() -> None:
    rng = np.random.default_rng(2)
    days = 120
    sparse = pl.DataFrame(
        {
            "store_id": "S1",
            "product_id": "P-slow",
            "ds": [date(2025, 1, 1) + timedelta(days=d) for d in range(days)],
            "y": (rng.random(days) < 0.15).astype(float) * rng.integers(1, 4, days),
        }
    )
    history = pl.concat([_history(series=1, days=days), sparse])
    forecast = forecast_demand(history, horizon=30, n_jobs=1)
    models = dict(forecast.select("product_id", "model").unique().iter_rows())
    assert models == {"P0": "OptimizedTheta", "P-slow": "CrostonOptimized"}
    slow = forecast.filter(pl.col("product_id") == "P-slow")
    assert slow.height == 30
    assert 0 < slow["yhat"].mean() < 1  # a rate of units per day, not a spike
    assert (slow["hi_95"] >= slow["yhat"]).all() and (slow["lo_95"] >= 0).all()


def test_forecast_of_nothing_is_empty() -> None:
    empty = pl.DataFrame(
        schema={"store_id": pl.String, "product_id": pl.String, "ds": pl.Date, "y": pl.Float64}
    )
    assert forecast_demand(empty, horizon=90).is_empty()


def test_a_planted_revenue_spike_is_flagged_with_its_driver() -> None:
    rng = np.random.default_rng(1)
    days = [date(2025, 1, 1) + timedelta(days=d) for d in range(200)]
    rows = []
    for store, scale in (("S1", 1.0), ("S2", 5.0)):  # stores of very different size
        for day in days:
            transactions = int(rng.normal(100, 5) * scale)
            rows.append(
                {
                    "store_id": store,
                    "sale_date": day,
                    "net_revenue_cents": int(transactions * rng.normal(2500, 100)),
                    "transactions": transactions,
                    "avg_basket_cents": 2500.0,
                    "refund_rate": float(rng.uniform(0.01, 0.03)),
                    "void_rate": float(rng.uniform(0.0, 0.01)),
                    "discount_rate": float(rng.uniform(0.04, 0.06)),
                }
            )
    features = pl.DataFrame(rows)
    spike = (pl.col("store_id") == "S1") & (pl.col("sale_date") == date(2025, 5, 1))
    features = features.with_columns(
        net_revenue_cents=pl.when(spike).then(pl.col("net_revenue_cents") * 6).otherwise("net_revenue_cents"),
        void_rate=pl.when(spike).then(0.3).otherwise("void_rate"),
    )
    scored = score_sales_anomalies(features, threshold_quantile=0.99)
    assert scored.schema == pl.Schema(ANOMALY_SCHEMA)
    assert scored.height == features.height
    top = scored.sort("anomaly_score", descending=True).row(0, named=True)
    assert (top["store_id"], top["sale_date"]) == ("S1", date(2025, 5, 1))
    assert top["is_anomaly"] and top["severity"] in {"high", "critical"}
    assert set(top["drivers"].split(",")) >= {"net_revenue_cents", "void_rate"}
    assert set(top["drivers"].split(",")) <= set(FEATURES)
    assert scored["is_anomaly"].mean() <= 0.02  # the threshold is the 99th percentile of the scores
    assert set(scored["severity"].unique()) <= {"low", "medium", "high", "critical"}

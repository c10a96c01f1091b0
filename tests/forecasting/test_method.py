"""The shared forecasting method on small synthetic panels with a known answer."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from chainsync.forecasting import classify_demand, coverage, forecast_panel, mase, scale_for


def _panel(n_series: int = 30, days: int = 280, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = date(2025, 1, 1)
    rows = []
    for s in range(n_series):
        weekly = np.array([1.0, 0.8, 0.9, 1.0, 1.3, 1.8, 1.5])
        level = 5 + 3 * s
        if s % 3 == 0:  # intermittent: mostly zeros
            y = rng.poisson(0.3, days).astype(float)
        else:
            y = rng.poisson(level * weekly[np.arange(days) % 7]).astype(float)
        rows += [{"unique_id": f"s{s}", "ds": start + timedelta(days=d), "y": y[d]} for d in range(days)]
    return pl.DataFrame(rows)


def test_classify_demand_patterns() -> None:
    assert classify_demand(np.array([5, 6, 5, 7, 6, 5, 6.0])) == "smooth"
    assert classify_demand(np.array([1, 40, 2, 60, 1, 3, 90.0])) == "erratic"
    assert classify_demand(np.array([0, 0, 2, 0, 0, 2, 0, 0, 3.0])) == "intermittent"
    assert classify_demand(np.array([0, 0, 1, 0, 0, 50, 0, 0, 2.0])) == "lumpy"
    assert classify_demand(np.zeros(5)) == "zero"


def test_forecast_panel_beats_seasonal_naive_with_calibrated_intervals() -> None:
    panel = _panel()
    horizon = 14
    cutoff = panel["ds"].max() - timedelta(days=horizon)  # type: ignore[operator]
    train, test = panel.filter(pl.col("ds") <= cutoff), panel.filter(pl.col("ds") > cutoff)
    result = forecast_panel(train, horizon=horizon, freq="D")
    fc = result.forecasts
    assert fc.height == 30 * horizon
    assert fc["ds"].min() == cutoff + timedelta(days=1)
    assert (fc["lo_95"] <= fc["lo_80"]).all() and (fc["lo_80"] <= fc["yhat"]).all()
    assert (fc["yhat"] <= fc["hi_80"]).all() and (fc["hi_80"] <= fc["hi_95"]).all()
    assert (fc["lo_95"] >= 0).all()
    series = result.series
    assert set(series.filter(pl.col("unique_id") == "s0")["pattern"]) <= {"intermittent", "lumpy"}
    assert series.filter(pl.col("unique_id") == "s1")["pattern"].item() == "smooth"

    scales = (
        train.group_by("unique_id")
        .agg(pl.col("y"))
        .select(
            "unique_id",
            scale=pl.col("y").map_elements(lambda v: scale_for(np.array(v), 7), return_dtype=pl.Float64),
        )
    )
    scored = test.join(fc, on=["unique_id", "ds"]).join(scales, on="unique_id")
    naive = (
        train.sort("ds")
        .group_by("unique_id")
        .tail(7)
        .with_columns(ds=pl.col("ds") + timedelta(days=7))
        .select("unique_id", "ds", naive="y")
    )
    naive = pl.concat([naive, naive.with_columns(ds=pl.col("ds") + timedelta(days=7))])
    scored = scored.join(naive, on=["unique_id", "ds"])
    assert scored.height == 30 * horizon
    assert mase(scored) < mase(scored, "naive")
    assert 0.65 <= coverage(scored) <= 0.95
    assert 0.85 <= coverage(scored, "lo_95", "hi_95") <= 1.0


def test_short_series_fall_back_to_seasonal_naive() -> None:
    short = pl.DataFrame(
        {"unique_id": ["a"] * 5, "ds": [date(2025, 1, d) for d in range(1, 6)], "y": [1.0, 2, 3, 4, 5]}
    )
    result = forecast_panel(short, horizon=7, freq="D")
    assert result.series["model"].item() == "SeasonalNaive"
    assert result.forecasts.height == 7
    assert result.series["cv_mase"].is_null().all()


def test_intermittent_daily_forecasts_carry_the_day_of_week() -> None:
    # Slow movers that sell mostly at the weekend: the intermittent models' flat forecasts get the weekday
    # profile (pooled over the panel, shrunk per series), so Saturday's forecast is well above Tuesday's.
    rng = np.random.default_rng(8)
    start = date(2025, 1, 6)  # a Monday
    weekday_rate = np.array([0.1, 0.1, 0.1, 0.15, 0.3, 0.8, 0.4])
    days = 210
    rows = []
    for s in range(40):
        y = rng.poisson(weekday_rate[np.arange(days) % 7])
        rows += [
            {"unique_id": f"s{s}", "ds": start + timedelta(days=d), "y": float(y[d])} for d in range(days)
        ]
    result = forecast_panel(pl.DataFrame(rows), horizon=14, freq="D")
    assert set(result.series["pattern"]) <= {"intermittent", "lumpy"}
    by_weekday = (
        result.forecasts.filter(pl.col("model").is_in(["CrostonOptimized", "ADIDA", "IMAPA", "TSB"]))
        .group_by(pl.col("ds").dt.weekday().alias("weekday"))
        .agg(pl.col("yhat").mean())
    )
    assert by_weekday.height == 7  # the flat models were chosen for some series and shaped
    rate = dict(by_weekday.iter_rows())
    assert rate[6] > 3 * rate[2]  # Saturday vs Tuesday (planted 0.8 vs 0.1)
    assert rate[6] > rate[7] > rate[1]

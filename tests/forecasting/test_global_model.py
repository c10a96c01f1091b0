"""The global LightGBM candidate: chosen where it earns its place, switchable, and fitted per origin."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from chainsync.forecasting import coverage, forecast_panel, mase, scale_for
from chainsync.forecasting.global_model import GLOBAL_MODEL
from chainsync.forecasting.method import _use_global_model
from chainsync.settings import get_settings

WEEKS = 130
HORIZON = 13


def _shared_shape_panel(n_series: int = 40, seed: int = 5) -> pl.DataFrame:
    """Weekly series sharing one yearly shape under heavy noise: one series' past years are a noisy guide
    to its next weeks, the 40 series together a good one."""
    rng = np.random.default_rng(seed)
    t = np.arange(WEEKS)
    shape = 1 + 0.6 * np.sin(2 * np.pi * t / 52) + 0.3 * np.cos(4 * np.pi * t / 52)
    start = date(2010, 2, 5)
    frames = []
    for s in range(n_series):
        level = rng.uniform(50, 5000)
        y = level * shape * rng.lognormal(0, 0.35, WEEKS)
        frames.append(
            pl.DataFrame(
                {
                    "unique_id": f"s{s:02d}",
                    "ds": [start + timedelta(weeks=int(w)) for w in t],
                    "y": y,
                }
            )
        )
    return pl.concat(frames).with_columns(pl.col("ds").cast(pl.Datetime("us")))


def _hold_out_mase(panel: pl.DataFrame, forecasts: pl.DataFrame, cutoff: object) -> tuple[float, float]:
    train = panel.filter(pl.col("ds") <= cutoff)
    scales = (
        train.group_by("unique_id")
        .agg(pl.col("y"))
        .select(
            "unique_id",
            scale=pl.col("y").map_elements(lambda v: scale_for(np.array(v), 52), return_dtype=pl.Float64),
        )
    )
    scored = (
        panel.filter(pl.col("ds") > cutoff)
        .join(forecasts, on=["unique_id", "ds"])
        .join(scales, on="unique_id")
    )
    assert scored.height == panel["unique_id"].n_unique() * HORIZON
    return mase(scored), coverage(scored)


def test_global_model_earns_its_place_on_a_shared_shape() -> None:
    panel = _shared_shape_panel()
    cutoff = panel["ds"].unique().sort()[-HORIZON - 1]
    train = panel.filter(pl.col("ds") <= cutoff)
    with_global = forecast_panel(train, horizon=HORIZON, freq="W-FRI", global_model="on")
    local_only = forecast_panel(train, horizon=HORIZON, freq="W-FRI", global_model="off")

    assert not local_only.series["model"].str.contains(GLOBAL_MODEL).any()
    # Chosen by cross-validation for the smooth series, alone or averaged with the local choice.
    assert with_global.series["model"].str.contains(GLOBAL_MODEL).all()
    fc = with_global.forecasts
    assert (fc["lo_95"] <= fc["lo_80"]).all() and (fc["lo_80"] <= fc["yhat"]).all()
    assert (fc["yhat"] <= fc["hi_80"]).all() and (fc["hi_80"] <= fc["hi_95"]).all()
    global_mase, global_coverage = _hold_out_mase(panel, fc, cutoff)
    local_mase, _ = _hold_out_mase(panel, local_only.forecasts, cutoff)
    assert global_mase < 0.9 * local_mase
    assert 0.65 <= global_coverage <= 0.95


def test_global_model_is_not_chosen_where_it_does_not_help() -> None:
    """Series with nothing in common but an exact yearly repeat: the seasonal naive is perfect, so the
    cross-validation keeps it and the global model stays out."""
    rng = np.random.default_rng(2)
    start = date(2010, 2, 5)
    frames = []
    for s in range(25):
        year = rng.uniform(10, 1000, 52)
        y = np.tile(year, WEEKS // 52 + 1)[:WEEKS]
        frames.append(
            pl.DataFrame(
                {"unique_id": f"s{s:02d}", "ds": [start + timedelta(weeks=w) for w in range(WEEKS)], "y": y}
            )
        )
    panel = pl.concat(frames).with_columns(pl.col("ds").cast(pl.Datetime("us")))
    result = forecast_panel(panel, horizon=HORIZON, freq="W-FRI", global_model="on")
    assert not result.series["model"].str.contains(GLOBAL_MODEL).any()


def test_global_model_setting_and_auto_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _use_global_model("auto", season=52, n_series=100)
    assert not _use_global_model("auto", season=52, n_series=5)
    assert not _use_global_model("auto", season=7, n_series=10_000)  # daily: off unless asked
    assert _use_global_model("on", season=7, n_series=3)
    assert not _use_global_model("off", season=52, n_series=100)
    with pytest.raises(ValueError, match="global_model must be one of auto, on, off"):
        _use_global_model("sometimes", season=52, n_series=100)

    monkeypatch.setenv("CHAINSYNC_FORECAST_GLOBAL_MODEL", "off")
    get_settings.cache_clear()
    try:
        assert not _use_global_model(None, season=52, n_series=100)
        panel = _shared_shape_panel(n_series=25)
        result = forecast_panel(panel, horizon=HORIZON, freq="W-FRI")
        assert not result.series["model"].str.contains(GLOBAL_MODEL).any()
    finally:
        monkeypatch.delenv("CHAINSYNC_FORECAST_GLOBAL_MODEL")
        get_settings.cache_clear()
    assert _use_global_model(None, season=52, n_series=100)  # the default: auto

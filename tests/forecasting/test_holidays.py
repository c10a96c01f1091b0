"""The forecast's holiday calendar and holiday effects on synthetic series with planted holiday demand."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from chainsync.forecasting import forecast_panel
from chainsync.forecasting.holidays import (
    holiday_calendar,
    holiday_dates,
    remove_holiday_effects,
    week_anchor,
)


def test_retail_days_beside_the_public_holidays() -> None:
    days = holiday_dates(date(2023, 1, 1), date(2026, 12, 31))
    for thanksgiving in (date(2023, 11, 23), date(2024, 11, 28), date(2025, 11, 27), date(2026, 11, 26)):
        assert days[thanksgiving] == "Thanksgiving Day"
        assert days[thanksgiving + timedelta(days=1)] == "Black Friday"
        assert days[thanksgiving - timedelta(days=1)] == "Thanksgiving Eve"
    assert days[date(2024, 12, 24)] == "Christmas Eve"
    assert days[date(2024, 12, 25)] == "Christmas Day"
    assert days[date(2024, 12, 20)] == "Christmas shopping week"
    assert days[date(2024, 12, 31)] == "New Year's Eve"
    assert days[date(2025, 7, 4)] == "Independence Day"
    assert days[date(2024, 3, 31)] == "Easter Sunday"
    assert days[date(2024, 2, 11)] == days[date(2023, 2, 12)] == "Super Bowl"
    assert date(2024, 11, 1) not in days  # an ordinary Friday
    # Outside the US: the country's public holidays and the Christmas retail days, no Black Friday.
    german = holiday_dates(date(2024, 1, 1), date(2024, 12, 31), "DE")
    assert german[date(2024, 10, 3)] == "German Unity Day"
    assert german[date(2024, 12, 24)] == "Christmas Eve"
    assert "Black Friday" not in german.values()
    with pytest.raises(ValueError, match="no holiday calendar"):
        holiday_dates(date(2024, 1, 1), date(2024, 12, 31), "XX")


def test_weekly_calendar_marks_the_week_that_contains_the_holiday() -> None:
    assert week_anchor("W-FRI") == 4 and week_anchor("W") == 6 and week_anchor("1d") is None
    calendar = holiday_calendar(date(2010, 2, 5), date(2012, 12, 28), "W-FRI")
    weeks = dict(calendar.iter_rows())
    assert all(d.weekday() == 4 for d in weeks)  # every label is a week-ending Friday
    # Walmart's holiday weeks (IsHoliday in its train.csv): Super Bowl, Labor Day, Thanksgiving, Christmas.
    walmart = {
        "Super Bowl": [date(2010, 2, 12), date(2011, 2, 11), date(2012, 2, 10)],
        "Labor Day": [date(2010, 9, 10), date(2011, 9, 9), date(2012, 9, 7)],
        "Thanksgiving Day": [date(2010, 11, 26), date(2011, 11, 25), date(2012, 11, 23)],
        "Christmas Day": [date(2010, 12, 31), date(2011, 12, 30), date(2012, 12, 28)],
    }
    for name, labels in walmart.items():
        assert sorted(d for d, n in weeks.items() if n == name) == labels
    # Daily calendars keep the day itself; monthly data get no holiday periods.
    daily = dict(holiday_calendar(date(2025, 11, 1), date(2025, 11, 30), "D").iter_rows())
    assert daily[date(2025, 11, 28)] == "Black Friday"
    assert holiday_calendar(date(2024, 1, 1), date(2025, 12, 31), "MS").is_empty()


def _planted(n_series: int = 40, days: int = 730, seed: int = 5) -> pl.DataFrame:
    """Daily Poisson demand with a day-of-week profile; Black Friday x2.5, Christmas Eve x1.8, closed on
    Thanksgiving and Christmas Day."""
    rng = np.random.default_rng(seed)
    start = date(2024, 1, 1)
    dates = [start + timedelta(days=d) for d in range(days)]
    planted = {"Black Friday": 2.5, "Christmas Eve": 1.8, "Thanksgiving Day": 0.0, "Christmas Day": 0.0}
    named = holiday_dates(dates[0], dates[-1])
    factor = np.array([planted.get(named.get(d, ""), 1.0) for d in dates])
    weekday = np.array([0.85, 0.85, 0.9, 0.95, 1.15, 1.35, 0.95])[[d.weekday() for d in dates]]
    frames = []
    for s in range(n_series):
        y = rng.poisson((8 + s) * weekday * factor).astype(float)
        frames.append(pl.DataFrame({"unique_id": f"s{s:02d}", "ds": dates, "y": y}))
    return pl.concat(frames)


def test_planted_holiday_uplift_is_recovered_and_forecast() -> None:
    panel = _planted()
    horizon = 45  # from 2025-11-16: Thanksgiving, Black Friday, Christmas Eve and Christmas in the horizon
    cutoff = panel["ds"].max() - timedelta(days=horizon)  # type: ignore[operator]
    train, test = panel.filter(pl.col("ds") <= cutoff), panel.filter(pl.col("ds") > cutoff)
    calendar = holiday_calendar(train["ds"].min(), cutoff, "D")  # type: ignore[arg-type]
    adjusted, effects = remove_holiday_effects(train, calendar, "D")
    pooled = dict(effects.group_by("holiday").agg(pl.col("pooled").first()).iter_rows())
    assert pooled["Black Friday"] == pytest.approx(2.5, rel=0.1)
    assert pooled["Christmas Eve"] == pytest.approx(1.8, rel=0.1)
    assert pooled["Thanksgiving Day"] < 0.05
    assert pooled["Labor Day"] == pytest.approx(1.0, abs=0.1)  # nothing planted there
    per_series = effects.filter(pl.col("holiday") == "Black Friday")["effect"]
    # One past Black Friday per series: noisy, so shrunk towards the pooled effect, all clearly uplifted.
    assert per_series.median() == pytest.approx(2.5, rel=0.1)
    assert per_series.min() > 1.5 and per_series.max() < 3.5  # type: ignore[operator]
    # The adjusted history has no Black Friday spike left: within 15 % of the same weekday around it.
    bf = date(2024, 11, 29)
    around = [bf - timedelta(days=7), bf + timedelta(days=7)]
    level = lambda days: adjusted.filter(pl.col("ds").is_in(days))["y"].sum()  # noqa: E731
    assert level([bf]) == pytest.approx(level(around) / 2, rel=0.15)
    assert adjusted.height == train.height

    def holiday_error(holidays: str | None) -> dict[str, float]:
        fc = forecast_panel(train, horizon=horizon, freq="D", holidays=holidays).forecasts
        scored = test.join(fc, on=["unique_id", "ds"]).join(
            holiday_calendar(cutoff, cutoff + timedelta(days=horizon), "D"), on="ds", how="left"
        )
        assert scored.height == test.height
        err = (pl.col("y") - pl.col("yhat")).abs().mean()
        return {
            "holiday": scored.filter(pl.col("holiday").is_not_null()).select(err).item(),
            "other": scored.filter(pl.col("holiday").is_null()).select(err).item(),
            "closed": scored.filter(pl.col("ds") == date(2025, 12, 25))["yhat"].max(),  # type: ignore[dict-item]
        }

    without, with_holidays = holiday_error(None), holiday_error("US")
    assert with_holidays["holiday"] < 0.5 * without["holiday"]
    assert with_holidays["other"] <= 1.05 * without["other"]
    assert with_holidays["closed"] < 1.0 < without["closed"]  # closed on Christmas Day: forecast ~0

"""Forecasting benchmark: our method vs AutoETS-everywhere vs SeasonalNaive on a generated daily panel.

    uv run python bench/forecast.py                       # 10,000 series, 2 years, h = 30
    uv run python bench/forecast.py --series 2000 --ets-sample 200

The panel: retail-like daily demand — Poisson counts around a level (log-uniform, 0.2 to 60 units a day)
times a day-of-week profile, a yearly cycle, a slow trend and a few holiday peaks a year; about a fifth of
the series are slow movers (intermittent). Each method trains on all but the last ``h`` days and forecasts
them; MASE is scaled by the in-sample seasonal-naive (7-day) error.

AutoETS on every series takes ~115 s per 1000 series on two cores, so it runs on a random ``--ets-sample``
of series and its time is extrapolated linearly to the whole panel (the output says so); its MASE is
compared with ours and SeasonalNaive's on that same sample.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainsync.forecasting import forecast_panel, mase, scale_for  # noqa: E402

os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
warnings.filterwarnings("ignore")


def generate_panel(series: int, days: int, seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    start = date(2024, 1, 1)
    holidays = np.zeros(days)
    for year_start in range(0, days, 365):
        for offset in (0, 98, 185, 330, 358):  # new year, spring, summer, black friday, christmas
            day = year_start + offset
            if day < days:
                holidays[max(0, day - 2) : day + 1] += np.array([0.3, 0.6, 1.0])[
                    : len(holidays[max(0, day - 2) : day + 1])
                ]
    level = np.exp(rng.uniform(np.log(0.2), np.log(60), series))
    slow = rng.random(series) < 0.2
    level[slow] = rng.uniform(0.05, 0.6, slow.sum())
    dow = 1 + rng.uniform(0.1, 0.5, series)[:, None] * np.sin(
        2 * np.pi * (t[None, :] + rng.integers(0, 7, series)[:, None]) / 7
    )
    yearly = 1 + rng.uniform(0, 0.3, series)[:, None] * np.sin(
        2 * np.pi * (t[None, :] - rng.integers(0, 365, series)[:, None]) / 365
    )
    trend = 1 + rng.normal(0, 0.3, series)[:, None] * t[None, :] / days
    holiday = 1 + rng.uniform(0, 1.5, series)[:, None] * holidays[None, :]
    rate = np.clip(level[:, None] * dow * yearly * trend * holiday, 0, None)
    y = rng.poisson(rate).astype(float)
    ids = np.repeat(np.array([f"s{i:05d}" for i in range(series)], dtype=object), days)
    ds = pl.date_range(start, start + timedelta(days=days - 1), "1d", eager=True)
    return pl.DataFrame({"unique_id": ids.tolist(), "ds": pl.concat([ds] * series), "y": y.ravel()})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--ets-sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    h = args.horizon

    panel = generate_panel(args.series, args.days, args.seed)
    cutoff = panel["ds"].max() - timedelta(days=h)  # type: ignore[operator]
    train = panel.filter(pl.col("ds") <= cutoff)
    test = panel.filter(pl.col("ds") > cutoff)
    print(f"panel: {args.series:,} daily series x {args.days} days, h = {h}, train to {cutoff}")

    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    # Warm numba's compiled code so that no method pays for compilation.
    warm = train.filter(pl.col("unique_id").is_in(train["unique_id"].unique().head(3).implode()))
    StatsForecast(models=[AutoETS(season_length=7), SeasonalNaive(7)], freq="1d", n_jobs=1).forecast(
        df=warm, h=h
    )
    forecast_panel(warm, horizon=h, freq="1d")

    started = time.perf_counter()
    ours = forecast_panel(train, horizon=h, freq="1d").forecasts.select("unique_id", "ds", yhat_ours="yhat")
    ours_seconds = time.perf_counter() - started

    started = time.perf_counter()
    sn = StatsForecast(models=[SeasonalNaive(7)], freq="1d", n_jobs=-1).forecast(df=train, h=h)
    sn_seconds = time.perf_counter() - started

    rng = np.random.default_rng(args.seed)
    ids = train["unique_id"].unique().sort().to_numpy()
    sample = rng.choice(ids, size=min(args.ets_sample, ids.size), replace=False).tolist()
    sample_train = train.filter(pl.col("unique_id").is_in(sample))
    started = time.perf_counter()
    ets = StatsForecast(models=[AutoETS(season_length=7)], freq="1d", n_jobs=-1).forecast(
        df=sample_train, h=h
    )
    ets_seconds_sample = time.perf_counter() - started
    ets_seconds = ets_seconds_sample * ids.size / len(sample)

    scales = (
        train.group_by("unique_id")
        .agg(pl.col("y"))
        .select(
            "unique_id",
            scale=pl.col("y").map_elements(lambda v: scale_for(np.asarray(v), 7), return_dtype=pl.Float64),
        )
    )
    scored = (
        test.join(scales, on="unique_id")
        .join(ours, on=["unique_id", "ds"])
        .join(
            sn.select("unique_id", pl.col("ds").cast(pl.Date), yhat_sn="SeasonalNaive"),
            on=["unique_id", "ds"],
        )
    )
    on_sample = scored.join(
        ets.select("unique_id", pl.col("ds").cast(pl.Date), yhat_ets=pl.col("AutoETS").clip(lower_bound=0)),
        on=["unique_id", "ds"],
    )
    rows = [
        ("ChainSync (ours)", ours_seconds, mase(scored, "yhat_ours"), mase(on_sample, "yhat_ours")),
        ("SeasonalNaive(7)", sn_seconds, mase(scored, "yhat_sn"), mase(on_sample, "yhat_sn")),
        (
            f"AutoETS(7) everywhere (timed on {len(sample)}, x{ids.size / len(sample):.0f})",
            ets_seconds,
            float("nan"),
            mase(on_sample, "yhat_ets"),
        ),
    ]
    print(f"{'method':58} {'seconds':>9} {'MASE all':>9} {'MASE sample':>12}")
    for name, seconds, m_all, m_sample in rows:
        print(f"{name:58} {seconds:9.1f} {m_all:9.3f} {m_sample:12.3f}")
    print(
        f"speed-up vs AutoETS-everywhere: {ets_seconds / ours_seconds:.1f}x; "
        f"MASE ours / AutoETS on the sample: {mase(on_sample, 'yhat_ours') / mase(on_sample, 'yhat_ets'):.3f}"
    )


if __name__ == "__main__":
    main()

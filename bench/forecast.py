"""Forecasting benchmark: our method vs SeasonalNaive, AutoETS and a global LightGBM model on a generated
daily panel, every method with and without the same holiday knowledge.

    uv run python bench/forecast.py                       # 10,000 series, 2 years to 2025-12-30, h = 30
    uv run python bench/forecast.py --series 2000 --ets-sample 200
    uv run python bench/forecast.py --end 2025-10-31      # a hold-out without the Christmas weeks
    uv run python bench/forecast.py --chain               # the demo chain: holidays and reconciliation

The panel (pinned: seed 7, last day ``--end``, 2025-12-30 by default): retail-like daily demand — Poisson
counts around a level (log-uniform, 0.2 to 60 units a day) times a day-of-week profile, a yearly cycle, a
slow trend and the generator's US retail holidays (``tools.generator.calendar``: Black Friday, the
Christmas weeks, closed on Thanksgiving and Christmas Day ...) with a per-series sensitivity; about a fifth
of the series are slow movers (intermittent). Each method trains on all but the last ``h`` days and
forecasts them; MASE is scaled by the in-sample seasonal-naive (7-day) error.

Holiday knowledge is the one thing the panel's construction hands a method for free, so every method runs
twice: without it, and with the ``--holidays`` calendar (US) through the same step
(``chainsync.forecasting.holidays.adjust_for_holidays``: holiday effects estimated on the training days,
taken out of the history, put back on the forecast) — our method inside ``forecast_panel``, the baselines
around their fit. The MAE of each is split into the horizon's holiday days and the others.

``--chain`` generates the demo chain (10 stores x 150 products, two years ending 2026-11-27, seed 42), builds
the pipeline's daily history (local sale dates, the last 400 days) and runs the pipeline's own functions on a
28-day hold-out (31 October to 27 November 2026: Halloween, Thanksgiving, Black Friday): ``forecast_accuracy``
with and without holiday effects (MASE, WAPE, coverage, seconds), then ``reconcile_forecast`` bottom-up and
by MinTrace (ols, wls_struct): the published series and totals scored per level (series, store, category,
chain) against the actuals, with the share of series-days the reconciliation clipped at 0.

AutoETS on every series takes ~115 s per 1000 series on two cores, so it runs on a random ``--ets-sample``
of series and its time is extrapolated linearly to the whole panel (the output says so); its MASE is
compared with the others' on that same sample. The LightGBM baseline is the global candidate's model
(``chainsync.forecasting.global_model.build_forecaster``) fitted once on every series (``--no-lightgbm``
leaves it out).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainsync.forecasting import forecast_panel, mase, scale_for  # noqa: E402
from chainsync.forecasting.holidays import adjust_for_holidays, holiday_calendar  # noqa: E402
from tools.generator.calendar import holiday_factors  # noqa: E402

os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
warnings.filterwarnings("ignore")


END = date(2025, 12, 30)  # the panel's pinned last day: 730 days from 2024-01-01


def generate_panel(series: int, days: int, seed: int = 7, end: date = END) -> pl.DataFrame:
    """``series`` daily series of ``days`` days ending on ``end`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    start = end - timedelta(days=days - 1)
    factor, _ = holiday_factors([start + timedelta(days=d) for d in range(days)])
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
    # Each series feels a holiday's uplift (or dip) by its own sensitivity; closed days stay closed.
    sensitivity = rng.uniform(0.3, 1.5, series)[:, None]
    holiday = np.where(factor[None, :] == 0, 0.0, 1 + sensitivity * (factor[None, :] - 1))
    rate = np.clip(level[:, None] * dow * yearly * trend * holiday, 0, None)
    y = rng.poisson(rate).astype(float)
    ids = np.repeat(np.array([f"s{i:05d}" for i in range(series)], dtype=object), days)
    ds = pl.date_range(start, start + timedelta(days=days - 1), "1d", eager=True)
    return pl.DataFrame({"unique_id": ids.tolist(), "ds": pl.concat([ds] * series), "y": y.ravel()})


def demo_chain_history(out_dir: Path, end: date, days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The pipeline's forecast input for the generated demo chain: store_id, product_id, ds (the store's
    local date), y (units sold net of refunds, >= 0), store_gap; and product_id, category."""
    from tools.generator import generate_chain
    from tools.generator.catalog import build_catalog

    generate_chain(out_dir, stores=10, products=150, days=730, seed=42, end=end)
    day_list = [end - timedelta(days=729 - i) for i in range(730)]
    stores = build_catalog(
        np.random.default_rng([42, 0]), 10, 150, day_list
    ).stores  # same draws as the chain
    lines = (
        pl.scan_parquet(out_dir / "sales_lines" / "*.parquet")
        .filter(pl.col("kind") != "void")
        .select(
            "store_id",
            "product_id",
            "occurred_at",
            units=pl.when(pl.col("kind") == "sale").then(pl.col("quantity")).otherwise(-pl.col("quantity")),
        )
        .collect()
    )
    daily = pl.concat(
        lines.filter(pl.col("store_id") == store)
        .with_columns(ds=pl.col("occurred_at").dt.convert_time_zone(tz).dt.date())
        .group_by("store_id", "product_id", "ds")
        .agg(y=pl.col("units").sum())
        for store, tz in stores.select("store_id", "timezone").iter_rows()
    )
    first = daily.group_by("store_id", "product_id").agg(first=pl.col("ds").min())
    grid = first.select(
        "store_id",
        "product_id",
        ds=pl.date_ranges(pl.max_horizontal("first", pl.lit(end - timedelta(days=days - 1))), pl.lit(end)),
    ).explode("ds")
    open_days = daily.select("store_id", "ds").unique().with_columns(open=pl.lit(True))
    history = (
        grid.join(daily, on=["store_id", "product_id", "ds"], how="left")
        .join(open_days, on=["store_id", "ds"], how="left")
        .select(
            "store_id",
            "product_id",
            "ds",
            y=pl.col("y").fill_null(0).clip(lower_bound=0).cast(pl.Float64),
            store_gap=pl.col("open").is_null(),
        )
        .sort("store_id", "product_id", "ds")
    )
    categories = pl.read_parquet(out_dir / "products.parquet").select("product_id", "category")
    return history, categories


def _hold_out_scores() -> list[pl.Expr]:
    """Per group of hold-out rows (y, yhat, bounds, the MASE scale): MASE, absolute error, actual total and
    the share inside the 80 % and 95 % bands."""
    return [
        ((pl.col("y") - pl.col("yhat")).abs().mean() / pl.col("scale").first()).alias("mase"),
        (pl.col("y") - pl.col("yhat")).abs().sum().alias("abs_err"),
        pl.col("y").sum().alias("actual"),
        *[
            ((pl.col("y") >= pl.col(f"lo_{lvl}")) & (pl.col("y") <= pl.col(f"hi_{lvl}")))
            .mean()
            .alias(f"in{lvl}")
            for lvl in (80, 95)
        ],
    ]


def bench_chain() -> None:
    import tempfile

    from pipelines.defs.forecasting.demand import (
        ACCURACY_HOLDOUT_DAYS,
        TRAIN_DAYS,
        forecast_accuracy,
        forecast_demand,
        reconcile_forecast,
    )

    end = date(2026, 11, 27)
    with tempfile.TemporaryDirectory() as tmp:
        history, categories = demo_chain_history(Path(tmp), end, TRAIN_DAYS)
    n_series = history.select("store_id", "product_id").n_unique()
    print(
        f"demo chain: {n_series:,} series x {TRAIN_DAYS} days to {end}, hold-out {ACCURACY_HOLDOUT_DAYS} days"
    )
    forecast_demand(history.filter(pl.col("store_id") == "S001"), horizon=7)  # compile numba first

    print(
        f"{'forecast_accuracy':34} {'MASE':>6} {'WAPE':>6} {'bias':>7} {'80 %':>6} {'95 %':>6} {'seconds':>8}"
    )
    for label, holidays in (("with holiday effects (US)", "US"), ("without holiday effects", None)):
        started = time.perf_counter()
        accuracy = forecast_accuracy(history, categories, holidays=holidays)
        accuracy_seconds = time.perf_counter() - started
        chain = accuracy.filter(pl.col("level") == "chain").row(0, named=True)
        print(
            f"{label:34} {chain['mase']:6.3f} {chain['wape']:6.3f} {chain['bias']:7.3f} "
            f"{chain['coverage_80']:6.1%} {chain['coverage_95']:6.1%} {accuracy_seconds:8.1f}"
        )
    started = time.perf_counter()
    forecast_demand(history, horizon=90, accuracy=accuracy)
    print(f"forecast_demand, 90 days, holiday effects: {time.perf_counter() - started:.1f} s")

    split = end - timedelta(days=ACCURACY_HOLDOUT_DAYS)
    train = history.filter(pl.col("ds") <= split)
    actual = history.filter(pl.col("ds") > split).join(categories, on="product_id")
    truth = pl.concat(
        [
            actual.group_by(key="store_id", ds="ds").agg(pl.col("y").sum(), level=pl.lit("store")),
            actual.group_by(key="category", ds="ds").agg(pl.col("y").sum(), level=pl.lit("category")),
            actual.group_by(key=pl.lit("chain"), ds="ds").agg(pl.col("y").sum(), level=pl.lit("chain")),
        ]
    )
    scales = (
        train.join(categories, on="product_id")
        .with_columns(chain=pl.lit("chain"))
        .pipe(
            lambda f: pl.concat(
                [
                    f.group_by(key=column, ds="ds").agg(pl.col("y").sum(), level=pl.lit(level))
                    for level, column in (("store", "store_id"), ("category", "category"), ("chain", "chain"))
                ]
            )
        )
        .sort("ds")
        .group_by("level", "key")
        .agg(scale=(pl.col("y") - pl.col("y").shift(7)).abs().mean())
    )
    series_scales = (
        train.group_by("store_id", "product_id")
        .agg(pl.col("y"))
        .select(
            "store_id",
            "product_id",
            scale=pl.col("y").map_elements(lambda v: scale_for(np.asarray(v), 7), return_dtype=pl.Float64),
        )
    )
    forecast = forecast_demand(train, horizon=ACCURACY_HOLDOUT_DAYS)
    print(
        f"{'published':12} {'level':9} {'MASE':>6} {'WAPE':>6} {'80 %':>6} {'95 %':>6} {'seconds':>8} "
        f"{'clipped':>8}"
    )
    for method in ("bottom_up", "ols", "wls_struct"):
        started = time.perf_counter()
        published = reconcile_forecast(forecast, categories, history=train, method=method)
        seconds = time.perf_counter() - started
        totals = published.totals
        # Series-days the reconciliation took below 0 (published as 0).
        clipped = (
            published.series.join(forecast, on=["store_id", "product_id", "ds"], suffix="_base")
            .select(((pl.col("yhat") == 0) & (pl.col("yhat_base") > 0)).mean())
            .item()
        )
        series = (
            published.series.join(actual, on=["store_id", "product_id", "ds"])
            .join(series_scales, on=["store_id", "product_id"])
            .group_by("store_id", "product_id")
            .agg(*_hold_out_scores())
            .select(
                pl.col("mase").mean(),
                wape=pl.col("abs_err").sum() / pl.col("actual").sum(),
                in80=pl.col("in80").mean(),
                in95=pl.col("in95").mean(),
            )
            .row(0, named=True)
        )
        print(
            f"{method:12} {'series':9} {series['mase']:6.3f} {series['wape']:6.3f} {series['in80']:6.1%} "
            f"{series['in95']:6.1%} {seconds:8.1f} {clipped:8.1%}"
        )
        scored = totals.join(truth, on=["level", "key", "ds"]).join(scales, on=["level", "key"])
        per_level = (
            scored.group_by("level", "key")
            .agg(*_hold_out_scores())
            .group_by("level")
            .agg(
                pl.col("mase").mean(),
                wape=pl.col("abs_err").sum() / pl.col("actual").sum(),
                in80=pl.col("in80").mean(),
                in95=pl.col("in95").mean(),
            )
            .sort("level")
        )
        for row in per_level.iter_rows(named=True):
            print(
                f"{method:12} {row['level']:9} {row['mase']:6.3f} {row['wape']:6.3f} {row['in80']:6.1%} "
                f"{row['in95']:6.1%} {seconds:8.1f}"
            )


def _holiday_aware(
    train: pl.DataFrame, horizon: int, country: str | None, forecast: Callable[[pl.DataFrame], pl.DataFrame]
) -> pl.DataFrame:
    """``forecast(history)`` (unique_id, ds as a date, yhat) given the holiday knowledge ours gets: with a
    ``country``, holiday effects taken out of the history and put back on the forecast
    (``chainsync.forecasting.holidays.adjust_for_holidays``, the step ``forecast_panel`` uses)."""
    if not country:
        return forecast(train)
    adjustment = adjust_for_holidays(train, horizon=horizon, freq="1d", country=country)
    return adjustment.restore(forecast(adjustment.history), ["yhat"])


def _statsforecast(model_factory: Callable[[], object], name: str) -> Callable[[pl.DataFrame], pl.DataFrame]:
    from statsforecast import StatsForecast

    def run(history: pl.DataFrame, h: int) -> pl.DataFrame:
        raw = StatsForecast(models=[model_factory()], freq="1d", n_jobs=-1).forecast(df=history, h=h)
        return raw.select("unique_id", pl.col("ds").cast(pl.Date), yhat=pl.col(name).clip(lower_bound=0))

    return run  # type: ignore[return-value]


def _lightgbm(history: pl.DataFrame, h: int) -> pl.DataFrame:
    """The global LightGBM model (``chainsync.forecasting.global_model.build_forecaster``) on every series."""
    from chainsync.forecasting.global_model import GLOBAL_MODEL, build_forecaster

    forecaster = build_forecaster(season=7, interval="1d", n_jobs=-1)
    forecaster.fit(
        history.with_columns(pl.col("ds").cast(pl.Datetime("us"))), static_features=[], dropna=False
    )
    raw = forecaster.predict(h)
    return raw.select("unique_id", pl.col("ds").cast(pl.Date), yhat=pl.col(GLOBAL_MODEL).clip(lower_bound=0))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument(
        "--end", type=date.fromisoformat, default=END, help="the panel's last day (the hold-out ends here)"
    )
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--ets-sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holidays", default="US", help="holiday calendar country given to every method")
    parser.add_argument("--no-lightgbm", action="store_true", help="leave the global LightGBM baseline out")
    parser.add_argument("--chain", action="store_true", help="the demo chain: holidays and reconciliation")
    args = parser.parse_args()
    if args.chain:
        bench_chain()
        return
    h = args.horizon

    panel = generate_panel(args.series, args.days, args.seed, end=args.end)
    cutoff = panel["ds"].max() - timedelta(days=h)  # type: ignore[operator]
    train = panel.filter(pl.col("ds") <= cutoff)
    test = panel.filter(pl.col("ds") > cutoff)
    print(
        f"panel: {args.series:,} daily series x {args.days} days to {args.end}, h = {h}, train to {cutoff}; "
        f"holiday knowledge: {args.holidays} calendar, the same for every method that gets it"
    )

    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    # Warm numba's compiled code so that no method pays for compilation.
    # 40 series hold slow movers too, so the intermittent models compile here, not inside a timed run.
    warm = train.filter(pl.col("unique_id").is_in(train["unique_id"].unique().sort().head(40).implode()))
    StatsForecast(models=[AutoETS(season_length=7), SeasonalNaive(7)], freq="1d", n_jobs=1).forecast(
        df=warm, h=h
    )
    forecast_panel(warm, horizon=h, freq="1d", holidays=args.holidays)

    rng = np.random.default_rng(args.seed)
    ids = train["unique_id"].unique().sort().to_numpy()
    sample = rng.choice(ids, size=min(args.ets_sample, ids.size), replace=False).tolist()
    sample_train = train.filter(pl.col("unique_id").is_in(sample))

    def ours(history: pl.DataFrame, horizon: int, holidays: str | None) -> pl.DataFrame:
        return forecast_panel(history, horizon=horizon, freq="1d", holidays=holidays).forecasts.select(
            "unique_id", "ds", "yhat"
        )

    seasonal_naive = _statsforecast(lambda: SeasonalNaive(7), "SeasonalNaive")
    ets = _statsforecast(lambda: AutoETS(season_length=7), "AutoETS")
    # (label, key, forecast function, on the sample only); each runs with and without holiday knowledge.
    methods: list[tuple[str, str, Callable[..., pl.DataFrame], bool]] = [
        ("ChainSync (ours)", "ours", ours, False),
        ("SeasonalNaive(7)", "sn", seasonal_naive, False),
        (f"AutoETS(7) (timed on {len(sample)}, x{ids.size / len(sample):.0f})", "ets", ets, True),
    ]
    if not args.no_lightgbm:
        methods.append(("LightGBM global (mlforecast)", "lgb", _lightgbm, False))
    scored = test.join(
        train.group_by("unique_id")
        .agg(pl.col("y"))
        .select(
            "unique_id",
            scale=pl.col("y").map_elements(lambda v: scale_for(np.asarray(v), 7), return_dtype=pl.Float64),
        ),
        on="unique_id",
    )
    rows = []
    for label, key, run, on_sample in methods:
        for knowledge in (args.holidays, None):
            history = sample_train if on_sample else train
            started = time.perf_counter()
            if key == "ours":
                predicted = run(history, h, knowledge)
            else:
                predicted = _holiday_aware(history, h, knowledge, lambda frame, run=run: run(frame, h))
            seconds = time.perf_counter() - started
            if on_sample:
                seconds *= ids.size / len(sample)
            column = f"yhat_{key}{'_h' if knowledge else ''}"
            scored = scored.join(
                predicted.select("unique_id", "ds", pl.col("yhat").alias(column)),
                on=["unique_id", "ds"],
                how="left",
            )
            rows.append((label, "yes" if knowledge else "no", seconds, column, on_sample))
    on_sample_rows = scored.filter(pl.col("unique_id").is_in(sample))
    print(f"{'method':52} {'holidays':>8} {'seconds':>9} {'MASE all':>9} {'MASE sample':>12}")
    for label, knowledge, seconds, column, on_sample in rows:
        m_all = float("nan") if on_sample else mase(scored, column)
        print(f"{label:52} {knowledge:>8} {seconds:9.1f} {m_all:9.3f} {mase(on_sample_rows, column):12.3f}")
    if args.holidays:
        calendar = holiday_calendar(
            cutoff + timedelta(days=1), cutoff + timedelta(days=h), "1d", args.holidays
        )
        split = scored.join(calendar, on="ds", how="left").group_by(
            is_holiday=pl.col("holiday").is_not_null()
        )
        names = ", ".join(sorted(set(calendar["holiday"]))) or "none"
        print(f"mean absolute error on the horizon's holiday days ({names}) and the others:")
        for label, knowledge, _, column, on_sample in rows:
            if on_sample:
                continue
            errors = dict(split.agg((pl.col("y") - pl.col(column)).abs().mean()).iter_rows())
            print(
                f"  {label:40} holidays {knowledge:>3}: holiday days {errors.get(True, float('nan')):7.3f}"
                f"   other days {errors.get(False, float('nan')):7.3f}"
            )


if __name__ == "__main__":
    main()

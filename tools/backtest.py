"""Rolling-origin backtest of ChainSync's forecasting method on any panel CSV (``chainsync backtest``).

Per origin (``origins`` hold-outs of ``horizon`` periods, back to back, the last ending at the panel's last
period): train on every period before the hold-out and nothing after it (gaps filled with 0 up to the last
training period), forecast the hold-out with our method (``chainsync.forecasting.forecast_panel``) and the
baselines (``BASELINES``: statsforecast's SeasonalNaive, AutoETS, AutoTheta, MSTL per series, and one
untuned LightGBM model across series through mlforecast), every method given the same holiday knowledge,
and score the series with a complete history up to the hold-out's end (the usual convention for the
Walmart split):

- MASE: per series, the mean absolute error over the hold-out divided by the in-sample seasonal-naive
  error (the mean of ``|y[t] - y[t - season]|`` over the training periods; season from the frequency,
  ``scale_for``), then the unweighted mean over the scored series;
- WAPE: the sum of absolute errors over the sum of absolute actuals, over every scored row;
- coverage: the share of scored rows inside the 80 % (95 %) interval.

The means over origins are unweighted means of the per-origin figures.
"""

from __future__ import annotations

import io
import os
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from chainsync.forecasting import coverage, forecast_panel, mase, scale_for, season_length_for, wape
from chainsync.parallel import forecast_panel_partitioned
from chainsync.settings import get_settings

OUTPUT_COLUMNS = ["unique_id", "ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95"]
BASELINES = ("SeasonalNaive", "AutoETS", "AutoTheta", "MSTL", "LightGBM")
DEFAULT_BASELINES = ("SeasonalNaive", "AutoETS")


def parse_baselines(text: str) -> tuple[str, ...]:
    """``"SeasonalNaive,AutoTheta"`` -> the baseline names in the given order (case-insensitive, no
    duplicates); an empty string or ``none`` -> no baselines. Raises ValueError naming an unknown one."""
    by_lower = {name.lower(): name for name in BASELINES}
    names: list[str] = []
    for part in text.split(","):
        key = part.strip().lower()
        if not key or key == "none":
            continue
        if key not in by_lower:
            raise ValueError(f"unknown baseline {part.strip()!r}; choose from {', '.join(BASELINES)}")
        if by_lower[key] not in names:
            names.append(by_lower[key])
    return tuple(names)


@dataclass
class MethodScore:
    """One method's scores on one origin's hold-out (``seconds``: wall time of its forecast)."""

    name: str
    mase: float
    wape: float
    coverage_80: float
    coverage_95: float
    seconds: float


@dataclass
class OriginResult:
    """One rolling origin: trained on every period up to ``train_end``, scored from ``test_start`` on."""

    scores: list[MethodScore]
    series_total: int
    series_scored: int
    train_end: str
    test_start: str
    forecasts: pl.DataFrame = field(repr=False)
    models: pl.DataFrame = field(repr=False)


@dataclass
class BacktestResult:
    """The origins, oldest first (the last is the classic split: the panel's last ``horizon`` periods)."""

    origins: list[OriginResult]
    season: int

    @property
    def forecasts(self) -> pl.DataFrame:
        """Our forecasts of every origin (the hold-outs do not overlap: ``ds`` tells the origin)."""
        return pl.concat([o.forecasts for o in self.origins])

    def mean_scores(self) -> list[MethodScore]:
        """Each method's scores averaged over the origins (an unweighted mean of the per-origin figures)."""
        names = [s.name for s in self.origins[0].scores]
        rows = [[s for o in self.origins for s in o.scores if s.name == name] for name in names]
        return [
            MethodScore(
                name=name,
                mase=float(np.mean([s.mase for s in scores])),
                wape=float(np.mean([s.wape for s in scores])),
                coverage_80=float(np.mean([s.coverage_80 for s in scores])),
                coverage_95=float(np.mean([s.coverage_95 for s in scores])),
                seconds=float(np.sum([s.seconds for s in scores])),
            )
            for name, scores in zip(names, rows, strict=True)
        ]


def read_panel(path: Path, id_cols: list[str], date_col: str, target: str) -> pl.DataFrame:
    """unique_id (id columns joined by ``_``), ds (date or datetime), y (float) from a CSV or a zip of one."""
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.lower().endswith(".csv"))
            raw = pl.read_csv(io.BytesIO(archive.read(name)), infer_schema_length=10_000)
    else:
        raw = pl.read_csv(path, infer_schema_length=10_000)
    missing = [c for c in [*id_cols, date_col, target] if c not in raw.columns]
    if missing:
        raise ValueError(f"columns not in {path.name}: {', '.join(missing)}")
    ds = pl.col(date_col)
    if raw.schema[date_col] == pl.String:
        ds = ds.str.to_datetime(strict=False)
    frame = raw.select(
        unique_id=pl.concat_str([pl.col(c).cast(pl.String) for c in id_cols], separator="_"),
        ds=ds.cast(pl.Datetime("us")),
        y=pl.col(target).cast(pl.Float64),
    ).drop_nulls(["unique_id", "ds"])
    # One row per series and period (duplicates summed).
    return frame.group_by("unique_id", "ds").agg(pl.col("y").sum()).sort("unique_id", "ds")


def _fill_gaps(frame: pl.DataFrame, end: object, every: str) -> pl.DataFrame:
    """Missing periods as 0 from each series' first period to ``end`` (the panel's last training period)."""
    spans = frame.group_by("unique_id").agg(first=pl.col("ds").min())
    grid = spans.select(
        "unique_id", ds=pl.datetime_ranges(pl.col("first"), pl.lit(end), interval=every)
    ).explode("ds")
    return (
        grid.join(frame, on=["unique_id", "ds"], how="left")
        .with_columns(pl.col("y").fill_null(0.0))
        .sort("unique_id", "ds")
    )


def run_backtest(
    panel: pl.DataFrame,
    *,
    freq: str,
    horizon: int,
    baselines: tuple[str, ...] = DEFAULT_BASELINES,
    holidays: str | None = "US",
    n_jobs: int = -1,
    origins: int = 1,
    global_model: str | None = None,
) -> BacktestResult:
    """The rolling-origin backtest of ``panel`` (unique_id, ds, y); see the module docstring.

    ``origins``: how many hold-outs of ``horizon`` periods, back to back, ending at the panel's last
    period. ``holidays``: the country whose holiday effects every method (ours and the baselines) gets
    taken out of its history and put back on its forecast (None: no method gets holiday effects).
    ``global_model``: our method's global candidate (``auto`` / ``on`` / ``off``; None: the setting)."""
    from chainsync.forecasting.method import _polars_interval

    season = season_length_for(freq)
    every = _polars_interval(freq)
    periods = panel["ds"].unique().sort()
    if origins < 1:
        raise ValueError("origins must be at least 1")
    if periods.len() <= origins * horizon + 1:
        raise ValueError(
            f"the panel has {periods.len()} periods; need more than origins x horizon + 1 = "
            f"{origins * horizon + 1}"
        )
    warnings.filterwarnings("ignore", module="statsforecast")  # short-series notes, one per series
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    results = []
    for k in range(origins, 0, -1):
        test_start = periods[-k * horizon]
        test_end = periods[-(k - 1) * horizon - 1]
        results.append(
            _backtest_origin(
                panel.filter(pl.col("ds") <= test_end),
                test_start=test_start,
                train_end=periods[-k * horizon - 1],
                every=every,
                freq=freq,
                horizon=horizon,
                season=season,
                baselines=baselines,
                holidays=holidays,
                n_jobs=n_jobs,
                global_model=global_model,
            )
        )
    return BacktestResult(origins=results, season=season)


def _backtest_origin(
    panel: pl.DataFrame,
    *,
    test_start: datetime,
    train_end: datetime,
    every: str,
    freq: str,
    horizon: int,
    season: int,
    baselines: tuple[str, ...],
    holidays: str | None,
    n_jobs: int,
    global_model: str | None,
) -> OriginResult:
    """Train on ``panel`` before ``test_start`` (nothing at or after it reaches a model), forecast and score
    the periods from ``test_start`` to the end of ``panel``."""
    periods = panel["ds"].n_unique()
    train = _fill_gaps(panel.filter(pl.col("ds") < test_start), train_end, every)
    test = panel.filter(pl.col("ds") >= test_start)
    complete = panel.group_by("unique_id").agg(n=pl.len()).filter(pl.col("n") == periods)["unique_id"]

    started = time.perf_counter()
    options: dict[str, Any] = {"horizon": horizon, "freq": freq, "season": season, "holidays": holidays}
    scheduler = get_settings().dask_scheduler  # CHAINSYNC_DASK_SCHEDULER: series partitioned over its workers
    if scheduler:
        # The global model is then trained per partition (2,000 series each), not across the whole panel.
        ours = forecast_panel_partitioned(train, scheduler=scheduler, global_model=global_model, **options)
    else:
        ours = forecast_panel(train, global_model=global_model, **options)
    our_seconds = time.perf_counter() - started
    forecasts = ours.forecasts.select(OUTPUT_COLUMNS).sort("unique_id", "ds")
    predictions = {"ChainSync": (forecasts, our_seconds)}
    if baselines:
        predictions.update(
            _baselines(
                train, baselines, horizon=horizon, freq=freq, season=season, n_jobs=n_jobs, holidays=holidays
            )
        )

    scales = (
        train.group_by("unique_id", maintain_order=True)
        .agg(pl.col("y"))
        .select(
            "unique_id",
            scale=pl.col("y").map_elements(
                lambda v: scale_for(np.asarray(v), season), return_dtype=pl.Float64
            ),
        )
    )
    truth = test.filter(pl.col("unique_id").is_in(complete.implode())).join(scales, on="unique_id")
    scores = []
    for name, (pred, seconds) in predictions.items():
        scored = truth.join(pred, on=["unique_id", "ds"], how="inner")
        scores.append(
            MethodScore(
                name=name,
                mase=mase(scored),
                wape=wape(scored),
                coverage_80=coverage(scored, "lo_80", "hi_80"),
                coverage_95=coverage(scored, "lo_95", "hi_95"),
                seconds=seconds,
            )
        )
    return OriginResult(
        scores=scores,
        series_total=train["unique_id"].n_unique(),
        series_scored=truth["unique_id"].n_unique(),
        train_end=str(train_end),
        test_start=str(test_start),
        forecasts=forecasts,
        models=ours.series,
    )


def _baselines(
    train: pl.DataFrame,
    names: tuple[str, ...],
    *,
    horizon: int,
    freq: str,
    season: int,
    n_jobs: int,
    holidays: str | None,
) -> dict[str, tuple[pl.DataFrame, float]]:
    """The baselines ``names`` (of ``BASELINES``) with their own 80/95 % intervals, each given the same
    holiday effects as ours when ``holidays`` is set (taken out of the history, put back on the forecast)."""
    from chainsync.forecasting.holidays import adjust_for_holidays

    out = {}
    for name in names:
        started = time.perf_counter()
        adjustment = (
            adjust_for_holidays(train, horizon=horizon, freq=freq, country=holidays) if holidays else None
        )
        history = adjustment.history if adjustment is not None else train
        if name == "LightGBM":
            raw = _lightgbm_baseline(history, horizon=horizon, freq=freq, season=season, n_jobs=n_jobs)
        else:
            raw = _statsforecast_baseline(
                history, name, horizon=horizon, freq=freq, season=season, n_jobs=n_jobs
            )
        if adjustment is not None:
            raw = adjustment.restore(raw, OUTPUT_COLUMNS[2:])
        out[name] = (raw.select(OUTPUT_COLUMNS), time.perf_counter() - started)
    return out


def _statsforecast_baseline(
    train: pl.DataFrame, name: str, *, horizon: int, freq: str, season: int, n_jobs: int
) -> pl.DataFrame:
    """statsforecast's model ``name`` fitted per series, with its own 80/95 % intervals."""
    from chainsync.forecasting.method import _sf_freq

    os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")
    os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS, AutoTheta, SeasonalNaive

    factories = {
        "SeasonalNaive": lambda: SeasonalNaive(season_length=season),
        "AutoETS": lambda: AutoETS(season_length=season),
        "AutoTheta": lambda: AutoTheta(season_length=season),
        "MSTL": lambda: MSTL(season_length=season),
    }
    sf = StatsForecast(
        models=[factories[name]()], freq=_sf_freq(freq), n_jobs=n_jobs, fallback_model=SeasonalNaive(season)
    )
    raw = sf.forecast(df=train, h=horizon, level=[80, 95])
    return raw.select(
        "unique_id",
        pl.col("ds").cast(pl.Datetime("us")),
        yhat=pl.col(name),
        **{f"{b}_{lvl}": pl.col(f"{name}-{b}-{lvl}") for lvl in (80, 95) for b in ("lo", "hi")},
    )


def _lightgbm_baseline(
    train: pl.DataFrame, *, horizon: int, freq: str, season: int, n_jobs: int
) -> pl.DataFrame:
    """The practitioner's bar: one untuned LightGBM model across every series through mlforecast, with the
    global candidate's features (``chainsync.forecasting.global_model``) and mlforecast's conformal
    intervals (``PredictionIntervals``: residuals of 2 windows of ``horizon`` periods)."""
    from mlforecast.utils import PredictionIntervals

    from chainsync.forecasting.global_model import GLOBAL_MODEL, build_forecaster
    from chainsync.forecasting.method import _polars_interval

    forecaster = build_forecaster(season=season, interval=_polars_interval(freq), n_jobs=n_jobs)
    # mlforecast's conformal intervals need 2 windows + 1 period per series: shorter series (never the
    # scored, complete-history ones) are left out of the baseline.
    lengths = train.group_by("unique_id").agg(n=pl.len())
    long_enough = lengths.filter(pl.col("n") > 2 * horizon)["unique_id"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecaster.fit(
            train.filter(pl.col("unique_id").is_in(long_enough.implode())).select(
                "unique_id", pl.col("ds").cast(pl.Datetime("us")), "y"
            ),
            static_features=[],
            dropna=False,
            prediction_intervals=PredictionIntervals(n_windows=2, h=horizon),
        )
        raw = forecaster.predict(horizon, level=[80, 95])
    return raw.select(
        "unique_id",
        pl.col("ds").cast(pl.Datetime("us")),
        yhat=pl.col(GLOBAL_MODEL),
        **{f"{b}_{lvl}": pl.col(f"{GLOBAL_MODEL}-{b}-{lvl}") for lvl in (80, 95) for b in ("lo", "hi")},
    )


def write_forecasts(forecasts: pl.DataFrame, path: Path) -> None:
    """OUT.csv: unique_id, ds (ISO date, or date-time when the panel has times of day), yhat, bounds."""
    ds = forecasts["ds"]
    has_time = bool((ds.dt.hour() != 0).any() or (ds.dt.minute() != 0).any())
    out = forecasts.with_columns(pl.col("ds") if has_time else pl.col("ds").cast(pl.Date))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.select(OUTPUT_COLUMNS).write_csv(path)

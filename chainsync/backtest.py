"""Hold-out backtest of ChainSync's forecasting method on any panel CSV (``chainsync backtest``).

Trains on everything before the last ``horizon`` periods of the panel, forecasts those periods with our method
(``chainsync.forecasting.forecast_panel``) and with statsforecast baselines (``BASELINES``: SeasonalNaive and
AutoETS by default, AutoTheta and MSTL on request), and scores them on the series with a complete history
(every period of the panel present, the usual convention for the Walmart split): MASE (scaled by the in-sample
seasonal-naive error, season from the frequency), WAPE and 80 % interval coverage.
"""

from __future__ import annotations

import io
import os
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from chainsync.forecasting import coverage, forecast_panel, mase, scale_for, season_length_for, wape
from chainsync.parallel import forecast_panel_partitioned
from chainsync.settings import get_settings

OUTPUT_COLUMNS = ["unique_id", "ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95"]
BASELINES = ("SeasonalNaive", "AutoETS", "AutoTheta", "MSTL")
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
    name: str
    mase: float
    wape: float
    coverage_80: float
    coverage_95: float
    seconds: float


@dataclass
class BacktestResult:
    scores: list[MethodScore]
    series_total: int
    series_scored: int
    train_end: str
    test_start: str
    season: int
    forecasts: pl.DataFrame = field(repr=False)
    models: pl.DataFrame = field(repr=False)


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
) -> BacktestResult:
    """The hold-out backtest of ``panel`` (unique_id, ds, y); see the module docstring. ``holidays``: the
    country of our method's holiday calendar (None: no holiday effects)."""
    from chainsync.forecasting.method import _polars_interval

    season = season_length_for(freq)
    every = _polars_interval(freq)
    periods = panel["ds"].unique().sort()
    if periods.len() <= horizon + 1:
        raise ValueError(f"the panel has {periods.len()} periods; need more than horizon + 1 = {horizon + 1}")
    test_start = periods[-horizon]
    train_end = periods[-horizon - 1]
    train = _fill_gaps(panel.filter(pl.col("ds") < test_start), train_end, every)
    test = panel.filter(pl.col("ds") >= test_start)
    complete = panel.group_by("unique_id").agg(n=pl.len()).filter(pl.col("n") == periods.len())["unique_id"]

    warnings.filterwarnings("ignore", module="statsforecast")  # short-series notes, one per series
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    started = time.perf_counter()
    scheduler = get_settings().dask_scheduler  # CHAINSYNC_DASK_SCHEDULER: series partitioned over its workers
    if scheduler:
        ours = forecast_panel_partitioned(
            train, scheduler=scheduler, horizon=horizon, freq=freq, season=season, holidays=holidays
        )
    else:
        ours = forecast_panel(train, horizon=horizon, freq=freq, season=season, holidays=holidays)
    our_seconds = time.perf_counter() - started
    forecasts = ours.forecasts.select(OUTPUT_COLUMNS)
    predictions = {"ChainSync": (forecasts, our_seconds)}
    if baselines:
        predictions.update(
            _baselines(train, baselines, horizon=horizon, freq=freq, season=season, n_jobs=n_jobs)
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
    return BacktestResult(
        scores=scores,
        series_total=train["unique_id"].n_unique(),
        series_scored=truth["unique_id"].n_unique(),
        train_end=str(train_end),
        test_start=str(test_start),
        season=season,
        forecasts=forecasts,
        models=ours.series,
    )


def _baselines(
    train: pl.DataFrame, names: tuple[str, ...], *, horizon: int, freq: str, season: int, n_jobs: int
) -> dict[str, tuple[pl.DataFrame, float]]:
    """statsforecast's ``names`` (of ``BASELINES``) with their own 80/95 % intervals."""
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
    out = {}
    for name in names:
        model = factories[name]()
        started = time.perf_counter()
        sf = StatsForecast(
            models=[model], freq=_sf_freq(freq), n_jobs=n_jobs, fallback_model=SeasonalNaive(season)
        )
        raw = sf.forecast(df=train, h=horizon, level=[80, 95])
        out[name] = (
            raw.select(
                "unique_id",
                pl.col("ds").cast(pl.Datetime("us")),
                yhat=pl.col(name),
                **{f"{b}_{lvl}": pl.col(f"{name}-{b}-{lvl}") for lvl in (80, 95) for b in ("lo", "hi")},
            ),
            time.perf_counter() - started,
        )
    return out


def write_forecasts(forecasts: pl.DataFrame, path: Path) -> None:
    """OUT.csv: unique_id, ds (ISO date, or date-time when the panel has times of day), yhat, bounds."""
    ds = forecasts["ds"]
    has_time = bool((ds.dt.hour() != 0).any() or (ds.dt.minute() != 0).any())
    out = forecasts.with_columns(pl.col("ds") if has_time else pl.col("ds").cast(pl.Date))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.select(OUTPUT_COLUMNS).write_csv(path)

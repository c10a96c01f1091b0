"""One LightGBM model trained across every series of a panel (mlforecast), the method's global candidate.

A local model sees one series; a global model learns the shape shared by thousands of them (how a
department's sales move after four weak weeks, what week 47 does) from all of them at once. The
features are what a practitioner would give it untuned: lags 1–4 and one season, rolling means of the
last 4 and 13 periods and of the 3 periods around one season back, the calendar position (week of year on
weekly data; weekday and week on daily), each series standardised by its own mean and standard deviation
(``LocalStandardScaler``) so one model fits series of any size. Rows with a lag not yet available are kept
(LightGBM splits missing values apart), so series shorter than one season still train and forecast.
Forecasts are recursive: step 2 uses step 1's forecast as its lag 1.

``global_forecasts`` fits one model per origin: the final one on everything, and one per cross-validation
window on each series' history before that window only, so the selection in ``method.py`` compares the
global model with the local ones on the same windows without either seeing the periods it is scored on.
lightgbm and mlforecast are imported inside the function (the API never loads them).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import polars as pl

GLOBAL_MODEL = "LightGBM"  # the model column's name for the global model's forecasts
N_ESTIMATORS = 100  # LightGBM's default boosting rounds; untuned on purpose


def _week(dates: pl.Series) -> pl.Series:
    """ISO week of the year (1..53): where holiday weeks and the yearly cycle sit."""
    return dates.dt.week()


def _weekday(dates: pl.Series) -> pl.Series:
    """Day of the week (Monday 1 .. Sunday 7)."""
    return dates.dt.weekday()


def features_for(season: int) -> tuple[list[int], dict[int, list[object]], list[object]]:
    """Lags, lag transforms and date features for a season length (52 weekly, 7 daily, 12 monthly ...)."""
    from mlforecast.lag_transforms import RollingMean

    lags = sorted({1, 2, 3, 4, *([season] if season > 4 else [])})
    short, long = (7, 28) if season == 7 else (4, 13)
    transforms: dict[int, list[object]] = {1: [RollingMean(window_size=short), RollingMean(window_size=long)]}
    if season >= 12:
        transforms[season - 1] = [RollingMean(window_size=3)]  # weeks season-1, season, season+1 back
    dates: list[object] = []
    if season == 52:
        dates = [_week]
    elif season == 7:
        dates = [_weekday, _week]
    return lags, transforms, dates


def build_forecaster(*, season: int, interval: str, n_jobs: int = 1) -> Any:
    """An unfitted ``mlforecast.MLForecast`` holding the untuned LightGBM model and the features above,
    for series of ``interval`` (a polars duration: ``1w``, ``1d``) and season length ``season``. The one
    definition behind the global candidate, the backtest's LightGBM baseline and the benchmark's."""
    os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.target_transforms import LocalStandardScaler

    lags, transforms, dates = features_for(season)
    model = lgb.LGBMRegressor(
        n_estimators=N_ESTIMATORS,
        random_state=0,
        # The same history gives the same forecast (the no-leakage test relies on it): deterministic alone
        # is not enough, LightGBM otherwise picks row- or column-wise histograms by timing them.
        deterministic=True,
        force_col_wise=True,
        n_jobs=n_jobs if n_jobs > 0 else (os.cpu_count() or 1),
        verbosity=-1,
    )
    return MLForecast(
        models={GLOBAL_MODEL: model},
        freq=interval,
        lags=lags,
        lag_transforms=transforms,  # type: ignore[arg-type]
        date_features=dates,  # type: ignore[arg-type]
        target_transforms=[LocalStandardScaler()],
    )


def global_forecasts(
    ids: list[str],
    arrays: list[np.ndarray],
    last_ds: pl.Series,
    *,
    horizon: int,
    interval: str,
    season: int,
    backs: list[int],
    n_jobs: int = 1,
) -> dict[int, np.ndarray]:
    """Forecasts of one global LightGBM model per origin.

    ``arrays[i]``: series ``ids[i]``'s gap-free history (periods of ``interval``, a polars duration such as
    ``1w``), ending at ``last_ds[i]``. For each ``back`` in ``backs`` the model is trained on every series'
    history without its last ``back`` periods (0: the whole history) and forecasts the ``horizon`` periods
    after that cut. Returns ``{back: (len(ids), horizon) array}``, NaN rows for series with fewer than 2
    periods before the cut (they take no part in that origin)."""
    lengths = np.array([a.size for a in arrays], dtype=np.int64)
    unit = interval.lstrip("0123456789")
    every = int(interval[: len(interval) - len(unit)] or 1)
    back = np.concatenate([np.arange(n - 1, -1, -1) for n in lengths]).astype(np.int64)
    long = pl.DataFrame(
        {
            "unique_id": np.repeat(np.array(ids, dtype=object), lengths).tolist(),
            "back": back,
            "y": np.concatenate(arrays) if arrays else np.zeros(0),
        }
    ).with_columns(last_ds=pl.Series(np.repeat(last_ds.cast(pl.Datetime("us")).to_numpy(), lengths)))
    long = long.with_columns(
        ds=pl.col("last_ds").dt.offset_by(
            pl.concat_str(pl.lit("-"), (pl.col("back") * every).cast(pl.String), pl.lit(unit))
        )
    )
    index = {uid: i for i, uid in enumerate(ids)}
    out: dict[int, np.ndarray] = {}
    for cut in backs:
        part = long.filter(pl.col("back") >= cut)
        keep = part.group_by("unique_id").agg(n=pl.len()).filter(pl.col("n") >= 2)["unique_id"]
        part = part.filter(pl.col("unique_id").is_in(keep.implode())).select("unique_id", "ds", "y")
        result = np.full((len(ids), horizon), np.nan)
        if part.is_empty():
            out[cut] = result
            continue
        forecaster = build_forecaster(season=season, interval=interval, n_jobs=n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            forecaster.fit(part, static_features=[], dropna=False)
            predicted = forecaster.predict(horizon).sort("unique_id", "ds")
        values = predicted[GLOBAL_MODEL].to_numpy().astype(float).reshape(-1, horizon)
        for row, uid in enumerate(predicted["unique_id"].unique(maintain_order=True).to_list()):
            result[index[uid]] = values[row]
        out[cut] = result
    return out

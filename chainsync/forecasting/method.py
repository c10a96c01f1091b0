"""ChainSync's forecasting method: demand-pattern routing, per-series selection by rolling-origin
cross-validation, a global model where it earns its place, conformal intervals.

1. **Classify** each series by its demand pattern (Syntetos-Boylan): ADI = periods per non-zero period,
   CV² = squared coefficient of variation of the non-zero values. smooth (ADI < 1.32, CV² < 0.49),
   erratic (ADI < 1.32, CV² >= 0.49), intermittent (ADI >= 1.32, CV² < 0.49), lumpy (both high).
2. **Route**: smooth and erratic series get the seasonal family — SeasonalNaive and SeasonalLevel (below),
   optionally statsforecast's AutoTheta/AutoETS (``regular_models``); intermittent and lumpy series get
   statsforecast's CrostonOptimized, ADIDA, IMAPA and TSB besides SeasonalLevel. On daily data those four
   flat forecasts are multiplied by the series' weekday profile (``weekday_profiles``).
3. **Select** per series the candidate with the lowest mean absolute error over the latest ``n_windows``
   rolling origins (step = horizon). Series too short for one window get SeasonalNaive (the fallback model,
   also statsforecast's ``fallback_model`` where statsforecast fits).
4. **Global model** (``global_model.py``, ``_choose_global``; on weekly and coarser panels by default,
   ``CHAINSYNC_FORECAST_GLOBAL_MODEL``): one LightGBM model trained across every series, refitted for each
   cross-validation window on the history before it. Per pattern group, the local choice, the global
   model and the average of the two compete on the same CV windows; the lowest mean CV MASE wins.
5. **Intervals** are conformal: the signed cross-validation errors of the selected model, divided by each
   series' MASE scale, are pooled per pattern group and horizon step; their quantiles times the series'
   scale around the point forecast give the 80 and 95 % bounds. Signed quantiles keep skew (a demand
   series cannot go below zero but can spike).

SeasonalLevel is a seasonal profile averaged over the last ``m`` seasons (2 years of weekly data, up to 52
weeks of daily data), each taken relative to the level of
the ``k`` periods before it, added to the level of the last ``k`` periods: day-of-week (or week-of-year)
shape from several seasons, level from the recent past. Holiday weeks recur at the same seasonal position, so
on weekly data the yearly profile carries them; on daily data the weekly profile carries the day of week.
``forecast_panel(..., holidays="US")`` also takes holiday effects out of the history and puts them back on the
horizon (``chainsync.forecasting.holidays``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from chainsync.forecasting.metrics import scale_for

LEVELS = (80, 95)
SEASONAL_FAMILY = ("SeasonalNaive", "SeasonalLevel", "SeasonalLevelShort")
INTERMITTENT_FAMILY = ("CrostonOptimized", "ADIDA", "IMAPA", "TSB", "SeasonalLevel")
ADI_CUT = 1.32
CV2_CUT = 0.49
MIN_POOL = 200  # fewer pooled errors than this in a group: pool across groups


def season_length_for(freq: str) -> int:
    """The season length of a frequency: 7 for daily, 52 for weekly, 12 monthly, 4 quarterly, 24 hourly."""
    f = freq.upper().lstrip("0123456789")
    if f.startswith("W"):
        return 52
    if f.startswith("D"):
        return 7
    if f.startswith("M"):
        return 12
    if f.startswith("Q"):
        return 4
    if f.startswith("H"):
        return 24
    return 1


def _polars_interval(freq: str) -> str:
    f = freq.upper()
    digits = "".join(ch for ch in f if ch.isdigit()) or "1"
    f = f.lstrip("0123456789")
    unit = {"W": "w", "D": "d", "M": "mo", "Q": "q", "H": "h", "Y": "y", "A": "y"}.get(f[:1], "d")
    return f"{digits}{unit}"


def classify_demand(y: np.ndarray) -> str:
    """smooth / erratic / intermittent / lumpy by ADI and CV² of the non-zero values (``zero`` if none)."""
    y = np.asarray(y, dtype=float)
    nonzero = y[y != 0]
    if nonzero.size == 0:
        return "zero"
    adi = y.size / nonzero.size
    mean = float(np.mean(np.abs(nonzero)))
    cv2 = float(np.var(nonzero) / mean**2) if mean > 0 else 0.0
    if adi < ADI_CUT:
        return "smooth" if cv2 < CV2_CUT else "erratic"
    return "intermittent" if cv2 < CV2_CUT else "lumpy"


def _seasonal_naive(y: np.ndarray, h: int, season: int) -> np.ndarray:
    if y.size >= season:
        return y[y.size - season + (np.arange(h) % season)]
    return np.full(h, y[-1] if y.size else 0.0)


def _seasonal_level(y: np.ndarray, h: int, season: int, seasons: int, window: int) -> np.ndarray | None:
    n = y.size
    m = min(seasons, (n - window) // season) if season > 0 else 0
    if m < 1:
        return None
    step = np.arange(h) % season
    level = float(np.mean(y[n - window :]))
    profile = np.zeros(h)
    for r in range(1, m + 1):
        end = n - r * season
        profile += y[end + step] - float(np.mean(y[end - window : end]))
    return level + profile / m


def _custom_forecast(name: str, y: np.ndarray, h: int, season: int) -> np.ndarray | None:
    """The numpy models: SeasonalNaive, SeasonalLevel (long profile), SeasonalLevelShort (one season)."""
    if name == "SeasonalNaive":
        return _seasonal_naive(y, h, season)
    long_seasons, window = (2, max(1, min(13, season // 4))) if season >= 24 else (52, 4 * max(season, 1))
    if name == "SeasonalLevel":
        return _seasonal_level(y, h, season, long_seasons, window)
    if name == "SeasonalLevelShort":
        return _seasonal_level(y, h, season, 1, max(1, season if season < 24 else window))
    raise KeyError(name)


def _statsforecast_models(names: list[str], season: int, h: int) -> list[object]:
    os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")
    os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
    from statsforecast import models as m

    factories = {
        "CrostonOptimized": lambda: m.CrostonOptimized(),
        "ADIDA": lambda: m.ADIDA(),
        "IMAPA": lambda: m.IMAPA(),
        "TSB": lambda: m.TSB(alpha_d=0.2, alpha_p=0.2),
        "AutoTheta": lambda: m.AutoTheta(season_length=season),
        "AutoETS": lambda: m.AutoETS(season_length=season),
        "OptimizedTheta": lambda: m.OptimizedTheta(season_length=season),
        "MSTL": lambda: m.MSTL(season_length=season),
    }
    return [factories[n]() for n in names]


@dataclass(frozen=True)
class PanelForecast:
    """``forecasts``: unique_id, ds, yhat, lo_80, hi_80, lo_95, hi_95, model (one row per series and step,
    step 1..horizon as ``step``). ``series``: one row per series — pattern, model, n_obs, zero_share,
    gap_share, scale (MASE denominator), cv_mase (selected model's MASE over the CV windows, null when the
    series was too short), cv_windows."""

    forecasts: pl.DataFrame
    series: pl.DataFrame


def _split(frame: pl.DataFrame) -> tuple[list[str], list[np.ndarray], pl.DataFrame]:
    frame = frame.sort("unique_id", "ds")
    lengths = frame.group_by("unique_id", maintain_order=True).agg(
        n=pl.len(), last_ds=pl.col("ds").last(), first_ds=pl.col("ds").first()
    )
    values = frame["y"].cast(pl.Float64).fill_null(0.0).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths["n"].to_numpy().astype(np.int64))]).astype(np.int64)
    arrays = [values[offsets[i] : offsets[i + 1]] for i in range(lengths.height)]
    return lengths["unique_id"].to_list(), arrays, lengths


def forecast_panel(
    frame: pl.DataFrame,
    *,
    horizon: int,
    freq: str,
    holidays: str | None = None,
    global_model: str | None = None,
    **options: Any,
) -> PanelForecast:
    """Forecast ``horizon`` periods after each series' last ``ds`` (see the module docstring).

    ``holidays``: a country code (``US``) to take holiday effects out of the history before fitting and put
    them back on the holiday periods of the horizon (``chainsync.forecasting.holidays``; daily and weekly data
    only); None for no holiday adjustment. ``global_model``: ``auto`` / ``on`` / ``off`` for the global
    LightGBM candidate (None: the ``forecast_global_model`` setting; see ``_use_global_model``).
    ``options`` go to ``_forecast_panel``."""
    options["global_model"] = global_model
    if not holidays or frame.is_empty():
        return _forecast_panel(frame, horizon=horizon, freq=freq, **options)
    from chainsync.forecasting.holidays import adjust_for_holidays

    if options.get("nonnegative") is None:
        options["nonnegative"] = bool(frame["y"].min() >= 0)  # type: ignore[operator]
    adjustment = adjust_for_holidays(frame, horizon=horizon, freq=freq, country=holidays)
    result = _forecast_panel(adjustment.history, horizon=horizon, freq=freq, **options)
    forecasts = adjustment.restore(
        result.forecasts, ["yhat", *(f"{b}_{lvl}" for lvl in LEVELS for b in ("lo", "hi"))]
    )
    return PanelForecast(forecasts=forecasts, series=result.series)


def _forecast_panel(
    frame: pl.DataFrame,
    *,
    horizon: int,
    freq: str,
    season: int | None = None,
    n_windows: int = 2,
    regular_models: tuple[str, ...] = SEASONAL_FAMILY,
    intermittent_models: tuple[str, ...] = INTERMITTENT_FAMILY,
    nonnegative: bool | None = None,
    switch_margin: float = 0.25,
    n_jobs: int = 1,
    global_model: str | None = None,
) -> PanelForecast:
    """Forecast ``horizon`` periods after each series' last ``ds`` (see the module docstring for the method).

    ``frame``: unique_id (str), ds (date/datetime, regular at ``freq``, gap-free), y (float). ``nonnegative``
    (default: every y >= 0) clips forecasts and bounds at 0. ``global_model``: ``auto`` / ``on`` / ``off``
    (None: the ``forecast_global_model`` setting), see ``_use_global_model``."""
    season = season or season_length_for(freq)
    ids, arrays, meta = _split(frame.select("unique_id", "ds", "y"))
    if nonnegative is None:
        nonnegative = bool(frame["y"].min() >= 0) if frame.height else True  # type: ignore[operator]
    patterns = [classify_demand(y[np.argmax(y != 0) :] if np.any(y != 0) else y) for y in arrays]
    scales = np.array([scale_for(y, season) for y in arrays])
    intermittent = np.array([p in ("intermittent", "lumpy", "zero") for p in patterns])

    # Cross-validation: errors[model][i] is an (windows, horizon) array of signed errors, or None.
    statsforecast_names = sorted(
        {n for n in (*regular_models, *intermittent_models) if n not in SEASONAL_FAMILY}
    )
    candidates = {
        i: list(intermittent_models if intermittent[i] else regular_models) for i in range(len(ids))
    }
    windows = [min(n_windows, max(0, (y.size - max(season, 2)) // horizon)) for y in arrays]
    errors: dict[str, list[np.ndarray | None]] = {}
    for name in (*regular_models, *intermittent_models):
        if name in errors or name not in SEASONAL_FAMILY:
            continue
        errors[name] = [None] * len(ids)
        for i, y in enumerate(arrays):
            if name not in candidates[i] or windows[i] == 0:
                continue
            rows = []
            for w in range(windows[i], 0, -1):
                cut = y.size - w * horizon
                f = _custom_forecast(name, y[:cut], horizon, season)
                if f is None:
                    break
                if nonnegative:
                    f = np.maximum(f, 0.0)
                rows.append(y[cut : cut + horizon] - f)
            else:
                errors[name][i] = np.array(rows)
    final: dict[str, dict[int, np.ndarray]] = {}
    if statsforecast_names:
        _statsforecast_cv_and_forecast(
            ids,
            arrays,
            meta,
            candidates,
            windows,
            statsforecast_names,
            season,
            horizon,
            freq,
            n_jobs,
            nonnegative,
            errors,
            final,
        )

    # Selection: per pattern group the candidate with the lowest mean CV MASE; a series switches to its own
    # best candidate only when that beats the group's choice by more than ``switch_margin`` (two windows
    # are noisy, so per-series choice alone overfits).
    cv_mae_of = {
        name: np.array([np.nan if e is None or e.size == 0 else float(np.mean(np.abs(e))) for e in errs])
        for name, errs in errors.items()
    }
    group_choice: dict[str, str] = {}
    for pattern in set(patterns):
        members = [i for i, p in enumerate(patterns) if p == pattern]
        names = candidates[members[0]]
        means = {
            name: float(np.nanmean(cv_mae_of[name][members] / scales[members]))
            for name in names
            if name in cv_mae_of and np.isfinite(cv_mae_of[name][members]).any()
        }
        group_choice[pattern] = min(means, key=means.__getitem__) if means else "SeasonalNaive"
    chosen: list[str] = []
    cv_mae = np.full(len(ids), np.nan)
    for i in range(len(ids)):
        best = group_choice[patterns[i]]
        best_mae = cv_mae_of.get(best, np.full(len(ids), np.nan))[i]
        if not np.isfinite(best_mae):
            best, best_mae = "SeasonalNaive", cv_mae_of.get("SeasonalNaive", np.full(len(ids), np.nan))[i]
        for name in candidates[i]:
            value = cv_mae_of.get(name, np.full(len(ids), np.nan))[i]
            if np.isfinite(value) and (not np.isfinite(best_mae) or value < (1 - switch_margin) * best_mae):
                best, best_mae = name, value
        chosen.append(best)
        cv_mae[i] = best_mae

    # Point forecasts.
    yhat = np.zeros((len(ids), horizon))
    for i, y in enumerate(arrays):
        name = chosen[i]
        f = final.get(name, {}).get(i) if name not in SEASONAL_FAMILY else None
        if f is None:
            f = _custom_forecast(name, y, horizon, season) if name in SEASONAL_FAMILY else None
        if f is None:
            f = _seasonal_naive(y, horizon, season)
            chosen[i] = "SeasonalNaive"
        yhat[i] = f

    # The global candidate competes with the local choice on the same CV windows (``_choose_global``).
    if _use_global_model(global_model, season=season, n_series=len(ids)):
        _choose_global(
            ids,
            arrays,
            meta,
            patterns,
            scales,
            windows,
            chosen,
            cv_mae,
            yhat,
            errors,
            horizon=horizon,
            freq=freq,
            season=season,
            nonnegative=nonnegative,
            n_jobs=n_jobs,
        )

    # Conformal bounds from pooled, scale-normalised signed errors per pattern group and step.
    quantiles = _conformal_quantiles(errors, chosen, scales, intermittent, horizon)
    bounds = {}
    for lvl in LEVELS:
        lo_q = np.stack([quantiles[bool(g)][(lvl, "lo")] for g in intermittent])
        hi_q = np.stack([quantiles[bool(g)][(lvl, "hi")] for g in intermittent])
        bounds[f"lo_{lvl}"] = yhat + lo_q * scales[:, None]
        bounds[f"hi_{lvl}"] = yhat + hi_q * scales[:, None]
    if nonnegative:
        yhat = np.maximum(yhat, 0.0)
        bounds = {k: np.maximum(v, 0.0) for k, v in bounds.items()}
    # Order lo_95 <= lo_80 <= yhat <= hi_80 <= hi_95.
    bounds["lo_80"] = np.minimum(bounds["lo_80"], yhat)
    bounds["hi_80"] = np.maximum(bounds["hi_80"], yhat)
    bounds["lo_95"] = np.minimum(bounds["lo_95"], bounds["lo_80"])
    bounds["hi_95"] = np.maximum(bounds["hi_95"], bounds["hi_80"])

    n = len(ids)
    step = np.tile(np.arange(1, horizon + 1), n)
    interval = _polars_interval(freq)
    unit = interval.lstrip("0123456789")
    every = int(interval[: len(interval) - len(unit)] or 1)
    forecasts = pl.DataFrame(
        {
            "unique_id": np.repeat(np.array(ids, dtype=object), horizon).tolist(),
            "step": step.astype(np.int32),
            "yhat": yhat.ravel(),
            **{k: v.ravel() for k, v in bounds.items()},
            "model": np.repeat(np.array(chosen, dtype=object), horizon).tolist(),
        }
    ).join(meta.select("unique_id", "last_ds"), on="unique_id", how="left")
    forecasts = forecasts.with_columns(
        ds=pl.col("last_ds").dt.offset_by(
            pl.concat_str((pl.col("step").cast(pl.Int64) * every).cast(pl.String), pl.lit(unit))
        )
    ).select("unique_id", "ds", "step", "yhat", "lo_80", "hi_80", "lo_95", "hi_95", "model")
    zero_share = np.array([float(np.mean(y == 0)) if y.size else 1.0 for y in arrays])
    series = pl.DataFrame(
        {
            "unique_id": ids,
            "pattern": patterns,
            "model": chosen,
            "n_obs": [int(y.size) for y in arrays],
            "zero_share": zero_share,
            "scale": scales,
            "cv_mase": cv_mae / scales,
            "cv_windows": windows,
        },
        nan_to_null=True,
    )
    return PanelForecast(forecasts=forecasts, series=series)


def _conformal_quantiles(
    errors: dict[str, list[np.ndarray | None]],
    chosen: list[str],
    scales: np.ndarray,
    intermittent: np.ndarray,
    horizon: int,
) -> dict[bool, dict[tuple[int, str], np.ndarray]]:
    pooled: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for i, name in enumerate(chosen):
        e = errors.get(name, [None] * len(chosen))[i]
        if e is not None and e.size:
            pooled[bool(intermittent[i])].append(e / scales[i])
    everything = [e for group in pooled.values() for e in group]
    out: dict[bool, dict[tuple[int, str], np.ndarray]] = {}
    for group in (False, True):
        rows = pooled[group] if sum(e.shape[0] for e in pooled[group]) >= MIN_POOL else everything
        stacked = np.concatenate(rows, axis=0) if rows else np.zeros((1, horizon))
        out[group] = {}
        for lvl in LEVELS:
            tail = (100 - lvl) / 200
            out[group][(lvl, "lo")] = np.quantile(stacked, tail, axis=0) if rows else -np.full(horizon, 1.0)
            out[group][(lvl, "hi")] = (
                np.quantile(stacked, 1 - tail, axis=0) if rows else np.full(horizon, 1.0)
            )
    return out


def _statsforecast_cv_and_forecast(
    ids: list[str],
    arrays: list[np.ndarray],
    meta: pl.DataFrame,
    candidates: dict[int, list[str]],
    windows: list[int],
    names: list[str],
    season: int,
    horizon: int,
    freq: str,
    n_jobs: int,
    nonnegative: bool,
    errors: dict[str, list[np.ndarray | None]],
    final: dict[str, dict[int, np.ndarray]],
) -> None:
    """Cross-validation errors and final forecasts of statsforecast models, for the series routed to them.

    On daily data (season 7) the intermittent models' flat forecasts are multiplied by the series' weekday
    profile (``WeekdayProfiles``), so every daily forecast carries the day of week."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    for name in names:
        errors[name] = [None] * len(ids)
        final[name] = {}
    weekdays = (
        weekday_profiles(arrays, meta, holdout=[w * horizon for w in windows])
        if season == 7 and any(n in FLAT_MODELS for n in names)
        else None
    )
    wanted = [i for i in range(len(ids)) if any(n in names for n in candidates[i])]
    if not wanted:
        return
    # Series grouped by the model list they need and their number of CV windows.
    groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
    for i in wanted:
        key = (tuple(n for n in candidates[i] if n in names), windows[i])
        groups.setdefault(key, []).append(i)
    index = {uid: i for i, uid in enumerate(ids)}
    for (model_names, n_win), members in groups.items():
        member_ids = [ids[i] for i in members]
        data = _long_frame(member_ids, [arrays[i] for i in members], meta, freq)
        models = _statsforecast_models(list(model_names), season, horizon)
        for model, model_name in zip(models, model_names, strict=True):
            model.alias = model_name  # type: ignore[attr-defined]
        sf = StatsForecast(
            models=models,
            freq=_sf_freq(freq),
            n_jobs=n_jobs,
            fallback_model=SeasonalNaive(season_length=season),
        )
        fc = sf.forecast(df=data, h=horizon)
        for uid, part in fc.sort("unique_id", "ds").group_by("unique_id", maintain_order=True):
            i = index[uid[0]]  # type: ignore[index]
            for model_name in model_names:
                f = part[model_name].to_numpy().astype(float)
                if weekdays is not None and model_name in FLAT_MODELS:
                    f = f * weekdays.final[i, (weekdays.first[i] + arrays[i].size + np.arange(horizon)) % 7]
                final[model_name][i] = f
        if n_win == 0:
            continue
        cv = sf.cross_validation(df=data, h=horizon, n_windows=n_win, step_size=horizon)
        cv = cv.sort("unique_id", "cutoff", "ds")
        for uid, part in cv.group_by("unique_id", maintain_order=True):
            i = index[uid[0]]  # type: ignore[index]
            actual = part["y"].to_numpy().reshape(n_win, horizon)
            for model_name in model_names:
                pred = part[model_name].to_numpy().astype(float).reshape(n_win, horizon)
                if weekdays is not None and model_name in FLAT_MODELS:
                    cuts = arrays[i].size - horizon * np.arange(n_win, 0, -1)
                    slots = (weekdays.first[i] + cuts[:, None] + np.arange(horizon)[None, :]) % 7
                    pred = pred * weekdays.cv[i][slots]
                if nonnegative:
                    pred = np.maximum(pred, 0.0)
                errors[model_name][i] = actual - pred


FLAT_MODELS = ("CrostonOptimized", "ADIDA", "IMAPA", "TSB")  # forecasts with no seasonal shape
WEEKDAY_PRIOR_DAYS = 28  # pseudo-days per weekday pulling a series' profile towards the pooled one


@dataclass(frozen=True)
class WeekdayProfiles:
    """Per series (rows) demand multipliers by weekday slot (7 columns, mean 1): ``final`` from the whole
    history, ``cv`` from the history before the first cross-validation cut; ``first`` is the slot of each
    series' first observation (slot = weekday, Monday 0, when ``ds`` are dates)."""

    final: np.ndarray
    cv: np.ndarray
    first: np.ndarray


def weekday_profiles(arrays: list[np.ndarray], meta: pl.DataFrame, holdout: list[int]) -> WeekdayProfiles:
    """Each series' weekday profile: its own share of demand per weekday, shrunk towards the panel's pooled
    profile by ``WEEKDAY_PRIOR_DAYS`` pseudo-days per weekday (slow movers have few sales per weekday).
    ``holdout[i]`` periods at the end of series ``i`` are left out of its ``cv`` profile."""
    last = meta["last_ds"].cast(pl.Date).dt.weekday().to_numpy().astype(np.int64) - 1  # Monday 0
    first = np.array([(last[i] - (y.size - 1)) % 7 for i, y in enumerate(arrays)], dtype=np.int64)

    def sums(cut: list[int]) -> tuple[np.ndarray, np.ndarray]:
        total, count = np.zeros((len(arrays), 7)), np.zeros((len(arrays), 7))
        for i, y in enumerate(arrays):
            part = y[: max(0, y.size - cut[i])]
            slots = (first[i] + np.arange(part.size)) % 7
            total[i] = np.bincount(slots, weights=part, minlength=7)
            count[i] = np.bincount(slots, minlength=7)
        return total, count

    def profiles(cut: list[int]) -> np.ndarray:
        total, count = sums(cut)
        mean = total.sum(axis=1) / np.maximum(count.sum(axis=1), 1)
        pooled_rate = total.sum(axis=0) / np.maximum((count * mean[:, None]).sum(axis=0), 1e-12)
        pooled = pooled_rate / pooled_rate.mean() if pooled_rate.mean() > 0 else np.ones(7)
        prior = WEEKDAY_PRIOR_DAYS * mean[:, None]
        shrunk = np.where(
            mean[:, None] > 0,
            (total + prior * pooled) / np.maximum(count * mean[:, None] + prior, 1e-12),
            1.0,
        )
        return shrunk / shrunk.mean(axis=1, keepdims=True)

    return WeekdayProfiles(final=profiles([0] * len(arrays)), cv=profiles(holdout), first=first)


def _sf_freq(freq: str) -> str:
    return _polars_interval(freq)


def _long_frame(ids: list[str], arrays: list[np.ndarray], meta: pl.DataFrame, freq: str) -> pl.DataFrame:
    """Rebuild unique_id, ds, y for ``ids`` (ds as datetimes ending at each series' last_ds)."""
    lengths = [a.size for a in arrays]
    interval = _polars_interval(freq)
    unit = interval.lstrip("0123456789")
    every = int(interval[: len(interval) - len(unit)] or 1)
    frame = pl.DataFrame(
        {
            "unique_id": np.repeat(np.array(ids, dtype=object), lengths).tolist(),
            "back": np.concatenate([np.arange(n - 1, -1, -1) for n in lengths]).astype(np.int64) * every,
            "y": np.concatenate(arrays),
        }
    ).join(meta.select("unique_id", "last_ds"), on="unique_id", how="left")
    return frame.select(
        "unique_id",
        ds=pl.col("last_ds")
        .cast(pl.Datetime("us"))
        .dt.offset_by(pl.concat_str(pl.lit("-"), pl.col("back").cast(pl.String), pl.lit(unit))),
        y="y",
    )


GLOBAL_MODES = ("auto", "on", "off")
GLOBAL_MIN_SERIES = 20  # a model "across series" needs series to learn across


def _use_global_model(mode: str | None, *, season: int, n_series: int) -> bool:
    """Whether the global LightGBM model (``chainsync.forecasting.global_model``) is a candidate.

    ``on``: always (2+ series); ``off``: never; ``auto`` (the default): on weekly and coarser data (season
    52, 12, 4) with at least ``GLOBAL_MIN_SERIES`` series, off on daily and hourly data, where a panel has
    7–24 times the rows and the daily pipeline must keep its throughput. None reads the
    ``forecast_global_model`` setting (``CHAINSYNC_FORECAST_GLOBAL_MODEL``)."""
    if mode is None:
        from chainsync.settings import get_settings

        mode = get_settings().forecast_global_model
    if mode not in GLOBAL_MODES:
        raise ValueError(f"global_model must be one of {', '.join(GLOBAL_MODES)}, not {mode!r}")
    if mode == "off" or n_series < 2:
        return False
    if mode == "on":
        return True
    return season not in (7, 24) and n_series >= GLOBAL_MIN_SERIES


def _choose_global(
    ids: list[str],
    arrays: list[np.ndarray],
    meta: pl.DataFrame,
    patterns: list[str],
    scales: np.ndarray,
    windows: list[int],
    chosen: list[str],
    cv_mae: np.ndarray,
    yhat: np.ndarray,
    errors: dict[str, list[np.ndarray | None]],
    *,
    horizon: int,
    freq: str,
    season: int,
    nonnegative: bool,
    n_jobs: int,
) -> None:
    """Offer the global model, alone and averaged with each series' chosen local model, per pattern group.

    The global model is fitted once per cross-validation window on the history before it (and once on
    everything for the forecast); per pattern group, over the series with every window scored, the option
    with the lowest mean CV MASE among the local choice, the global model and their average wins. A group
    decision, like the local one, because two windows per series are noisy. Updates ``chosen``, ``cv_mae``,
    ``yhat`` and ``errors`` (the winner's CV errors, for the conformal intervals) in place."""
    from chainsync.forecasting.global_model import GLOBAL_MODEL, global_forecasts

    n = len(ids)
    backs = [0, *(w * horizon for w in range(1, max(windows, default=0) + 1))]
    predicted = global_forecasts(
        ids,
        arrays,
        meta["last_ds"],
        horizon=horizon,
        interval=_polars_interval(freq),
        season=season,
        backs=backs,
        n_jobs=n_jobs,
    )
    if nonnegative:
        predicted = {back: np.maximum(f, 0.0) for back, f in predicted.items()}
    global_errors: list[np.ndarray | None] = [None] * n
    local_errors: list[np.ndarray | None] = [None] * n
    for i, y in enumerate(arrays):
        if windows[i] == 0 or not np.isfinite(predicted[0][i]).all():
            continue
        rows = [
            y[y.size - w * horizon : y.size - w * horizon + horizon] - predicted[w * horizon][i]
            for w in range(windows[i], 0, -1)
        ]
        local = errors.get(chosen[i], [None] * n)[i]
        if np.isfinite(rows).all() and local is not None and local.shape == (windows[i], horizon):
            global_errors[i], local_errors[i] = np.array(rows), local
    for pattern in sorted(set(patterns)):
        members = [i for i in range(n) if patterns[i] == pattern and global_errors[i] is not None]
        if not members:
            continue
        options = {
            "local": [local_errors[i] for i in members],
            GLOBAL_MODEL: [global_errors[i] for i in members],
            "average": [(local_errors[i] + global_errors[i]) / 2 for i in members],  # type: ignore[operator]
        }
        score = {
            option: float(
                np.mean([np.mean(np.abs(e)) / scales[i] for e, i in zip(errs, members, strict=True)])
            )  # type: ignore[arg-type]
            for option, errs in options.items()
        }
        best = min(score, key=score.__getitem__)
        if best == "local":
            continue
        for e, i in zip(options[best], members, strict=True):
            name = GLOBAL_MODEL if best == GLOBAL_MODEL else f"{chosen[i]}+{GLOBAL_MODEL}"
            yhat[i] = predicted[0][i] if best == GLOBAL_MODEL else (yhat[i] + predicted[0][i]) / 2
            errors.setdefault(name, [None] * n)[i] = e
            chosen[i] = name
            cv_mae[i] = float(np.mean(np.abs(e)))  # type: ignore[arg-type]

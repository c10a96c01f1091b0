"""Daily demand forecasts per store x product (polars in, polars out) with the shared method of
``chainsync.forecasting``; hold-out accuracy, the coherent (reconciled) series and totals and the
confidence score."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from chainsync.parallel import SERIES_PER_PARTITION

LEVELS = (80, 95)
SEASON = 7  # weekly seasonality of retail demand
# A year plus the 28-day hold-out and a week: last year's holidays fall inside the history of both the
# forecast and the hold-out (holiday effects); longer history only costs time.
TRAIN_DAYS = 400
ACCURACY_HOLDOUT_DAYS = 28  # the hold-out behind forecast_accuracy and the confidence score

FORECAST_SCHEMA = pl.Schema(
    {
        "store_id": pl.String(),
        "product_id": pl.String(),
        "ds": pl.Date(),
        "horizon_day": pl.Int32(),
        "yhat": pl.Float64(),
        "lo_80": pl.Float64(),
        "hi_80": pl.Float64(),
        "lo_95": pl.Float64(),
        "hi_95": pl.Float64(),
        "model": pl.String(),
        "cutoff": pl.Date(),
        "pattern": pl.String(),
        "confidence": pl.Float64(),
    }
)

ACCURACY_SCHEMA = pl.Schema(
    {
        "level": pl.String(),  # series, store, category, chain
        "store_id": pl.String(),
        "product_id": pl.String(),
        "category": pl.String(),
        "n_series": pl.Int64(),
        "mase": pl.Float64(),
        "wape": pl.Float64(),
        "bias": pl.Float64(),  # sum(forecast - actual) / sum(actual): > 0 over-forecasts
        "coverage_80": pl.Float64(),
        "coverage_95": pl.Float64(),
        "holdout_days": pl.Int32(),
        "cutoff": pl.Date(),
        # Store and chain rows: the factor on the independent-days half-widths of a 7-day total's 80 % band
        # (weekly_band_factor), pooled over the stores' hold-out weeks.
        "weekly_band_factor": pl.Float64(),
    }
)

TOTALS_SCHEMA = pl.Schema(
    {
        "level": pl.String(),  # store, category, chain
        "key": pl.String(),  # store_id, category or 'chain'
        "ds": pl.Date(),
        "horizon_day": pl.Int32(),
        "yhat": pl.Float64(),
        "lo_80": pl.Float64(),
        "hi_80": pl.Float64(),
        "lo_95": pl.Float64(),
        "hi_95": pl.Float64(),
        "n_series": pl.Int64(),
    }
)


def empty_forecast() -> pl.DataFrame:
    return pl.DataFrame(schema=FORECAST_SCHEMA)


def empty_accuracy() -> pl.DataFrame:
    return pl.DataFrame(schema=ACCURACY_SCHEMA)


def empty_totals() -> pl.DataFrame:
    return pl.DataFrame(schema=TOTALS_SCHEMA)


def _panel(history: pl.DataFrame) -> pl.DataFrame:
    return history.select(
        unique_id=pl.concat_str("store_id", pl.lit("|"), "product_id"),
        ds="ds",
        y=pl.col("y").cast(pl.Float64),
    ).sort("unique_id", "ds")


def _unkey(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("unique_id")
        .str.split_exact("|", 1)
        .struct.rename_fields(["store_id", "product_id"])
        .alias("k")
    ).unnest("k")


def confidence_score(mase: pl.Expr, n_obs: pl.Expr, gap_share: pl.Expr, zero_share: pl.Expr) -> pl.Expr:
    """Confidence in [0, 1] of a series' forecast:

    ``1 / (1 + MASE)`` (hold-out MASE, else the cross-validation MASE, else 1 → 0.5)
    × ``(0.5 + 0.5 · min(1, history_days / 365))`` (a year of history gets full weight)
    × ``(1 − gap_share)`` (days the store sent no sales at all: offline or closed)
    × ``(1 − 0.5 · zero_share)`` (days without a sale of the product).
    """
    accuracy = 1.0 / (1.0 + mase.fill_null(1.0).fill_nan(1.0).clip(lower_bound=0.0))
    history = 0.5 + 0.5 * (n_obs.cast(pl.Float64) / 365.0).clip(upper_bound=1.0)
    return (accuracy * history * (1.0 - gap_share.fill_null(0.0)) * (1.0 - 0.5 * zero_share)).round(3)


def forecast_demand(
    history: pl.DataFrame,
    *,
    horizon: int,
    n_jobs: int = 1,
    accuracy: pl.DataFrame | None = None,
    holidays: str | None = "US",
    scheduler: str | None = None,
    series_per_partition: int = SERIES_PER_PARTITION,
) -> pl.DataFrame:
    """Forecast ``horizon`` days of units per day for every series in ``history``.

    ``history`` has store_id, product_id, ds (date, gap-free per series up to the cutoff), y (units, >= 0)
    and optionally store_gap (the store sent no sales that day). The method is
    ``chainsync.forecasting.forecast_panel`` (demand-pattern routing, model choice by rolling-origin
    cross-validation, conformal 80/95 % intervals, holiday effects of the ``holidays`` country's calendar).
    ``accuracy`` (series rows of ``forecast_accuracy``) feeds the confidence score. Returns
    ``FORECAST_SCHEMA``: units per day, clipped at 0 and ordered lo_95 <= lo_80 <= yhat <= hi_80 <= hi_95.

    The series are forecast in partitions of ``series_per_partition`` series (the method pools
    model choice and conformal errors within a partition), on the Dask cluster at ``scheduler`` or
    in-process when it is None: the same partitions, so the same rows, either way.
    """
    if history.is_empty():
        return empty_forecast()
    from chainsync.parallel import map_partitions, split_by_series

    cutoff: date = history["ds"].max()  # type: ignore[assignment]
    accuracy = accuracy.filter(pl.col("level") == "series") if accuracy is not None else None
    forecasts = map_partitions(
        _forecast_partition,
        split_by_series(history, ["store_id", "product_id"], series_per_partition),
        scheduler,
        horizon=horizon,
        n_jobs=n_jobs,
        accuracy=accuracy,
        holidays=holidays,
        cutoff=cutoff,
    )
    return pl.concat(forecasts).sort("store_id", "product_id", "ds")


def _forecast_partition(
    history: pl.DataFrame,
    *,
    horizon: int,
    n_jobs: int,
    accuracy: pl.DataFrame | None,
    holidays: str | None,
    cutoff: date,
) -> pl.DataFrame:
    """:func:`forecast_demand` of one partition of series (a Dask task: module level, plain arguments)."""
    from chainsync.forecasting import forecast_panel

    result = forecast_panel(
        _panel(history), horizon=horizon, freq="1d", season=SEASON, n_jobs=n_jobs, holidays=holidays
    )
    gaps = (
        history.group_by("store_id", "product_id").agg(gap_share=pl.col("store_gap").cast(pl.Float64).mean())
        if "store_gap" in history.columns
        else None
    )
    series = _unkey(result.series)
    if gaps is not None:
        series = series.join(gaps, on=["store_id", "product_id"], how="left")
    else:
        series = series.with_columns(gap_share=pl.lit(0.0))
    if accuracy is not None and accuracy.height:
        series = series.join(
            accuracy.filter(pl.col("level") == "series").select(
                "store_id", "product_id", holdout_mase="mase"
            ),
            on=["store_id", "product_id"],
            how="left",
        )
    else:
        series = series.with_columns(holdout_mase=pl.lit(None, pl.Float64))
    series = series.with_columns(
        confidence=confidence_score(
            pl.coalesce("holdout_mase", "cv_mase"), pl.col("n_obs"), pl.col("gap_share"), pl.col("zero_share")
        )
    )
    out = (
        _unkey(result.forecasts)
        .join(series.select("store_id", "product_id", "pattern", "confidence"), on=["store_id", "product_id"])
        .with_columns(
            ds=pl.col("ds").cast(pl.Date),
            horizon_day=pl.col("step").cast(pl.Int32),
            cutoff=pl.lit(cutoff),
        )
    )
    return out.select(list(FORECAST_SCHEMA)).cast(FORECAST_SCHEMA).sort("store_id", "product_id", "ds")


def forecast_accuracy(
    history: pl.DataFrame,
    categories: pl.DataFrame | None = None,
    *,
    holdout: int = ACCURACY_HOLDOUT_DAYS,
    holidays: str | None = "US",
    scheduler: str | None = None,
    series_per_partition: int = SERIES_PER_PARTITION,
) -> pl.DataFrame:
    """Hold-out accuracy of the method: forecast the last ``holdout`` days from the history before them and
    score per series, store, category and chain. MASE is scaled by each series' in-sample seasonal-naive
    (7-day) error and averaged over series; WAPE and bias are pooled (sum |error| / sum actual,
    sum(error) / sum actual); coverage is the share of actual days inside the 80 / 95 % intervals.
    Store and chain rows also carry ``weekly_band_factor`` (:func:`weekly_band_factor` over the stores'
    :func:`store_weeks` of the hold-out), which the API puts on a 7-day total's 80 % band.
    ``categories``: product_id, category. The series are scored in the partitions of
    :func:`forecast_demand`, on the Dask cluster at ``scheduler`` or in-process."""
    if history.is_empty():
        return empty_accuracy()
    from chainsync.parallel import map_partitions, split_by_series

    cutoff: date = history["ds"].max()  # type: ignore[assignment]
    scored_parts = map_partitions(
        _score_partition,
        split_by_series(history, ["store_id", "product_id"], series_per_partition),
        scheduler,
        split=cutoff - timedelta(days=holdout),
        holdout=holdout,
        holidays=holidays,
    )
    return accuracy_from_scores(
        pl.concat(scored_parts), categories, history, cutoff=cutoff, holdout=holdout, holidays=holidays
    )


def accuracy_from_scores(
    per_series: pl.DataFrame,
    categories: pl.DataFrame | None,
    store_daily: pl.DataFrame,
    *,
    cutoff: date,
    holdout: int = ACCURACY_HOLDOUT_DAYS,
    holidays: str | None = "US",
) -> pl.DataFrame:
    """``ACCURACY_SCHEMA`` from the partitions' per-series hold-out scores (:func:`_score_partition`) and
    ``store_daily`` (store_id, ds, y: the history, or its store x day totals — the same store totals), the
    input of the weekly band factor."""
    if per_series.is_empty():
        return empty_accuracy()
    if categories is not None and categories.height:
        per_series = per_series.join(categories.select("product_id", "category"), on="product_id", how="left")
    else:
        per_series = per_series.with_columns(category=pl.lit(None, pl.String))

    def summarise(keys: list[str], level: str) -> pl.DataFrame:
        agg = [
            pl.len().cast(pl.Int64).alias("n_series"),
            pl.col("mase").mean().alias("mase"),
            (pl.col("abs_err").sum() / pl.col("actual").sum()).alias("wape"),
            (pl.col("err").sum() / pl.col("actual").sum()).alias("bias"),
            (pl.col("in80").sum() / pl.col("days").sum()).alias("coverage_80"),
            (pl.col("in95").sum() / pl.col("days").sum()).alias("coverage_95"),
        ]
        frame = per_series.group_by(keys).agg(agg) if keys else per_series.select(agg)
        return frame.with_columns(level=pl.lit(level))

    parts = [
        summarise(["store_id", "product_id", "category"], "series"),
        summarise(["store_id"], "store"),
        summarise(["category"], "category"),
        summarise([], "chain"),
    ]
    factor = weekly_band_factor(store_weeks(store_daily, origins=holdout // WEEK, holidays=holidays))
    out = pl.concat(parts, how="diagonal_relaxed").with_columns(
        holdout_days=pl.lit(holdout, pl.Int32),
        cutoff=pl.lit(cutoff),
        weekly_band_factor=pl.when(pl.col("level").is_in(["store", "chain"]))
        .then(pl.lit(factor, pl.Float64))
        .otherwise(None),
    )
    out = out.with_columns(pl.col("wape", "bias").fill_nan(None))
    for name in ACCURACY_SCHEMA:
        if name not in out.columns:
            out = out.with_columns(pl.lit(None).alias(name))
    return out.select(list(ACCURACY_SCHEMA)).cast(ACCURACY_SCHEMA).sort("level", "store_id", "product_id")


_PER_SERIES_SCHEMA = pl.Schema(
    {
        "store_id": pl.String(),
        "product_id": pl.String(),
        "mase": pl.Float64(),
        "abs_err": pl.Float64(),
        "err": pl.Float64(),
        "actual": pl.Float64(),
        "in80": pl.Float64(),
        "in95": pl.Float64(),
        "days": pl.UInt32(),
    }
)


def _score_partition(
    history: pl.DataFrame, *, split: date, holdout: int, holidays: str | None
) -> pl.DataFrame:
    """One partition's hold-out scores per series (a Dask task): forecast the days after ``split`` from
    those up to it and sum the errors (units), absolute errors, actuals and days inside the 80/95 % bands;
    MASE scaled by the series' in-sample seasonal-naive error. Series with under two seasons of training
    days are left out."""
    from chainsync.forecasting import forecast_panel, scale_for

    train = history.filter(pl.col("ds") <= split)
    test = history.filter(pl.col("ds") > split)
    lengths = train.group_by("store_id", "product_id").len()
    train = train.join(lengths.filter(pl.col("len") >= 2 * SEASON), on=["store_id", "product_id"], how="semi")
    if train.is_empty():
        return pl.DataFrame(schema=_PER_SERIES_SCHEMA)
    panel = _panel(train)
    result = forecast_panel(panel, horizon=holdout, freq="1d", season=SEASON, holidays=holidays)
    scales = (
        panel.group_by("unique_id")
        .agg(pl.col("y"))
        .select(
            "unique_id",
            scale=pl.col("y").map_elements(
                lambda v: scale_for(np.asarray(v), SEASON), return_dtype=pl.Float64
            ),
        )
    )
    scored = (
        _unkey(result.forecasts.join(scales, on="unique_id"))
        .with_columns(pl.col("ds").cast(pl.Date))
        .join(test.select("store_id", "product_id", "ds", "y"), on=["store_id", "product_id", "ds"])
        .with_columns(
            err=pl.col("yhat") - pl.col("y"),
            in80=((pl.col("y") >= pl.col("lo_80")) & (pl.col("y") <= pl.col("hi_80"))).cast(pl.Float64),
            in95=((pl.col("y") >= pl.col("lo_95")) & (pl.col("y") <= pl.col("hi_95"))).cast(pl.Float64),
        )
    )
    per_series = scored.group_by("store_id", "product_id").agg(
        mase=pl.col("err").abs().mean() / pl.col("scale").first(),
        abs_err=pl.col("err").abs().sum(),
        err=pl.col("err").sum(),
        actual=pl.col("y").sum(),
        in80=pl.col("in80").sum(),
        in95=pl.col("in95").sum(),
        days=pl.len(),
    )
    return per_series.select(list(_PER_SERIES_SCHEMA)).cast(_PER_SERIES_SCHEMA)


WEEK = 7
WEEKLY_LEVEL = 0.80


def store_weeks(history: pl.DataFrame, *, origins: int, holidays: str | None = "US") -> pl.DataFrame:
    """Out-of-sample 7-day totals per store from ``origins`` weekly origins before the last day of
    ``history`` (store_id, product_id, ds, y): each store's daily total units forecast 7 days ahead by the
    pipeline's method from the history up to the origin (as a store total of ``demand_forecast_totals`` gets
    its own conformal bounds). One row per store x origin with a full week: store_id, origin, actual and
    yhat (the 7-day sums, units) and the daily 80 % half-widths per side summed (lo_sum, hi_sum) and as a
    root sum of squares (lo_rss, hi_rss)."""
    from chainsync.forecasting import forecast_panel

    columns: dict[str, pl.DataType] = {
        "store_id": pl.String(),
        "origin": pl.Date(),
        "actual": pl.Float64(),
        "yhat": pl.Float64(),
    }
    columns |= {name: pl.Float64() for name in ("lo_sum", "hi_sum", "lo_rss", "hi_rss")}
    if history.is_empty() or origins < 1:
        return pl.DataFrame(schema=columns)
    daily = history.group_by("store_id", "ds").agg(y=pl.col("y").sum().cast(pl.Float64))
    last: date = daily["ds"].max()  # type: ignore[assignment]
    parts = []
    for k in range(origins, 0, -1):
        origin = last - timedelta(days=WEEK * k)
        train = daily.filter(pl.col("ds") <= origin)
        train = train.join(
            train.group_by("store_id").len().filter(pl.col("len") >= 2 * SEASON), on="store_id"
        )
        if train.is_empty():
            continue
        test = daily.filter(
            pl.col("ds").is_between(origin + timedelta(days=1), origin + timedelta(days=WEEK))
        )
        forecast = forecast_panel(
            train.select(unique_id="store_id", ds="ds", y="y").sort("unique_id", "ds"),
            horizon=WEEK,
            freq="1d",
            season=SEASON,
            holidays=holidays,
        ).forecasts.select(
            store_id="unique_id", ds=pl.col("ds").cast(pl.Date), yhat="yhat", lo="lo_80", hi="hi_80"
        )
        dlo, dhi = pl.col("yhat") - pl.col("lo"), pl.col("hi") - pl.col("yhat")
        parts.append(
            forecast.join(test, on=["store_id", "ds"])
            .group_by("store_id")
            .agg(
                actual=pl.col("y").sum(),
                yhat=pl.col("yhat").sum(),
                lo_sum=dlo.sum(),
                hi_sum=dhi.sum(),
                lo_rss=(dlo**2).sum().sqrt(),
                hi_rss=(dhi**2).sum().sqrt(),
                days=pl.len(),
            )
            .filter(pl.col("days") == WEEK)
            .with_columns(origin=pl.lit(origin))
        )
    if not parts:
        return pl.DataFrame(schema=columns)
    return pl.concat(parts).select(list(columns)).cast(pl.Schema(columns)).sort("origin", "store_id")


def weekly_band_factor(weeks: pl.DataFrame, level: float = WEEKLY_LEVEL) -> float | None:
    """The factor ``f`` on the independent-days half-widths (``sqrt(Σ hw_d²)`` per side) that puts a
    ``level`` share of ``weeks``' (:func:`store_weeks`) actual 7-day totals inside ``yhat ± f·rss``:
    split-conformal, the ``ceil((n + 1)·level)``-th smallest |error| / half-width on the error's side.
    Daily errors of one store's week are correlated (a slow week is slow most days), so ``f`` is above 1;
    None without weeks."""
    if weeks.is_empty():
        return None
    err = weeks["actual"] - weeks["yhat"]
    side = pl.select(pl.when(err >= 0).then(weeks["hi_rss"]).otherwise(weeks["lo_rss"])).to_series()
    ratio = (err.abs() / side.clip(lower_bound=1e-9)).sort()
    n = ratio.len()
    rank = min(n, int(np.ceil((n + 1) * level)))
    return round(float(ratio[rank - 1]), 3)


RECONCILIATION_METHODS = ("bottom_up", "ols", "wls_struct")
HIERARCHY = [["chain"], ["chain", "store"], ["chain", "category"], ["chain", "store", "category", "product"]]


def _with_category(frame: pl.DataFrame, categories: pl.DataFrame | None) -> pl.DataFrame:
    if categories is not None and categories.height:
        frame = frame.join(categories.select("product_id", "category"), on="product_id", how="left")
    else:
        frame = frame.with_columns(category=pl.lit(None, pl.String))
    return frame.with_columns(pl.col("category").fill_null("unknown"))


@dataclass(frozen=True)
class ReconciledForecast:
    """What the pipeline publishes: ``series`` (``FORECAST_SCHEMA``, one row per store x product x day) and
    ``totals`` (``TOTALS_SCHEMA``, store / category / chain), each total the sum of the published series'
    ``yhat`` on every day."""

    series: pl.DataFrame
    totals: pl.DataFrame


def reconcile_forecast(
    forecast: pl.DataFrame,
    categories: pl.DataFrame | None = None,
    *,
    history: pl.DataFrame | None = None,
    method: str = "bottom_up",
    holidays: str | None = "US",
) -> ReconciledForecast:
    """The coherent hierarchy of ``forecast`` (units per day): series and store, category and chain totals
    where every total is exactly the sum of the published series (stores' and categories' totals both add
    up to the chain's).

    ``method="bottom_up"``: the series stay ``forecast``; totals are their sums, bounds assuming independent
    series errors, ``total ± sqrt(Σ half-width²)`` with each series' lower and upper half-widths.
    ``method="ols"`` or ``"wls_struct"`` (needs ``history``, the frame ``forecast`` was made from, else
    bottom-up): hierarchicalforecast's MinTrace reconciliation of base forecasts at every level — the series'
    from ``forecast`` and the totals' own, made by the same method from the aggregated history. Each series'
    ``yhat`` becomes its reconciled value and its 80/95 % bounds move by the same amount (a lower bound at 0,
    clipped there in the base forecast, stays at 0); negative values clip at 0, then each total's ``yhat`` is
    the sum of its clipped series and its bounds are its base forecast's conformal half-widths around that
    sum. Bounds are ordered lo_95 <= lo_80 <= yhat <= hi_80 <= hi_95 and nothing is below 0; model, pattern
    and confidence are kept."""
    if method not in RECONCILIATION_METHODS:
        choices = ", ".join(RECONCILIATION_METHODS)
        raise ValueError(f"unknown reconciliation {method!r}; choose from {choices}")
    if forecast.is_empty():
        return ReconciledForecast(forecast, empty_totals())
    if method != "bottom_up" and history is not None and not history.is_empty():
        series, offsets = _reconciled(forecast, categories, history, method, holidays)
        return ReconciledForecast(series, _totals(series, categories, offsets))
    return ReconciledForecast(forecast, _totals(forecast, categories, None))


def forecast_totals(
    forecast: pl.DataFrame,
    categories: pl.DataFrame | None = None,
    *,
    history: pl.DataFrame | None = None,
    method: str = "bottom_up",
    holidays: str | None = "US",
) -> pl.DataFrame:
    """The ``totals`` of :func:`reconcile_forecast` (store, category and chain totals of ``forecast``,
    coherent; with MinTrace, the sums of the reconciled series rather than of ``forecast``)."""
    return reconcile_forecast(forecast, categories, history=history, method=method, holidays=holidays).totals


def _ordered(frame: pl.DataFrame) -> pl.DataFrame:
    """``yhat`` clipped at 0 and the bounds ordered lo_95 <= lo_80 <= yhat <= hi_80 <= hi_95, none below 0."""
    return (
        frame.with_columns(pl.col("yhat").clip(lower_bound=0.0))
        .with_columns(
            lo_80=pl.min_horizontal("lo_80", "yhat").clip(lower_bound=0.0),
            hi_80=pl.max_horizontal("hi_80", "yhat"),
        )
        .with_columns(
            lo_95=pl.min_horizontal("lo_95", "lo_80").clip(lower_bound=0.0),
            hi_95=pl.max_horizontal("hi_95", "hi_80"),
        )
    )


def _totals(
    series: pl.DataFrame, categories: pl.DataFrame | None, offsets: pl.DataFrame | None
) -> pl.DataFrame:
    """Store, category and chain sums of ``series``. Bounds: ``offsets`` (level, key, ds, off_lo_80 ...: each
    total's base-forecast bound minus its base point) around the sum when given, else the bottom-up
    independent-errors half-widths."""
    frame = _with_category(series, categories).with_columns(chain=pl.lit("chain"))
    agg = [
        pl.col("yhat").sum(),
        *[((pl.col("yhat") - pl.col(f"lo_{lvl}")) ** 2).sum().sqrt().alias(f"dlo_{lvl}") for lvl in LEVELS],
        *[((pl.col(f"hi_{lvl}") - pl.col("yhat")) ** 2).sum().sqrt().alias(f"dhi_{lvl}") for lvl in LEVELS],
        pl.len().cast(pl.Int64).alias("n_series"),
    ]
    parts = []
    for level, column in (("store", "store_id"), ("category", "category"), ("chain", "chain")):
        parts.append(
            frame.group_by(column, "ds", "horizon_day")
            .agg(agg)
            .rename({column: "key"})
            .with_columns(level=pl.lit(level))
        )
    return totals_from_sums(pl.concat(parts), offsets)


def totals_from_sums(sums: pl.DataFrame, offsets: pl.DataFrame | None) -> pl.DataFrame:
    """``TOTALS_SCHEMA`` from each total's sums over its series (level, key, ds, horizon_day, yhat, dlo_80,
    dhi_80, dlo_95, dhi_95 — the root sums of squared half-widths — and n_series) and ``offsets`` (see
    :func:`_totals`)."""
    out = sums
    if offsets is None:
        out = out.with_columns(
            *[(pl.col("yhat") - pl.col(f"dlo_{lvl}")).alias(f"lo_{lvl}") for lvl in LEVELS],
            *[(pl.col("yhat") + pl.col(f"dhi_{lvl}")).alias(f"hi_{lvl}") for lvl in LEVELS],
        )
    else:
        out = out.join(offsets, on=["level", "key", "ds"], how="left").with_columns(
            # A total without a base forecast of its own (none here) keeps the bottom-up half-widths.
            *[
                (pl.col("yhat") + pl.coalesce(f"off_lo_{lvl}", -pl.col(f"dlo_{lvl}"))).alias(f"lo_{lvl}")
                for lvl in LEVELS
            ],
            *[
                (pl.col("yhat") + pl.coalesce(f"off_hi_{lvl}", pl.col(f"dhi_{lvl}"))).alias(f"hi_{lvl}")
                for lvl in LEVELS
            ],
        )
    return _ordered(out).select(list(TOTALS_SCHEMA)).cast(TOTALS_SCHEMA).sort("level", "key", "ds")


def _reconciled(
    forecast: pl.DataFrame,
    categories: pl.DataFrame | None,
    history: pl.DataFrame,
    method: str,
    holidays: str | None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """MinTrace-reconciled series (``FORECAST_SCHEMA``, clipped and ordered) and the totals' bound offsets
    from their own base forecasts (level, key, ds, off_lo_80, off_hi_80, off_lo_95, off_hi_95)."""
    keyed_forecast = _with_category(forecast, categories).with_columns(unique_id=_bottom_id())
    keys = keyed_forecast.select("store_id", "product_id", "category").unique()
    daily = (
        _with_category(history.join(keys, on=["store_id", "product_id"], how="semi"), categories)
        .group_by("store_id", "category", "ds")
        .agg(pl.col("y").sum())
    )
    hierarchy = Hierarchy.of(keys)
    horizon = int(forecast["horizon_day"].max())  # type: ignore[arg-type]
    base_totals = hierarchy.base_totals(daily, horizon=horizon, holidays=holidays)
    rows = hierarchy.bottom_rows().join(
        keyed_forecast.select("unique_id", "horizon_day", "yhat"), on="unique_id"
    )
    bottom = np.full((hierarchy.n_bottom, horizon), np.nan)
    bottom[rows["row"].to_numpy(), rows["horizon_day"].to_numpy() - 1] = rows["yhat"].to_numpy()
    reconciled = hierarchy.reconcile(base_totals, bottom, method)
    shifted = keyed_forecast.join(
        hierarchy.bottom_frame(reconciled), on=["unique_id", "horizon_day"], how="left"
    )
    # A series missing from the hierarchy (no history: none in the pipeline) keeps its base forecast.
    series = (
        shifted.with_columns(shift=pl.col("rec").fill_null(pl.col("yhat")) - pl.col("yhat"))
        .with_columns(
            pl.col("yhat", "hi_80", "hi_95") + pl.col("shift"),
            # A lower bound at 0 was clipped there (the interval reaches below 0 units): it stays at 0 however
            # the point moves, else a small upward shift would exclude every day without a sale.
            *[
                pl.when(pl.col(b) > 0).then(pl.col(b) + pl.col("shift")).otherwise(0.0).alias(b)
                for b in ("lo_80", "lo_95")
            ],
        )
        .pipe(_ordered)
        .select(list(FORECAST_SCHEMA))
        .cast(FORECAST_SCHEMA)
        .sort("store_id", "product_id", "ds")
    )
    return series, hierarchy.offsets(base_totals)


def _bottom_id() -> pl.Expr:
    """A series' id in the hierarchy (as hierarchicalforecast's ``aggregate`` names it)."""
    return pl.concat_str(pl.lit("chain"), "store_id", "category", "product_id", separator="/")


_BOUNDS = [f"{b}_{lvl}" for lvl in LEVELS for b in ("lo", "hi")]


@dataclass(frozen=True)
class Hierarchy:
    """The chain / store / category / series hierarchy of a set of series (``HIERARCHY``), as
    hierarchicalforecast builds it, without the history: its summing matrix and tags depend only on which
    series there are. The MinTrace reconciliation works on plain arrays here (the series' base forecasts
    as one series x horizon matrix), so a caller can assemble them from wherever they are kept."""

    summing: object  # hierarchicalforecast.utils.SMatrix
    tags: dict[str, np.ndarray]

    @classmethod
    def of(cls, keys: pl.DataFrame) -> Hierarchy:
        """``keys``: store_id, product_id, category (filled), one row per series."""
        from hierarchicalforecast.utils import aggregate  # ~5 s to import (scikit-learn): only here

        frame = keys.select(
            chain=pl.lit("chain"),
            store="store_id",
            category="category",
            product="product_id",
            ds=pl.lit(date(2000, 1, 1)).cast(pl.Datetime("us")),
            y=pl.lit(0.0),
        )
        _, summing, tags = aggregate(frame, HIERARCHY, sparse_s=True)
        return cls(summing, tags)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.summing.row_labels)  # type: ignore[attr-defined]

    @property
    def n_bottom(self) -> int:
        return int(self.summing.sparse_shape[1])  # type: ignore[attr-defined]

    def bottom_rows(self) -> pl.DataFrame:
        """unique_id and row (0-based) of each series in the bottom block of the matrices."""
        ids = self.labels[len(self.labels) - self.n_bottom :]
        return pl.DataFrame({"unique_id": ids.tolist(), "row": np.arange(len(ids))})

    def bottom_frame(self, reconciled: np.ndarray) -> pl.DataFrame:
        """unique_id, horizon_day, rec of the reconciled series (a series x horizon matrix)."""
        n, horizon = reconciled.shape
        ids = self.bottom_rows()["unique_id"]
        return pl.DataFrame(
            {
                "unique_id": ids.gather(np.repeat(np.arange(n), horizon)),
                "horizon_day": np.tile(np.arange(1, horizon + 1, dtype=np.int32), n),
                "rec": reconciled.reshape(-1),
            }
        )

    def base_totals(self, daily: pl.DataFrame, *, horizon: int, holidays: str | None) -> pl.DataFrame:
        """Each total's own base forecast (unique_id, ds, yhat and bounds) by the pipeline's method, from
        ``daily`` (store_id, category, ds, y: the series' units summed per store x category x day)."""
        from chainsync.forecasting import forecast_panel

        daily = daily.with_columns(pl.col("y").cast(pl.Float64), pl.col("ds").cast(pl.Datetime("us")))
        totals_history = pl.concat(
            [
                daily.group_by("ds").agg(pl.col("y").sum()).select(unique_id=pl.lit("chain"), ds="ds", y="y"),
                *[
                    daily.group_by(column, "ds")
                    .agg(pl.col("y").sum())
                    .select(unique_id=pl.concat_str(pl.lit("chain/"), column), ds="ds", y="y")
                    for column in ("store_id", "category")
                ],
            ]
        ).sort("unique_id", "ds")
        return forecast_panel(
            totals_history, horizon=horizon, freq="1d", season=SEASON, holidays=holidays
        ).forecasts.select("unique_id", "ds", "yhat", *_BOUNDS)

    def reconcile(self, base_totals: pl.DataFrame, bottom: np.ndarray, method: str) -> np.ndarray:
        """The MinTrace (``method``: ols or wls_struct) reconciliation of every node's base forecast — the
        totals' from ``base_totals``, the series' from ``bottom`` (rows as :meth:`bottom_rows`, columns
        the horizon days) — returned for the series (the same shape as ``bottom``)."""
        from hierarchicalforecast.methods import MinTraceSparse

        labels = self.labels
        n_totals = len(labels) - self.n_bottom
        wide = (
            base_totals.sort("unique_id", "ds").group_by("unique_id", maintain_order=True).agg(pl.col("yhat"))
        )
        order = {uid: i for i, uid in enumerate(wide["unique_id"].to_list())}
        values = wide["yhat"].to_list()
        top = np.array([values[order[uid]] for uid in labels[:n_totals]], dtype=np.float64)
        y_hat = np.vstack([top.reshape(n_totals, bottom.shape[1]), bottom])
        tags = {level: np.flatnonzero(np.isin(labels, ids)) for level, ids in self.tags.items()}
        result = MinTraceSparse(method=method)(
            S=self.summing.to_csr(),  # type: ignore[attr-defined]
            y_hat=y_hat,
            tags=tags,
            level=None,
        )
        return np.asarray(result["mean"])[n_totals:]

    def offsets(self, base_totals: pl.DataFrame) -> pl.DataFrame:
        """level, key, ds and each bound of the totals' base forecasts minus their base point."""
        level_names = {"chain": "chain", "chain/store": "store", "chain/category": "category"}
        nodes = pl.DataFrame(
            [
                (uid, level_names[level], uid.removeprefix("chain/") if level != "chain" else "chain")
                for level, ids in self.tags.items()
                if level in level_names
                for uid in ids
            ],
            schema={"unique_id": pl.String(), "level": pl.String(), "key": pl.String()},
            orient="row",
        )
        return base_totals.join(nodes, on="unique_id").select(
            "level",
            "key",
            ds=pl.col("ds").cast(pl.Date),
            **{f"off_{b}": pl.col(b) - pl.col("yhat") for b in _BOUNDS},
        )


def history_sql(train_days: int = TRAIN_DAYS, *, ordered: bool = True) -> str:
    """Daily units per store x product from the marts, gap-free (missing days are 0) from each series' first
    sale (or ``train_days`` before the cutoff) to the chain-wide cutoff (the last day with sales); ordered by
    store_id, product_id, ds unless ``ordered`` is False."""
    return f"""
        with daily as (
            select store_id, product_id, sale_date, units_sold from marts.fct_sales_daily
        ),
        cutoff as (select max(sale_date) as cutoff from daily),
        series as (
            select store_id, product_id,
                   greatest(min(sale_date), (select cutoff from cutoff) - {train_days - 1}) as first_day
            from daily group by all
        ),
        grid as (
            select store_id, product_id,
                   cast(unnest(generate_series(first_day, (select cutoff from cutoff), interval 1 day))
                        as date) as ds
            from series
        ),
        store_days as (select distinct store_id, sale_date from daily)
        select grid.store_id, grid.product_id, grid.ds, greatest(coalesce(daily.units_sold, 0), 0) as y,
               store_days.store_id is null as store_gap
        from grid
        left join daily
          on daily.store_id = grid.store_id
         and daily.product_id = grid.product_id
         and daily.sale_date = grid.ds
        left join store_days
          on store_days.store_id = grid.store_id
         and store_days.sale_date = grid.ds
        {"order by 1, 2, 3" if ordered else ""}
    """


def horizon_dates(cutoff: date, horizon: int) -> list[date]:
    return [cutoff + timedelta(days=d) for d in range(1, horizon + 1)]

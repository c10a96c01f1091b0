"""Daily demand forecasts per store x product with statsforecast (polars in, polars out)."""

from __future__ import annotations

import os
from datetime import date, timedelta

import polars as pl

LEVELS = (80, 95)
SEASON = 7  # weekly seasonality of retail demand
# Theta's cost grows with history length; a year holds every weekly pattern and the recent level.
TRAIN_DAYS = 364
# Croston for series with at least this share of zero days (average interval between sales >= 2 days).
INTERMITTENT_ZERO_SHARE = 0.5
CONFORMAL_WINDOWS = 2  # cross-validation windows behind Croston's conformal intervals

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
    }
)


def empty_forecast() -> pl.DataFrame:
    return pl.DataFrame(schema=FORECAST_SCHEMA)


def forecast_demand(history: pl.DataFrame, *, horizon: int, n_jobs: int = -1) -> pl.DataFrame:
    """Forecast ``horizon`` days of units per day for every series in ``history``.

    ``history`` has store_id, product_id, ds (date, gap-free per series up to the cutoff) and y (units, >= 0).
    Models: intermittent series (at least half the days without a sale, and history for the conformal
    windows) get CrostonOptimized with conformal intervals; the others OptimizedTheta with weekly
    seasonality (AutoTheta's model search costs twice as much for little gain on daily retail series).
    SeasonalNaive(7) stands in where a model cannot fit. Returns the columns of ``FORECAST_SCHEMA``: yhat
    and 80/95 % intervals in units per day, clipped at 0 and ordered lo_95 <= lo_80 <= yhat <= hi_80 <= hi_95.
    """
    if history.is_empty():
        return empty_forecast()
    os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")  # reuse numba's compiled code across processes
    os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
    from statsforecast.models import CrostonOptimized, OptimizedTheta
    from statsforecast.utils import ConformalIntervals

    cutoff: date = history["ds"].max()  # type: ignore[assignment]
    frame = (
        history.with_columns(unique_id=pl.concat_str("store_id", pl.lit("|"), "product_id"))
        .select("unique_id", pl.col("ds").cast(pl.Datetime("us")), pl.col("y").cast(pl.Float64))
        .sort("unique_id", "ds")
    )
    shape = frame.group_by("unique_id").agg(zero_share=(pl.col("y") == 0).mean(), days=pl.len())
    intermittent = shape.filter(
        (pl.col("zero_share") >= INTERMITTENT_ZERO_SHARE)
        & (pl.col("days") > CONFORMAL_WINDOWS * horizon + SEASON)
    )["unique_id"].implode()
    parts = [
        _forecast_with(
            frame.filter(~pl.col("unique_id").is_in(intermittent)),
            OptimizedTheta(season_length=SEASON, alias="OptimizedTheta"),
            horizon,
            n_jobs,
        ),
        _forecast_with(
            frame.filter(pl.col("unique_id").is_in(intermittent)),
            CrostonOptimized(
                alias="CrostonOptimized",
                prediction_intervals=ConformalIntervals(h=horizon, n_windows=CONFORMAL_WINDOWS),
            ),
            horizon,
            n_jobs,
        ),
    ]
    out = (
        pl.concat([p for p in parts if p is not None])
        .with_columns(
            pl.col("unique_id")
            .str.split_exact("|", 1)
            .struct.rename_fields(["store_id", "product_id"])
            .alias("key")
        )
        .unnest("key")
        .with_columns(
            ds=pl.col("ds").cast(pl.Date),
            horizon_day=((pl.col("ds").cast(pl.Date) - pl.lit(cutoff)).dt.total_days()).cast(pl.Int32),
            lo_80=pl.min_horizontal("lo_80", "yhat"),
            hi_80=pl.max_horizontal("hi_80", "yhat"),
            cutoff=pl.lit(cutoff),
        )
        .with_columns(lo_95=pl.min_horizontal("lo_95", "lo_80"), hi_95=pl.max_horizontal("hi_95", "hi_80"))
    )
    return out.select(list(FORECAST_SCHEMA)).cast(FORECAST_SCHEMA).sort("store_id", "product_id", "ds")


def _forecast_with(frame: pl.DataFrame, model: object, horizon: int, n_jobs: int) -> pl.DataFrame | None:
    """One model over ``frame``'s series: unique_id, ds, yhat, lo/hi_80, lo/hi_95 (clipped at 0), model.

    Series where the model cannot fit get SeasonalNaive(7) values under the same name (statsforecast does
    not say which series fell back)."""
    if frame.is_empty():
        return None
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    name = model.alias  # type: ignore[attr-defined]
    sf = StatsForecast(
        models=[model],
        freq="1d",
        n_jobs=n_jobs,
        fallback_model=SeasonalNaive(season_length=SEASON, alias=name),
    )
    raw = sf.forecast(df=frame, h=horizon, level=list(LEVELS))
    columns = {"yhat": name, **{f"{b}_{lvl}": f"{name}-{b}-{lvl}" for lvl in LEVELS for b in ("lo", "hi")}}
    return raw.select(
        "unique_id",
        "ds",
        *[pl.col(source).clip(lower_bound=0.0).alias(target) for target, source in columns.items()],
        model=pl.lit(name),
    )


def history_sql(train_days: int = TRAIN_DAYS) -> str:
    """Daily units per store x product from the marts, gap-free (missing days are 0) from each series' first
    sale (or ``train_days`` before the cutoff) to the chain-wide cutoff (the last day with sales)."""
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
        )
        select grid.store_id, grid.product_id, grid.ds, greatest(coalesce(daily.units_sold, 0), 0) as y
        from grid
        left join daily
          on daily.store_id = grid.store_id
         and daily.product_id = grid.product_id
         and daily.sale_date = grid.ds
        order by 1, 2, 3
    """


def horizon_dates(cutoff: date, horizon: int) -> list[date]:
    return [cutoff + timedelta(days=d) for d in range(1, horizon + 1)]

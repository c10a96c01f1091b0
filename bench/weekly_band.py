"""Weekly 80 % band of a store's forecast: how often the next 7 days' total units fall inside it.

    uv run python bench/weekly_band.py --warehouse data/warehouse.duckdb            # 12 weekly origins
    uv run python bench/weekly_band.py --warehouse /tmp/qa/warehouse.duckdb --origins 20

From ``marts.fct_sales_daily`` (read-only), each store's daily total units (the pipeline's ``history_sql``,
summed over products) are forecast 7 days ahead by the pipeline's method (``chainsync.forecasting
.forecast_panel``, conformal 80 % bounds per day, as the store totals of ``demand_forecast_totals`` get them)
from ``--origins`` weekly origins before the last day, each from the history up to its origin. For every
store-week it compares the actual 7-day total with two bands around the 7-day sum of ``yhat``:

- **summed**: the daily bounds added up (what ``/api/ai/dashboard`` served before);
- **independent**: half-widths ``sqrt(Σ hw_d²)`` per side (``api.queries.snapshots.weekly_band``).

It prints each band's coverage (share of store-weeks inside, target 80 %), its mean width relative to the
week's forecast, and the factor the independent half-widths would need for exactly 80 % pooled coverage
(the 80 % quantile of |weekly error| / half-width on the error's side).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.defs.forecasting.demand import (  # noqa: E402
    ACCURACY_HOLDOUT_DAYS,
    WEEK,
    history_sql,
    store_weeks,
    weekly_band_factor,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--warehouse", type=Path, default=Path("data/warehouse.duckdb"))
    parser.add_argument("--origins", type=int, default=12, help="weekly origins evaluated")
    parser.add_argument("--holidays", default="US", help="holiday country, or 'none'")
    args = parser.parse_args()
    with duckdb.connect(str(args.warehouse), read_only=True) as con:
        history = con.sql(history_sql()).pl()
    calibration = ACCURACY_HOLDOUT_DAYS // WEEK  # the weeks forecast_accuracy measures the factor on
    holidays = None if args.holidays == "none" else args.holidays
    weeks = store_weeks(history, origins=args.origins + calibration, holidays=holidays)
    origins = sorted(weeks["origin"].unique().to_list())
    evaluated = []
    for i in range(calibration, len(origins)):
        # As the pipeline would have: the factor from the 4 weeks before the origin, none of this week.
        factor = weekly_band_factor(weeks.filter(pl.col("origin").is_in(origins[i - calibration : i])))
        evaluated.append(weeks.filter(pl.col("origin") == origins[i]).with_columns(factor=pl.lit(factor)))
    ev = pl.concat(evaluated).with_columns(
        err=pl.col("actual") - pl.col("yhat"),
        lo_fac=pl.col("factor") * pl.col("lo_rss"),
        hi_fac=pl.col("factor") * pl.col("hi_rss"),
    )
    print(f"{ev.height} store-weeks ({ev['store_id'].n_unique()} stores x {args.origins} weekly origins)")
    print("band                      coverage_80  mean width / 7-day forecast")
    bands = {
        "summed daily bounds": ("lo_sum", "hi_sum"),
        "independent (sqrt)": ("lo_rss", "hi_rss"),
        "factor x independent": ("lo_fac", "hi_fac"),
    }
    coverage = {}
    for name, (lo, hi) in bands.items():
        inside = pl.col("err").is_between(-pl.col(lo), pl.col(hi))
        coverage[name] = inside.mean().alias(name)
        row = ev.select(inside.mean(), ((pl.col(lo) + pl.col(hi)) / pl.col("yhat")).mean()).row(0)
        print(f"{name:<25} {row[0]:>10.1%}  {row[1]:>10.3f}")
    factors = ev.group_by("origin").agg(pl.col("factor").first()).sort("origin")["factor"]
    print(f"factor per origin: {factors.to_list()}")
    print(ev.group_by("store_id").agg(**{k: v for k, v in coverage.items()}).sort("store_id"))


if __name__ == "__main__":
    main()

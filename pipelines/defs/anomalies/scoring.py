"""Store-day sales anomalies: robust per-store z-scores of daily features, scored by pyod's ECOD."""

from __future__ import annotations

import polars as pl

FEATURES = (
    "net_revenue_cents",
    "transactions",
    "avg_basket_cents",
    "refund_rate",
    "void_rate",
    "discount_rate",
)
DRIVER_Z = 3.0  # a feature drives an anomaly when its robust z-score exceeds this
MAX_DRIVERS = 3
# A store-day is an anomaly when ECOD's score passes the quantile threshold *and* some feature lies this many
# scaled MADs from its store-and-weekday norm (robust: the share flagged follows the data, not a guess).
ANOMALY_Z = 6.0
# Added to every scaled MAD: a rate that is usually exactly 0 (voids) would otherwise turn one void into an
# infinite z-score. One percentage point for rates, about 1 % for the log features.
Z_FLOOR = 0.01
SCALE_FEATURES = ("net_revenue_cents", "transactions", "avg_basket_cents")  # compared in logs, net of the day

ANOMALY_SCHEMA = pl.Schema(
    {
        "store_id": pl.String(),
        "sale_date": pl.Date(),
        "anomaly_score": pl.Float64(),
        "threshold": pl.Float64(),
        "is_anomaly": pl.Boolean(),
        "severity": pl.String(),
        "drivers": pl.String(),
        "net_revenue_cents": pl.Int64(),
        "transactions": pl.Int64(),
        "avg_basket_cents": pl.Float64(),
        "refund_rate": pl.Float64(),
        "void_rate": pl.Float64(),
        "discount_rate": pl.Float64(),
        "max_abs_z": pl.Float64(),
        "expected_revenue_lo_cents": pl.Float64(),
        "expected_revenue_hi_cents": pl.Float64(),
    }
)

# Store-day features (store-local days) from the sale lines; voids live there, the sales mart excludes them.
FEATURES_SQL = """
    with lines as (
        select store_id, sale_date, transaction_id, sale_kind,
               quantity * unit_price_cents as gross_cents, discount_cents
        from intermediate.int_sale_lines_localized
    ),
    daily as (
        select
            store_id,
            sale_date,
            sum(case sale_kind when 'sale' then gross_cents - discount_cents
                               when 'refund' then -(gross_cents - discount_cents)
                               else 0 end) as net_revenue_cents,
            count(distinct case when sale_kind = 'sale' then transaction_id end) as transactions,
            count(distinct case when sale_kind = 'refund' then transaction_id end) as refunds,
            count(distinct case when sale_kind = 'void' then transaction_id end) as voids,
            count(distinct transaction_id) as all_transactions,
            sum(case when sale_kind = 'sale' then discount_cents else 0 end) as sale_discount_cents,
            sum(case when sale_kind = 'sale' then gross_cents else 0 end) as sale_gross_cents
        from lines
        group by all
    )
    select
        store_id,
        sale_date,
        cast(net_revenue_cents as bigint) as net_revenue_cents,
        cast(transactions as bigint) as transactions,
        net_revenue_cents / nullif(transactions, 0) as avg_basket_cents,
        refunds / nullif(all_transactions, 0) as refund_rate,
        voids / nullif(all_transactions, 0) as void_rate,
        sale_discount_cents / nullif(sale_gross_cents, 0) as discount_rate
    from daily
    order by store_id, sale_date
"""


def empty_anomalies() -> pl.DataFrame:
    return pl.DataFrame(schema=ANOMALY_SCHEMA)


def severity_expr(quantile: float) -> pl.Expr:
    """low below the threshold quantile; above it, medium / high / critical by how far into the tail."""
    tail = 1.0 - quantile
    rank = pl.col("anomaly_score").rank("average") / pl.len()
    return (
        pl.when(~pl.col("is_anomaly"))
        .then(pl.lit("low"))
        .when(rank < 1.0 - tail / 2)
        .then(pl.lit("medium"))
        .when(rank < 1.0 - tail / 10)
        .then(pl.lit("high"))
        .otherwise(pl.lit("critical"))
    )


MIN_STORES_FOR_DAY_LEVEL = 5  # fewer stores that day: one store's spike would move the chain's median


def _day_level(column: str) -> pl.Expr:
    """The chain-wide median of ``column`` that day, or 0 when fewer than MIN_STORES_FOR_DAY_LEVEL report."""
    stores = pl.col("store_id").n_unique().over("sale_date")
    return (
        pl.when(stores >= MIN_STORES_FOR_DAY_LEVEL)
        .then(pl.col(column).median().over("sale_date"))
        .otherwise(0.0)
    )


def _sampling_error(feature: str, group: list[str]) -> pl.Expr:
    """Binomial standard error of a rate on the day's transactions (3 refunds in 37 sales is noise, 30 in
    370 is not); 0 for the log features."""
    if feature in SCALE_FEATURES:
        return pl.lit(0.0)
    p = pl.col(f"v_{feature}").median().over(group).clip(0.01, 1.0)  # a 0 % norm still has noise
    return (p * (1 - p) / pl.col("transactions").cast(pl.Float64).clip(lower_bound=1.0)).sqrt()


def score_sales_anomalies(
    features: pl.DataFrame, *, threshold_quantile: float, anomaly_z: float = ANOMALY_Z
) -> pl.DataFrame:
    """Score every store-day of ``features`` (columns: store_id, sale_date and ``FEATURES``).

    Revenue, transactions and basket are taken in logs net of the chain-wide median of that day (a holiday
    lifts every store, so it is not an anomaly); then each feature becomes a robust z-score within its store
    and weekday (median and MAD), so stores of any size and quiet Mondays compare. ECOD scores the z-score
    vectors; ``threshold`` is the ``threshold_quantile`` of the raw scores, and a store-day is an anomaly
    when its score passes it and its largest |z| (``max_abs_z``) reaches ``anomaly_z``. ``drivers`` lists
    the features with |z| >= 3, largest first; ``expected_revenue_lo/hi_cents`` is the store-weekday norm
    ± ``anomaly_z`` MADs on that day's chain level."""
    if features.height < 10:
        return empty_anomalies()
    from pyod.models.ecod import ECOD

    filled = features.with_columns(
        [pl.col(f).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for f in FEATURES]
    ).with_columns(weekday=pl.col("sale_date").dt.weekday())
    group = ["store_id", "weekday"]
    adjusted = filled.with_columns(
        [(pl.col(f).clip(lower_bound=0.0) + 1.0).log().alias(f"v_{f}") for f in SCALE_FEATURES]
        + [pl.col(f).alias(f"v_{f}") for f in FEATURES if f not in SCALE_FEATURES]
    ).with_columns(
        [(pl.col(f"v_{f}") - _day_level(f"v_{f}")).alias(f"v_{f}") for f in SCALE_FEATURES]
        + [_day_level("v_net_revenue_cents").alias("day_level")]
    )
    z = adjusted.with_columns(
        [
            (
                (pl.col(f"v_{f}") - pl.col(f"v_{f}").median().over(group))
                / (
                    (pl.col(f"v_{f}") - pl.col(f"v_{f}").median().over(group)).abs().median().over(group)
                    * 1.4826
                    + Z_FLOOR
                    + _sampling_error(f, group)
                )
            ).alias(f"z_{f}")
            for f in FEATURES
        ]
        + [
            pl.col("v_net_revenue_cents").median().over(group).alias("rev_median"),
            (pl.col("v_net_revenue_cents") - pl.col("v_net_revenue_cents").median().over(group))
            .abs()
            .median()
            .over(group)
            .alias("rev_mad"),
        ]
    )
    zcols = [f"z_{f}" for f in FEATURES]
    matrix = z.select([pl.col(c).clip(-50, 50) for c in zcols]).to_numpy()
    detector = ECOD()
    detector.fit(matrix)
    scores = detector.decision_scores_
    threshold = float(pl.Series(scores).quantile(threshold_quantile, interpolation="linear") or 0.0)
    # Top drivers: names of features whose |z| passes DRIVER_Z, by |z| descending.
    drivers = (
        z.select(pl.int_range(pl.len()).alias("row"), *zcols)
        .unpivot(index="row", variable_name="feature", value_name="z")
        .filter(pl.col("z").abs() >= DRIVER_Z)
        .sort(["row", pl.col("z").abs()], descending=[False, True])
        .group_by("row", maintain_order=True)
        .agg(pl.col("feature").str.strip_prefix("z_").head(MAX_DRIVERS).str.join(",").alias("drivers"))
    )
    spread = anomaly_z * 1.4826 * pl.col("rev_mad")
    scored = (
        z.with_row_index("row")
        .with_columns(
            anomaly_score=pl.Series(scores),
            threshold=pl.lit(threshold),
            max_abs_z=pl.max_horizontal([pl.col(c).abs().clip(upper_bound=1e6) for c in zcols]),
            expected_revenue_lo_cents=(
                (pl.col("rev_median") + pl.col("day_level") - spread).exp() - 1.0
            ).clip(lower_bound=0.0),
            expected_revenue_hi_cents=(pl.col("rev_median") + pl.col("day_level") + spread).exp() - 1.0,
        )
        .with_columns(
            is_anomaly=(pl.col("anomaly_score") > pl.col("threshold")) & (pl.col("max_abs_z") >= anomaly_z)
        )
        .join(drivers.with_columns(pl.col("row").cast(pl.UInt32)), on="row", how="left")
        .with_columns(drivers=pl.col("drivers").fill_null(""), severity=severity_expr(threshold_quantile))
    )
    return scored.select(list(ANOMALY_SCHEMA)).cast(ANOMALY_SCHEMA).sort("store_id", "sale_date")

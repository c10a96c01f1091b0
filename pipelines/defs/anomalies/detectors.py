"""Cashier-shift and security anomalies: robust z-scores for the decision, a pyod score kept beside them.

Every detector stores its raw scores (``anomaly_score`` from pyod's ECOD over the robust z-scores, and
``max_z``, the largest robust z of the features that can drive an alert) so a threshold can move without
refitting. The decision is robust rather than a guessed contamination: a row is an anomaly when a driving
feature lies more than ``z_threshold`` scaled MADs above its typical value *and* the absolute amount is
material (``min_count``). Severity grows with ``max_z``: medium below 2× the threshold, high below 4×,
critical beyond.
"""

from __future__ import annotations

import numpy as np
import polars as pl

Z_THRESHOLD = 6.0

CASHIER_FEATURES = ("refunds", "refund_cents", "voids", "discount_rate", "transactions")
CASHIER_DRIVERS = ("refunds", "refund_cents", "voids")
SECURITY_FEATURES = ("failures", "distinct_users", "failed_users", "events_per_minute", "failure_rate")
SECURITY_DRIVERS = ("failures", "failed_users", "events_per_minute")

# Cashier-shift features (cashier x store-local day) from the localized sale lines.
CASHIER_FEATURES_SQL = """
    select
        store_id,
        cashier_id,
        sale_date,
        count(distinct case when sale_kind = 'sale' then transaction_id end) as transactions,
        count(distinct case when sale_kind = 'refund' then transaction_id end) as refunds,
        cast(coalesce(sum(case when sale_kind = 'refund'
                               then quantity * unit_price_cents - discount_cents end), 0) as bigint)
            as refund_cents,
        count(distinct case when sale_kind = 'void' then transaction_id end) as voids,
        coalesce(sum(case when sale_kind = 'sale' then discount_cents end)
                 / nullif(sum(case when sale_kind = 'sale' then quantity * unit_price_cents end), 0), 0)
            as discount_rate
    from intermediate.int_sale_lines_localized
    where cashier_id is not null
    group by all
    order by store_id, cashier_id, sale_date
"""

# Security behaviour per source IP and UTC day from the security events mart.
SECURITY_FEATURES_SQL = """
    select
        source_ip,
        event_date,
        count(*) as events,
        count(*) filter (where is_failure) as failures,
        count(distinct username) as distinct_users,
        count(distinct username) filter (where is_failure) as failed_users,
        count(*) / (greatest(date_diff('second', min(occurred_at), max(occurred_at)), 0) / 60.0 + 1.0)
            as events_per_minute,
        count(*) filter (where is_failure) / count(*) as failure_rate,
        count(distinct hour(occurred_at)) as active_hours,
        min(occurred_at) as first_seen,
        max(occurred_at) as last_seen
    from marts.fct_security_events
    where source_ip is not null
    group by all
    order by source_ip, event_date
"""


def robust_z(column: str, over: str | list[str] | None = None, floor: float | pl.Expr = 1.0) -> pl.Expr:
    """(x − median) / (1.4826 · MAD + floor): the floor, one unit of the feature (1 for counts), keeps
    features whose MAD is 0 (mostly zero) from exploding, so one refund on a quiet shift is not an
    outlier."""
    x = pl.col(column).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
    median = x.median() if over is None else x.median().over(over)
    mad = (x - median).abs().median() if over is None else (x - median).abs().median().over(over)
    return ((x - median) / (1.4826 * mad + floor)).alias(f"z_{column}")


def one_refund_cents(over: str) -> pl.Expr:
    """The value of an ordinary refund per ``over`` group (the median of refund_cents / refunds over the
    shifts with a refund; 1 cent where there is none): the noise floor of ``refund_cents``, which is in
    cents, so that a single ordinary refund scores about 1 rather than its value in cents."""
    per_refund = pl.when(pl.col("refunds") > 0).then(pl.col("refund_cents") / pl.col("refunds"))
    return per_refund.cast(pl.Float64).median().over(over).fill_null(1.0).clip(lower_bound=1.0)


def grade_severity(value: pl.Expr, high_from: float, critical_from: float) -> pl.Expr:
    """The severity of a flagged row by how far ``value`` goes: medium below ``high_from``, high below
    ``critical_from``, critical beyond."""
    return (
        pl.when(value < high_from)
        .then(pl.lit("medium"))
        .when(value < critical_from)
        .then(pl.lit("high"))
        .otherwise(pl.lit("critical"))
    )


def _severity(z_threshold: float) -> pl.Expr:
    return (
        pl.when(~pl.col("is_anomaly"))
        .then(pl.lit("low"))
        .otherwise(grade_severity(pl.col("max_z"), 2 * z_threshold, 4 * z_threshold))
    )


def _ecod(matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] < 10:
        return np.zeros(matrix.shape[0])
    from pyod.models.ecod import ECOD

    detector = ECOD()
    detector.fit(np.clip(matrix, -50, 50))
    return np.asarray(detector.decision_scores_, dtype=float)


def _drivers(frame: pl.DataFrame, drivers: tuple[str, ...], z_threshold: float) -> pl.Expr:
    parts = [pl.when(pl.col(f"z_{d}") >= z_threshold).then(pl.lit(d)).otherwise(None) for d in drivers]
    return pl.concat_str(parts, separator=",", ignore_nulls=True).alias("drivers")


def _unscored(features: pl.DataFrame, **extra: type[pl.DataType]) -> pl.DataFrame:
    """The scored columns on a frame with no rows (nothing to score), plus ``extra`` null columns."""
    return features.with_columns(
        anomaly_score=pl.lit(None, pl.Float64),
        max_z=pl.lit(None, pl.Float64),
        is_anomaly=pl.lit(False),
        severity=pl.lit(None, pl.String),
        drivers=pl.lit(None, pl.String),
        **{name: pl.lit(None, dtype) for name, dtype in extra.items()},
    )


def score_cashier_shifts(
    features: pl.DataFrame, *, z_threshold: float = Z_THRESHOLD, min_count: int = 5
) -> pl.DataFrame:
    """Score cashier x day rows (columns of ``CASHIER_FEATURES_SQL``). z-scores are within the store, so a
    cashier is compared with colleagues on the same tills; a shift is an anomaly when refunds, refund value
    or voids pass ``z_threshold`` and it holds at least ``min_count`` refunds or voids.
    ``expected_refunds_hi`` is the refunds count at the threshold (the top of the expected range)."""
    if features.is_empty():
        return _unscored(features, expected_refunds_hi=pl.Float64)
    z = features.with_columns(
        [
            robust_z(f, "store_id", floor=one_refund_cents("store_id") if f == "refund_cents" else 1.0)
            for f in CASHIER_FEATURES
        ]
    )
    zcols = [f"z_{f}" for f in CASHIER_FEATURES]
    scores = _ecod(z.select(zcols).to_numpy())
    refunds = pl.col("refunds").cast(pl.Float64)
    median = refunds.median().over("store_id")
    mad = (refunds - median).abs().median().over("store_id")
    out = z.with_columns(
        anomaly_score=pl.Series(scores),
        max_z=pl.max_horizontal([pl.col(f"z_{d}") for d in CASHIER_DRIVERS]),
        expected_refunds_hi=median + z_threshold * (1.4826 * mad + 1.0),
    ).with_columns(
        is_anomaly=(pl.col("max_z") >= z_threshold) & ((pl.col("refunds") + pl.col("voids")) >= min_count),
        drivers=_drivers(z, CASHIER_DRIVERS, z_threshold),
    )
    return out.with_columns(severity=_severity(z_threshold), z_threshold=pl.lit(z_threshold)).drop(zcols)


def score_security(
    features: pl.DataFrame, *, z_threshold: float = Z_THRESHOLD, min_count: int = 10
) -> pl.DataFrame:
    """Score source-IP x day rows (columns of ``SECURITY_FEATURES_SQL``). An IP-day is an anomaly when
    failures, distinct usernames failed or velocity pass ``z_threshold`` over all IP-days and it holds at
    least ``min_count`` failures (a brute force hammers one account; credential stuffing tries many)."""
    if features.is_empty():
        return _unscored(features)
    z = features.with_columns([robust_z(f) for f in SECURITY_FEATURES])
    zcols = [f"z_{f}" for f in SECURITY_FEATURES]
    scores = _ecod(z.select(zcols).to_numpy())
    out = z.with_columns(
        anomaly_score=pl.Series(scores),
        max_z=pl.max_horizontal([pl.col(f"z_{d}") for d in SECURITY_DRIVERS]),
    ).with_columns(
        is_anomaly=(pl.col("max_z") >= z_threshold) & (pl.col("failures") >= min_count),
        drivers=_drivers(z, SECURITY_DRIVERS, z_threshold),
    )
    return out.with_columns(severity=_severity(z_threshold), z_threshold=pl.lit(z_threshold)).drop(zcols)


# Shrinkage: at each shelf count, the level the books expect (previous count + recorded movements − units
# sold since) against the level counted. Stock that vanished without a record shows as missing_units.
SHRINKAGE_FEATURES_SQL = """
    with movements as (
        select store_id, product_id, movement_kind, quantity_delta, counted_level, occurred_at
        from staging.stg_pos__inventory_movements
    ),
    counts as (
        select store_id, product_id, occurred_at as counted_at, counted_level,
               lag(occurred_at) over w as previous_at, lag(counted_level) over w as previous_level
        from movements
        where movement_kind = 'count'
        window w as (partition by store_id, product_id order by occurred_at)
    ),
    intervals as (select * from counts where previous_at is not null),
    moved as (
        select i.store_id, i.product_id, i.counted_at, sum(m.quantity_delta) as moved_units
        from intervals as i
        join movements as m
          on m.store_id = i.store_id and m.product_id = i.product_id and m.movement_kind != 'count'
         and m.occurred_at > i.previous_at and m.occurred_at <= i.counted_at
        group by all
    ),
    sold as (
        select i.store_id, i.product_id, i.counted_at, sum(l.quantity) as sold_units
        from intervals as i
        join staging.stg_pos__sale_lines as l
          on l.store_id = i.store_id and l.product_id = i.product_id and l.sale_kind = 'sale'
         and l.occurred_at > i.previous_at and l.occurred_at <= i.counted_at
        group by all
    )
    select
        i.store_id, i.product_id, i.previous_at, i.counted_at,
        cast(i.previous_level as bigint) as previous_level,
        cast(i.counted_level as bigint) as counted_level,
        cast(coalesce(m.moved_units, 0) as bigint) as moved_units,
        cast(coalesce(s.sold_units, 0) as bigint) as sold_units,
        cast(i.previous_level + coalesce(m.moved_units, 0) - coalesce(s.sold_units, 0) as bigint)
            as expected_level
    from intervals as i
    left join moved as m using (store_id, product_id, counted_at)
    left join sold as s using (store_id, product_id, counted_at)
    order by i.store_id, i.product_id, i.counted_at
"""


def score_shrinkage(
    counts: pl.DataFrame, *, z_threshold: float = Z_THRESHOLD, min_units: int = 5, min_share: float = 0.1
) -> pl.DataFrame:
    """Score shelf counts (columns of ``SHRINKAGE_FEATURES_SQL``): missing_units = expected − counted. A
    count is an anomaly when missing_units lies ``z_threshold`` scaled MADs above the store's typical gap,
    is at least ``min_units`` and at least ``min_share`` of the expected level."""
    if counts.is_empty():
        return counts.with_columns(
            missing_units=pl.lit(None, pl.Int64), max_z=pl.lit(None, pl.Float64), is_anomaly=pl.lit(False),
            severity=pl.lit(None, pl.String), z_threshold=pl.lit(z_threshold),
        )  # fmt: skip
    frame = counts.with_columns(missing_units=pl.col("expected_level") - pl.col("counted_level"))
    out = frame.with_columns(robust_z("missing_units", "store_id").alias("max_z")).with_columns(
        is_anomaly=(pl.col("max_z") >= z_threshold)
        & (pl.col("missing_units") >= min_units)
        & (pl.col("missing_units") >= min_share * pl.col("expected_level").clip(lower_bound=1)),
        drivers=pl.lit("missing_units"),
    )
    return out.with_columns(severity=_severity(z_threshold), z_threshold=pl.lit(z_threshold))

"""Unusual data access: users and terminals whose reads depart from their own history.

Each principal-day of ``marts.fct_data_access_daily`` is compared with the same principal's earlier days
(the last ``BASELINE_DAYS``, not the day itself; days without a record do not count): robust z-scores
against the baseline's median and MAD (scaled by 1.4826, and never below a floor: a perfectly steady
principal's MAD is 0), one per signal,

- ``z_reads``: the day's volume, on a log scale (``log1p(reads)``; floor ``READS_FLOOR``);
- ``z_stores``: how many stores' figures it read (floor ``STORES_FLOOR``, one store);
- ``z_new_stores``: how many of them it had never read before (floor one store);
- ``z_off_hours``: the share of its reads made off hours (floor ``OFF_HOURS_FLOOR``).

There is no global threshold on volume or breadth: a head-office analyst who reads every store every day
is ordinary, a store manager who suddenly reads twenty is not. A day is an anomaly when the principal has
``MIN_BASELINE_DAYS`` earlier active days and one signal lies ``ANOMALY_Z_THRESHOLD`` above its norm with
a material amount behind it (``MIN_READS`` reads for volume, ``MIN_EXTRA_STORES`` stores beyond the usual
for breadth and new stores, ``MIN_OFF_HOURS_READS`` reads off hours). A principal without enough history
is not scored (its first days are its baseline). Raw scores are kept (``max_z`` = ``anomaly_score``), so the
threshold can move without recomputing; severity grows with ``max_z`` as for the other detectors.
"""

from __future__ import annotations

import polars as pl

from pipelines.defs.anomalies.detectors import Z_THRESHOLD, _severity

TABLE = "analytics.access_anomalies"
BASELINE_DAYS = 28
MIN_BASELINE_DAYS = 5  # earlier active days of the principal before a day is scored
MIN_READS = 20  # reads in the day for a volume anomaly
MIN_EXTRA_STORES = 3  # stores beyond the usual (or never read before) for a breadth anomaly
MIN_OFF_HOURS_READS = 5  # reads off hours for an hours anomaly
READS_FLOOR = 0.25  # least spread of log1p(reads): a steady reader is flagged from about 4.5x its usual
OFF_HOURS_FLOOR = 0.1  # least spread of the off-hours share (ten percentage points)
STORES_FLOOR = 1.0  # least spread of the store counts (one store)

FEATURES_SQL = f"""
    select
        *,
        ln(1 + reads) as log_reads,
        count(*) over earlier as baseline_days,
        median(ln(1 + reads)) over earlier as baseline_log_reads,
        mad(ln(1 + reads)) over earlier as baseline_mad_log_reads,
        median(distinct_stores) over earlier as baseline_stores,
        mad(distinct_stores) over earlier as baseline_mad_stores,
        median(new_stores) over earlier as baseline_new_stores,
        mad(new_stores) over earlier as baseline_mad_new_stores,
        median(off_hours_share) over earlier as baseline_off_hours,
        mad(off_hours_share) over earlier as baseline_mad_off_hours
    from marts.fct_data_access_daily
    window earlier as (
        partition by principal order by access_date
        range between interval {BASELINE_DAYS} days preceding and interval 1 day preceding
    )
    order by principal, access_date
"""

OUTPUT_COLUMNS = (
    "principal",
    "principal_kind",
    "role",
    "access_date",
    "reads",
    "distinct_stores",
    "new_stores",
    "stores",
    "distinct_routes",
    "off_hours_reads",
    "off_hours_share",
    "source_ips",
    "first_at",
    "last_at",
    "baseline_days",
    "expected_reads",
    "expected_reads_hi",
    "expected_stores",
    "expected_stores_hi",
    "expected_off_hours_share",
    "z_reads",
    "z_stores",
    "z_new_stores",
    "z_off_hours",
    "anomaly_score",
    "max_z",
    "z_threshold",
    "is_anomaly",
    "severity",
    "drivers",
)

# driver name -> (its z column, the condition that makes it material)
_DRIVERS = {
    "reads": ("z_reads", pl.col("reads") >= MIN_READS),
    "distinct_stores": (
        "z_stores",
        pl.col("distinct_stores") - pl.col("baseline_stores").fill_null(0) >= MIN_EXTRA_STORES,
    ),
    "new_stores": ("z_new_stores", pl.col("new_stores") >= MIN_EXTRA_STORES),
    "off_hours_share": ("z_off_hours", pl.col("off_hours_reads") >= MIN_OFF_HOURS_READS),
}


def empty_access_features() -> pl.DataFrame:
    """The features' columns with no rows (a warehouse without data-access records yet)."""
    return pl.DataFrame(
        schema={
            "principal": pl.String,
            "principal_kind": pl.String,
            "role": pl.String,
            "access_date": pl.Date,
            "reads": pl.Int64,
            "distinct_stores": pl.Int64,
            "new_stores": pl.Int64,
            "stores": pl.String,
            "distinct_routes": pl.Int64,
            "off_hours_reads": pl.Int64,
            "off_hours_share": pl.Float64,
            "source_ips": pl.Int64,
            "first_at": pl.Datetime("us"),
            "last_at": pl.Datetime("us"),
            "log_reads": pl.Float64,
            "baseline_days": pl.Int64,
            "baseline_log_reads": pl.Float64,
            "baseline_mad_log_reads": pl.Float64,
            "baseline_stores": pl.Float64,
            "baseline_mad_stores": pl.Float64,
            "baseline_new_stores": pl.Float64,
            "baseline_mad_new_stores": pl.Float64,
            "baseline_off_hours": pl.Float64,
            "baseline_mad_off_hours": pl.Float64,
        }
    )


def _spread(mad: str, floor: float) -> pl.Expr:
    return pl.max_horizontal(1.4826 * pl.col(mad), pl.lit(floor))


def score_access(
    features: pl.DataFrame,
    *,
    z_threshold: float = Z_THRESHOLD,
    min_baseline_days: int = MIN_BASELINE_DAYS,
) -> pl.DataFrame:
    """Score principal-days (columns of ``FEATURES_SQL``); one row out per row in."""
    scored_day = pl.col("baseline_days").fill_null(0) >= min_baseline_days
    reads_spread = _spread("baseline_mad_log_reads", READS_FLOOR)
    stores_spread = _spread("baseline_mad_stores", STORES_FLOOR)
    new_spread = _spread("baseline_mad_new_stores", STORES_FLOOR)
    hours_spread = _spread("baseline_mad_off_hours", OFF_HOURS_FLOOR)
    frame = features.with_columns(
        z_reads=pl.when(scored_day).then((pl.col("log_reads") - pl.col("baseline_log_reads")) / reads_spread),
        z_stores=pl.when(scored_day).then(
            (pl.col("distinct_stores") - pl.col("baseline_stores")) / stores_spread
        ),
        z_new_stores=pl.when(scored_day).then(
            (pl.col("new_stores") - pl.col("baseline_new_stores")) / new_spread
        ),
        z_off_hours=pl.when(scored_day).then(
            (pl.col("off_hours_share") - pl.col("baseline_off_hours")) / hours_spread
        ),
        expected_reads=pl.col("baseline_log_reads").exp() - 1,
        expected_reads_hi=(pl.col("baseline_log_reads") + z_threshold * reads_spread).exp() - 1,
        expected_stores=pl.col("baseline_stores"),
        expected_stores_hi=pl.col("baseline_stores") + z_threshold * stores_spread,
        expected_off_hours_share=pl.col("baseline_off_hours"),
    )
    fired = {
        name: ((pl.col(z) >= z_threshold) & material).fill_null(False)
        for name, (z, material) in _DRIVERS.items()
    }
    out = frame.with_columns(
        max_z=pl.max_horizontal(*(pl.col(z) for z, _ in _DRIVERS.values())).fill_null(0.0),
        is_anomaly=pl.any_horizontal(*fired.values()),
        drivers=pl.concat_str(
            [pl.when(cond).then(pl.lit(name)) for name, cond in fired.items()],
            separator=",",
            ignore_nulls=True,
        ).fill_null(""),
        z_threshold=pl.lit(z_threshold),
    ).with_columns(anomaly_score=pl.col("max_z"), severity=_severity(z_threshold))
    return out.select(OUTPUT_COLUMNS)

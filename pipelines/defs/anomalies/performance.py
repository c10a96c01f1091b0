"""Performance anomalies: API latency and error-rate degradation per endpoint and hour, from the request log.

Each hour of an endpoint (``marts.fct_api_performance``) is compared with that endpoint's own earlier hours
(the last ``BASELINE_DAYS``, not the hour itself): its p95 latency on a log scale and its 5xx error rate
become robust z-scores against the baseline's median and MAD (scaled by 1.4826). The raw scores
(``z_latency``, ``z_error_rate``, their maximum ``max_z`` = ``anomaly_score``) are stored, so the threshold
can move without recomputing. An hour is an anomaly when

- it and its baseline carry enough traffic (``ANOMALY_MIN_API_REQUESTS`` requests in the hour,
  ``MIN_BASELINE_HOURS`` such hours before it), so a quiet endpoint's one slow call does not fire, and
- its p95 lies ``ANOMALY_Z_THRESHOLD`` scaled MADs above the norm (and at least ``MIN_LATENCY_DELTA_MS``
  above it), or its 5xx rate does, counting the binomial noise of the hour's request count, with at least
  ``ANOMALY_MIN_API_ERRORS`` server errors.

Severity grows with ``max_z`` like the other detectors (medium below 2x the threshold, high below 4x,
critical beyond). The expected range is the baseline p95 and the p95 / error rate at the threshold.
"""

from __future__ import annotations

from functools import partial

import dagster as dg
import polars as pl

from pipelines.defs.anomalies.assets import _score_into
from pipelines.defs.anomalies.detectors import Z_THRESHOLD, _severity
from pipelines.resources import PipelineConfig, Warehouse

TABLE = "analytics.performance_anomalies"
# Defaults of the settings ANOMALY_Z_THRESHOLD, ANOMALY_MIN_API_REQUESTS and ANOMALY_MIN_API_ERRORS.
MIN_REQUESTS = 20  # requests in the hour to score it (and to count it in a baseline)
MIN_ERRORS = 5  # 5xx responses in the hour for an error-rate anomaly
MIN_BASELINE_HOURS = 24  # scored hours of the endpoint before this one
BASELINE_DAYS = 14
MIN_LATENCY_DELTA_MS = 10.0  # p95 above the norm by at least this much for a latency anomaly
LATENCY_FLOOR = 0.05  # added to the scaled MAD of log p95 (5 %): a steady endpoint's jitter is not news
ERROR_FLOOR = 0.005  # added to the error rate's spread (half a percentage point)


def performance_features_sql(min_requests: int = MIN_REQUESTS) -> str:
    """Endpoint-hours with their baseline: median and MAD of log p95 and of the 5xx rate over the endpoint's
    earlier hours (``BASELINE_DAYS``) that carried at least ``min_requests`` requests."""
    return f"""
    with hours as (
        select
            endpoint, method, route, hour_start, requests, errors_4xx, errors_5xx,
            error_rate_4xx, error_rate_5xx, latency_ms_mean, latency_ms_p95,
            ln(greatest(latency_ms_p95, 0.01)) as log_p95,
            requests >= {int(min_requests)} as scored
        from marts.fct_api_performance
    )
    select
        *,
        count(*) filter (where scored) over earlier as baseline_hours,
        median(log_p95) filter (where scored) over earlier as baseline_log_p95,
        mad(log_p95) filter (where scored) over earlier as baseline_mad_log_p95,
        median(error_rate_5xx) filter (where scored) over earlier as baseline_error_rate,
        mad(error_rate_5xx) filter (where scored) over earlier as baseline_mad_error_rate
    from hours
    window earlier as (
        partition by endpoint order by hour_start
        range between interval {BASELINE_DAYS} days preceding and interval 1 hour preceding
    )
    order by endpoint, hour_start
"""


PERFORMANCE_FEATURES_SQL = performance_features_sql()

OUTPUT_COLUMNS = (
    "endpoint",
    "method",
    "route",
    "hour_start",
    "requests",
    "errors_4xx",
    "errors_5xx",
    "error_rate_4xx",
    "error_rate_5xx",
    "latency_ms_mean",
    "latency_ms_p95",
    "baseline_hours",
    "expected_latency_p95_ms",
    "expected_latency_p95_hi_ms",
    "expected_error_rate",
    "expected_error_rate_hi",
    "z_latency",
    "z_error_rate",
    "anomaly_score",
    "max_z",
    "z_threshold",
    "is_anomaly",
    "severity",
    "drivers",
)


def score_performance(
    features: pl.DataFrame,
    *,
    z_threshold: float = Z_THRESHOLD,
    min_requests: int = MIN_REQUESTS,
    min_baseline_hours: int = MIN_BASELINE_HOURS,
    min_errors: int = MIN_ERRORS,
) -> pl.DataFrame:
    """Score endpoint-hours (columns of ``PERFORMANCE_FEATURES_SQL``); one row out per row in."""
    requests = pl.col("requests").cast(pl.Float64)
    comparable = (pl.col("requests") >= min_requests) & (
        pl.col("baseline_hours").fill_null(0) >= min_baseline_hours
    )
    latency_spread = 1.4826 * pl.col("baseline_mad_log_p95") + LATENCY_FLOOR
    p = pl.col("baseline_error_rate").clip(lower_bound=0.001)
    error_spread = (
        1.4826 * pl.col("baseline_mad_error_rate")
        + (p * (1 - p) / requests.clip(lower_bound=1.0)).sqrt()
        + ERROR_FLOOR
    )
    expected_p95 = pl.col("baseline_log_p95").exp()
    scored = features.with_columns(
        z_latency=pl.when(comparable).then((pl.col("log_p95") - pl.col("baseline_log_p95")) / latency_spread),
        z_error_rate=pl.when(comparable).then(
            (pl.col("error_rate_5xx") - pl.col("baseline_error_rate")) / error_spread
        ),
        expected_latency_p95_ms=expected_p95,
        expected_latency_p95_hi_ms=(pl.col("baseline_log_p95") + z_threshold * latency_spread).exp(),
        expected_error_rate=pl.col("baseline_error_rate"),
        expected_error_rate_hi=pl.col("baseline_error_rate") + z_threshold * error_spread,
    ).with_columns(
        slow=(pl.col("z_latency") >= z_threshold)
        & (pl.col("latency_ms_p95") - pl.col("expected_latency_p95_ms") >= MIN_LATENCY_DELTA_MS),
        failing=(pl.col("z_error_rate") >= z_threshold) & (pl.col("errors_5xx") >= min_errors),
    )
    out = scored.with_columns(
        max_z=pl.max_horizontal(pl.col("z_latency"), pl.col("z_error_rate")).fill_null(0.0),
        is_anomaly=(pl.col("slow") | pl.col("failing")).fill_null(False),
        drivers=pl.concat_str(
            [
                pl.when(pl.col("slow")).then(pl.lit("latency_p95")),
                pl.when(pl.col("failing")).then(pl.lit("error_rate")),
            ],
            separator=",",
            ignore_nulls=True,
        ).fill_null(""),
        z_threshold=pl.lit(z_threshold),
    ).with_columns(anomaly_score=pl.col("max_z"), severity=_severity(z_threshold))
    return out.select(OUTPUT_COLUMNS)


@dg.asset(
    group_name="anomalies",
    kinds={"duckdb"},
    deps=[dg.AssetKey("fct_api_performance")],
    description="API performance anomalies per endpoint and hour: p95 latency (log) and 5xx rate against "
    "the endpoint's earlier hours (robust z-scores, minimum traffic) — analytics.performance_anomalies.",
)
def performance_anomalies(warehouse: Warehouse, pipeline_config: PipelineConfig) -> dg.MaterializeResult:
    score = partial(
        score_performance,
        z_threshold=pipeline_config.anomaly_z_threshold,
        min_requests=pipeline_config.anomaly_min_api_requests,
        min_errors=pipeline_config.anomaly_min_api_errors,
    )
    sql = performance_features_sql(pipeline_config.anomaly_min_api_requests)
    return _score_into(warehouse, pipeline_config, TABLE, sql, score)


assets = [performance_anomalies]

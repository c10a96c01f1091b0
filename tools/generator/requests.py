"""The API's request log for the last days of a generated chain: per-minute request stats per route, in
the shape of the ops store's ``request_stats`` table, with planted latency regressions and error bursts.

Traffic follows the stores' opening hours (each open store adds its hourly profile, in its own time zone);
monitoring probes hit the health route around the clock. Latency per minute is lognormal around each
route's norm and rises a little with load; 4xx and 5xx are binomial at small base rates. Vectorised over
every route x minute.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tools.generator.calendar import HOURLY_PROFILE, OPEN_HOUR

REQUEST_LOG_DAYS = 14  # the request log covers the generated period's last two weeks
INSTANCE = "api-1:1"  # one generated API instance (hostname:pid)

# method, route template, requests per minute per open store at an average hour, p50 (ms), p95 / p50,
# 4xx rate, 5xx rate. Health is polled by monitoring at a fixed rate instead (``per_store`` 0).
ROUTES: tuple[tuple[str, str, float, float, float, float, float], ...] = (
    ("POST", "/api/events/sales", 2.0, 9.0, 3.5, 0.004, 0.001),
    ("POST", "/api/events/inventory", 0.4, 7.0, 3.0, 0.006, 0.001),
    ("POST", "/api/sync/upload", 0.3, 45.0, 4.0, 0.010, 0.002),
    ("GET", "/api/sync/download", 0.25, 60.0, 4.0, 0.002, 0.001),
    ("GET", "/api/ai/dashboard", 0.25, 30.0, 3.0, 0.010, 0.001),
    ("POST", "/api/auth/token", 0.1, 110.0, 1.8, 0.060, 0.001),
    ("GET", "/api/observability/health", 0.0, 2.0, 2.5, 0.0, 0.0),
)
HEALTH_PER_MINUTE = 4.0

# Planted degradations: (kind, route index, hours, p50 factor, p95 factor, 5xx rate).
PLANTED: tuple[tuple[str, int, int, float, float, float], ...] = (
    ("latency_regression", 3, 3, 3.0, 6.0, 0.0),  # sync download: a slow query after a deploy
    ("latency_regression", 0, 2, 4.0, 8.0, 0.0),  # sales ingest: ops store lock contention
    ("error_burst", 2, 2, 1.2, 1.5, 0.25),  # sync upload: a failing dependency
    ("error_burst", 4, 1, 1.0, 1.2, 0.40),  # dashboard: a broken snapshot read
)

SCHEMA = pl.Schema(
    {
        "bucket_start": pl.Datetime("us", "UTC"),
        "instance": pl.String(),
        "method": pl.String(),
        "route": pl.String(),
        "requests": pl.Int64(),
        "errors_4xx": pl.Int64(),
        "errors_5xx": pl.Int64(),
        "latency_ms_sum": pl.Float64(),
        "latency_ms_max": pl.Float64(),
        "latency_ms_p50": pl.Float64(),
        "latency_ms_p95": pl.Float64(),
    }
)


def _activity(open_sd: np.ndarray, offsets: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Open stores weighted by their local hour's share of the day's traffic, per (day, UTC minute),
    scaled so an open store averages 1 over its opening hours."""
    minutes = np.arange(1440)
    weight = HOURLY_PROFILE * HOURLY_PROFILE.size  # mean 1 over the opening hours
    out = np.zeros((days.size, 1440))
    for i, d in enumerate(days):
        local_hour = ((minutes[None, :] * 60 + offsets[:, d, None]) // 3600) % 24  # (S, 1440)
        slot = local_hour - OPEN_HOUR
        inside = (slot >= 0) & (slot < HOURLY_PROFILE.size) & open_sd[:, d, None]
        out[i] = np.where(inside, weight[np.clip(slot, 0, HOURLY_PROFILE.size - 1)], 0.0).sum(axis=0)
    return out


def request_stats(
    rng: np.random.Generator,
    open_sd: np.ndarray,
    day_epoch: np.ndarray,
    offsets: np.ndarray,
    ground_truth: list[dict],
    *,
    days: int = REQUEST_LOG_DAYS,
) -> pl.DataFrame:
    """Per-minute request stats (columns of ``request_stats``, ``bucket_start`` UTC) for the last ``days``
    days; minutes without requests have no row. Planted degradations are appended to ``ground_truth``
    (``route`` is ``METHOD template``)."""
    n_days = min(days, day_epoch.size)
    day_idx = np.arange(day_epoch.size - n_days, day_epoch.size)
    activity = _activity(open_sd, offsets, day_idx).ravel()  # (n_days * 1440,)
    n_min = activity.size
    n_routes = len(ROUTES)
    per_store = np.array([r[2] for r in ROUTES])
    rate = per_store[:, None] * activity[None, :]
    rate[per_store == 0] = HEALTH_PER_MINUTE
    requests = rng.poisson(rate)  # (R, M)

    load = activity / max(float(activity.max()), 1.0)
    p50_factor = np.ones((n_routes, n_min))
    p95_factor = np.ones((n_routes, n_min))
    rate_5xx = np.repeat(np.array([r[6] for r in ROUTES])[:, None], n_min, axis=1)
    # Plant each degradation on busy hours of distinct days after the first three (a baseline first).
    busy_hours = np.flatnonzero(activity.reshape(-1, 60).mean(axis=1) >= np.quantile(activity, 0.6))
    busy_hours = busy_hours[busy_hours >= 72]
    taken_days: set[int] = set()
    for kind, route, hours, f50, f95, err in PLANTED:
        if busy_hours.size == 0:
            break
        candidates = [h for h in busy_hours if h // 24 not in taken_days and h + hours <= n_min // 60]
        if not candidates:
            break
        first = int(candidates[int(rng.integers(len(candidates)))])
        taken_days.add(first // 24)
        span = slice(first * 60, (first + hours) * 60)
        p50_factor[route, span] *= f50
        p95_factor[route, span] *= f95
        if err:
            rate_5xx[route, span] = err
        method, template = ROUTES[route][:2]
        start = int(day_epoch[day_idx[0]]) + first * 3600
        ground_truth.append(
            {
                "anomaly_type": kind,
                "route": f"{method} {template}",
                "start_at": start,
                "end_at": start + hours * 3600,
                "description": (
                    f"{method} {template}: p95 latency x{f95:g} for {hours} h"
                    if kind == "latency_regression"
                    else f"{method} {template}: {err:.0%} server errors for {hours} h"
                ),
            }
        )

    base50 = np.array([r[3] for r in ROUTES])[:, None]
    ratio = np.array([r[4] for r in ROUTES])[:, None]
    p50 = base50 * (1 + 0.3 * load[None, :]) * np.exp(rng.normal(0, 0.08, (n_routes, n_min))) * p50_factor
    p95 = np.maximum(
        p50 * ratio * np.exp(rng.normal(0, 0.12, (n_routes, n_min))) * p95_factor / p50_factor, p50
    )
    latency_max = p95 * (1 + rng.exponential(0.6, (n_routes, n_min)))
    mean = (p50 + p95) / 2  # a right-skewed latency: the mean lies between median and p95
    single = requests == 1
    p95 = np.where(single, p50, p95)
    latency_max = np.where(single, p50, latency_max)
    latency_sum = np.where(single, p50, requests * mean)
    rate_4xx = np.array([r[5] for r in ROUTES])[:, None]
    errors_5xx = rng.binomial(requests, rate_5xx)
    errors_4xx = rng.binomial(requests - errors_5xx, np.broadcast_to(rate_4xx, requests.shape))

    route_i, minute_i = np.nonzero(requests)
    bucket = int(day_epoch[day_idx[0]]) + minute_i.astype(np.int64) * 60
    frame = pl.DataFrame(
        {
            "bucket_start": pl.from_epoch(pl.Series(bucket), time_unit="s").dt.replace_time_zone("UTC"),
            "instance": pl.repeat(INSTANCE, route_i.size, eager=True),
            "method": pl.Series([r[0] for r in ROUTES]).gather(route_i),
            "route": pl.Series([r[1] for r in ROUTES]).gather(route_i),
            "requests": requests[route_i, minute_i],
            "errors_4xx": errors_4xx[route_i, minute_i],
            "errors_5xx": errors_5xx[route_i, minute_i],
            "latency_ms_sum": np.round(latency_sum[route_i, minute_i], 3),
            "latency_ms_max": np.round(latency_max[route_i, minute_i], 3),
            "latency_ms_p50": np.round(p50[route_i, minute_i], 3),
            "latency_ms_p95": np.round(p95[route_i, minute_i], 3),
        }
    )
    return frame.cast(SCHEMA).sort("bucket_start", "method", "route")

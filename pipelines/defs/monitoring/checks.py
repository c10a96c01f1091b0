"""Freshness checks: the marts and the serving snapshot must have been materialized recently.

A check fails (severity WARN, visible on the asset in the Dagster UI) when its asset's last
materialization is older than the bound. The sensor evaluates them every few minutes once started.
The bound covers the nightly schedule with slack; the new-events sensor normally refreshes far sooner.

Dagster 1.12+ calls these checks superseded by asset freshness policies, but in open source those are a
preview that must be switched on in ``dagster.yaml``; checks work everywhere, show on each asset, and can
be evaluated in tests. Moving to ``FreshnessPolicy.time_window`` later is a change to this file only.
"""

import warnings
from datetime import timedelta

import dagster as dg

MART_KEYS = [
    "fct_sales_daily",
    "dim_store",
    "dim_product",
    "fct_stock_levels",
    "fct_security_events",
    "fct_sync_sessions",
]
FRESHNESS_BOUND = timedelta(hours=26)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    mart_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[dg.AssetKey(k) for k in MART_KEYS], lower_bound_delta=FRESHNESS_BOUND
    )
    snapshot_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[dg.AssetKey("serving_snapshot")], lower_bound_delta=FRESHNESS_BOUND
    )
    checks = [*mart_freshness_checks, *snapshot_freshness_checks]
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=checks, minimum_interval_seconds=300, name="freshness_checks_sensor"
    )

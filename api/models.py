"""Response models of the AI endpoints (units: forecasts in units per day, money in integer cents), and the
small types every router's response models share (see :mod:`api.routes` for the convention)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

# --- shared by the response models of every router ------------------------------------------------------

IsoTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""A time the store already wrote as ISO 8601 with its offset (``...+00:00``), passed through as is."""

Number = int | float
"""A figure that is an int or a float as computed (an int stays an int in the JSON, a float a float)."""


def _is_none(value: Any) -> bool:
    return value is None


def omitted_when_none(description: str | None = None) -> Any:
    """A key the endpoint leaves out instead of sending ``null`` (``None``: not in the answer)."""
    return Field(None, exclude_if=_is_none, description=description)


class FieldError(BaseModel):
    """One refused field and why (``lines.0.quantity``, ``payload.store_id``...)."""

    field: str
    message: str


class ForecastPoint(BaseModel):
    ds: date
    yhat: float | None
    lo_80: float | None
    hi_80: float | None
    lo_95: float | None
    hi_95: float | None


class ForecastAccuracy(BaseModel):
    """Hold-out accuracy of the forecasting method (last ``holdout_days`` days forecast from the days
    before): MASE (seasonal-naive scaled), WAPE, bias (sum(forecast - actual) / sum(actual)), coverage."""

    mase: float | None = None
    wape: float | None = None
    bias: float | None = None
    coverage_80: float | None = None
    coverage_95: float | None = None
    holdout_days: int | None = None
    n_series: int | None = None


class ProductForecast(BaseModel):
    product_id: str
    model: str | None
    cutoff: datetime | date | None
    pattern: str | None = None  # smooth, erratic, intermittent, lumpy
    confidence: float | None = None  # 0..1, see pipelines/defs/forecasting/demand.py confidence_score
    accuracy: ForecastAccuracy | None = None
    points: list[ForecastPoint]


class TotalForecast(BaseModel):
    """A store's (or, for admins, the chain's) daily total over its products, coherent with the series."""

    level: str  # "store" or "chain"
    key: str  # the store id, or "chain"
    accuracy: ForecastAccuracy | None = None
    points: list[ForecastPoint]


class ForecastResponse(BaseModel):
    snapshot_version: str
    snapshot_created_at: datetime
    store_id: str | None  # None: every store the caller may see
    horizon: int
    accuracy: ForecastAccuracy | None = None  # the store's forecasts as a whole
    series: list[ProductForecast]  # one per product, ordered by product_id (one store's forecast)
    # Without store_id: the daily totals of every store the caller may see (admins: the chain first).
    totals: list[TotalForecast] = []


class SalesAnomaly(BaseModel):
    store_id: str
    sale_date: date
    anomaly_score: float  # ensemble (ECOD + IForest rank average), in (0, 1]
    threshold: float | None = None
    severity: str | None = None
    # The views that fired: "features" (the ensemble and robust z-scores), "forecast_residual".
    detectors: list[str] = []
    drivers: list[str] = []  # features behind the anomaly, strongest first, then units/revenue_residual
    net_revenue_cents: int | float | None = None
    transactions: int | float | None = None
    avg_basket_cents: int | float | None = None
    refund_rate: float | None = None
    void_rate: float | None = None
    discount_rate: float | None = None
    max_abs_z: float | None = None  # largest robust z-score of the features (store and weekday norm)
    # The forecast's 95 % interval where the day has an out-of-sample forecast, else the norm's range.
    expected_revenue_lo_cents: float | None = None
    expected_revenue_hi_cents: float | None = None
    ecod_score: float | None = None  # raw pyod scores
    iforest_score: float | None = None
    units: int | None = None
    # Beyond the 95 % interval in half-widths (negative below it, 0 inside, null without a forecast).
    units_residual: float | None = None
    revenue_residual: float | None = None
    forecast_units: float | None = None
    forecast_units_lo_95: float | None = None
    forecast_units_hi_95: float | None = None
    forecast_revenue_cents: float | None = None
    forecast_revenue_lo_95_cents: float | None = None
    forecast_revenue_hi_95_cents: float | None = None


class FlaggedAnomaly(BaseModel):
    """What every robust-z detector reports: the largest z of the driving features, the threshold it was
    flagged at (a setting), the graded severity and the features beyond the driver threshold."""

    max_z: float
    z_threshold: float
    severity: str
    drivers: list[str] = []


class CashierAnomaly(FlaggedAnomaly):
    store_id: str
    cashier_id: str
    day: date
    anomaly_score: float | None = None  # ECOD, raw
    transactions: int | None = None
    refunds: int | None = None
    refund_cents: int | None = None
    voids: int | None = None
    expected_refunds_hi: float | None = None


class SecurityAnomaly(FlaggedAnomaly):
    source_ip: str
    day: date
    anomaly_score: float | None = None  # ECOD, raw
    events: int | None = None
    failures: int | None = None
    distinct_users: int | None = None
    failed_users: int | None = None
    events_per_minute: float | None = None


class InventoryAnomaly(FlaggedAnomaly):
    store_id: str
    product_id: str
    day: date  # of the shelf count
    expected_level: int  # previous count + recorded movements - units sold
    counted_level: int
    missing_units: int
    sold_units: int | None = None


class PerformanceAnomaly(FlaggedAnomaly):
    endpoint: str  # METHOD /route/template
    method: str
    route: str
    day: date  # of hour_start (UTC)
    hour_start: datetime  # the hour scored (UTC)
    anomaly_score: float  # raw: the larger robust z of p95 latency (log) and 5xx rate
    # drivers: latency_p95, error_rate
    requests: int
    errors_4xx: int | None = None
    errors_5xx: int
    error_rate_4xx: float | None = None
    error_rate_5xx: float
    latency_ms_mean: float | None = None
    latency_ms_p95: float
    baseline_hours: int | None = None  # earlier hours of the endpoint in the baseline
    expected_latency_p95_ms: float | None = None  # the baseline's median p95
    expected_latency_p95_hi_ms: float | None = None  # p95 at the threshold
    expected_error_rate: float | None = None
    expected_error_rate_hi: float | None = None
    z_latency: float | None = None
    z_error_rate: float | None = None


class AccessAnomaly(FlaggedAnomaly):
    """A user's or terminal's day of data access that departs from their own earlier days."""

    principal: str  # the username, or device:<store>/<device>
    principal_kind: str  # user | device
    role: str | None = None
    day: date  # local day (the store's timezone for a read of one store, else the chain's)
    anomaly_score: float  # raw: the largest robust z of the signals below
    # drivers: reads, distinct_stores, new_stores, off_hours_share
    reads: int
    distinct_stores: int
    new_stores: int
    stores: str | None = None  # comma-separated store ids read that day
    distinct_routes: int | None = None
    off_hours_reads: int | None = None
    off_hours_share: float
    source_ips: int | None = None
    baseline_days: int | None = None  # earlier active days of the principal in the baseline
    expected_reads: float | None = None  # the baseline's median
    expected_reads_hi: float | None = None  # reads at the threshold
    expected_stores: float | None = None
    expected_stores_hi: float | None = None
    expected_off_hours_share: float | None = None
    z_reads: float | None = None
    z_stores: float | None = None
    z_new_stores: float | None = None
    z_off_hours: float | None = None
    first_at: datetime | None = None  # first and last record of the day (UTC)
    last_at: datetime | None = None


class AnomaliesResponse(BaseModel):
    snapshot_version: str
    snapshot_created_at: datetime
    type: str = "sales"
    count: int
    anomalies: (
        list[SalesAnomaly]
        | list[CashierAnomaly]
        | list[SecurityAnomaly]
        | list[InventoryAnomaly]
        | list[PerformanceAnomaly]
        | list[AccessAnomaly]
    )


class Insight(BaseModel):
    insight_id: str
    category: str  # revenue, inventory, operations, customer_behaviour
    store_id: str | None
    subject: str | None
    title: str
    evidence: dict
    action: str
    impact_cents: float
    impact: float
    confidence: float
    urgency: float
    priority: float  # impact x confidence x urgency
    as_of: date


class InsightsResponse(BaseModel):
    snapshot_version: str
    snapshot_created_at: datetime
    count: int
    insights: list[Insight]


class StoreDashboard(BaseModel):
    store_id: str
    forecast_units_7d: float | None = Field(
        description="Units forecast for the next 7 days: the sum of the store total's daily yhat."
    )
    forecast_units_7d_lo_80: float | None = Field(
        description="Lower bound of an 80 % band of the 7-day total: total - factor x sqrt(sum of the daily "
        "lower half-widths squared) (independent days, widened by forecast_units_7d_band_factor because a "
        "store's daily errors are correlated), at least 0; the daily bounds summed when the snapshot has "
        "no factor. On the demo chain it holds 81.7 % of 120 out-of-sample store-weeks "
        "(bench/weekly_band.py), where the summed daily bounds held 94.2 % and plain independence 60.0 %."
    )
    forecast_units_7d_hi_80: float | None = Field(
        description="Upper bound of the same 80 % band: total + factor x sqrt(sum of the daily upper "
        "half-widths squared)."
    )
    forecast_units_7d_band_factor: float | None = Field(
        default=None,
        description="The factor on the independent-days half-widths, measured on the forecast_accuracy "
        "hold-out (split-conformal over the stores' 4 out-of-sample weeks: the share 0.8 of weekly errors "
        "fall within it); null when the snapshot predates it (then the bounds are the summed daily bounds).",
    )
    accuracy: ForecastAccuracy | None
    anomalies_7d: int
    products_to_reorder: int
    products_at_stockout_risk: int


class DashboardResponse(BaseModel):
    snapshot_version: str
    snapshot_created_at: datetime
    stores: list[StoreDashboard]
    top_insights: list[Insight]


class AIStatus(BaseModel):
    enabled: bool
    snapshot_version: str | None
    snapshot_created_at: datetime | None
    tables: dict[str, int]  # AI tables in the snapshot and their rows
    cache: dict[str, float | int]


class CacheCleared(BaseModel):
    cleared: int  # cached snapshot tables dropped in this process

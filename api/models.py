"""Response models of the AI endpoints (units: forecasts in units per day, money in integer cents)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


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


class ForecastResponse(BaseModel):
    snapshot_version: str
    snapshot_created_at: datetime
    store_id: str
    horizon: int
    accuracy: ForecastAccuracy | None = None  # the store's forecasts as a whole
    series: list[ProductForecast]  # one per product, ordered by product_id


class SalesAnomaly(BaseModel):
    store_id: str
    sale_date: date
    anomaly_score: float
    threshold: float | None = None
    severity: str | None = None
    drivers: list[str] = []  # features behind the anomaly, strongest first
    net_revenue_cents: int | float | None = None
    transactions: int | float | None = None
    avg_basket_cents: int | float | None = None
    refund_rate: float | None = None
    void_rate: float | None = None
    discount_rate: float | None = None


class AnomaliesResponse(BaseModel):
    snapshot_version: str
    snapshot_created_at: datetime
    count: int
    anomalies: list[SalesAnomaly]

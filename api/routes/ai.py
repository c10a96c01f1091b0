"""AI insight endpoints for managers and admins, read from the current serving snapshot.

Managers see only the stores assigned to them. ``AI_ANALYTICS_ENABLED=false`` turns the router off (503).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from api.deps import OptionalStoreIdQuery, SettingsDep
from api.models import (
    AIStatus,
    AnomaliesResponse,
    CacheCleared,
    DashboardResponse,
    ForecastResponse,
    InsightsResponse,
)
from api.queries import snapshots
from api.security.principals import AdminPrincipal, ManagerPrincipal, require_manager
from api.shared.state import SharedStateDep, clear_ai_cache
from chainsync import snapshot_contract as contract
from chainsync.serving import Snapshot
from chainsync.settings import Settings

HORIZONS = (7, 14, 30, 90)
Severity = Literal["low", "medium", "high", "critical"]  # as scored by the anomaly pipeline


def _check_horizon(value: int) -> int:
    if value not in HORIZONS:
        raise ValueError(f"must be one of {', '.join(map(str, HORIZONS))}")
    return value


# An int checked against the list (a Literal would refuse the query string "7" as not the int 7).
Horizon = Annotated[int, AfterValidator(_check_horizon)]


async def require_ai_enabled(settings: SettingsDep) -> None:
    if not settings.ai_analytics_enabled:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "AI analytics disabled")


# Authentication first (401/403), then the feature switch (503).
router = APIRouter(
    prefix="/ai", tags=["ai"], dependencies=[Depends(require_manager), Depends(require_ai_enabled)]
)
# GET /ai/status answers with the switch off too: it is where an admin sees ``enabled: false``.
status_router = APIRouter(prefix="/ai", tags=["ai"], dependencies=[Depends(require_manager)])


def _current(settings: Settings) -> Snapshot:
    snapshots.CACHE_TTL_SECONDS = float(settings.ai_model_cache_ttl)
    try:
        return snapshots.load_current(settings.serving)
    except snapshots.SnapshotUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


@router.get("/forecast")
def forecast(
    principal: ManagerPrincipal,
    settings: SettingsDep,
    store_id: OptionalStoreIdQuery = None,
    product_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    horizon: Annotated[Horizon, Query(description="Days ahead: 7, 14, 30 or 90.")] = 30,
) -> ForecastResponse:
    """Daily demand forecast (units per day, with 80% and 95% intervals): for one store, per product; or,
    without ``store_id``, the daily totals of every store the caller may see (a manager: their stores; an
    admin: the chain total, then every store)."""
    if store_id is not None:
        principal.require_store(store_id)  # authorization before anything is read
    snapshot = _current(settings)
    if store_id is None:
        if product_id is not None:
            # A validation error like any other 422: the documented body names the field.
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "product_id"),
                        "msg": "product_id needs a store_id",
                        "type": "value_error",
                    }
                ]
            )
        try:
            totals = snapshots.forecast_totals(snapshot, stores=principal.stores, horizon=horizon)
        except snapshots.SnapshotUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        return ForecastResponse.model_validate(
            {
                "snapshot_version": snapshot.version,
                "snapshot_created_at": snapshot.created_at,
                "store_id": None,
                "horizon": horizon,
                "series": [],
                "totals": totals,
            }
        )
    try:
        series = snapshots.demand_forecast(
            snapshot, store_id=store_id, horizon=horizon, product_id=product_id
        )
    except snapshots.SnapshotUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except snapshots.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return ForecastResponse.model_validate(
        {
            "snapshot_version": snapshot.version,
            "snapshot_created_at": snapshot.created_at,
            "store_id": store_id,
            "horizon": horizon,
            "accuracy": snapshots.store_accuracy(snapshot, store_id=store_id),
            "series": series,
        }
    )


AnomalyType = Literal["sales", "cashier", "security", "inventory", "performance", "access"]
# Chain-wide, not a store's (source IPs, endpoints, users and terminals reading data): for admins.
ADMIN_ANOMALY_TYPES = ("security", "performance", "access")
Category = Literal["revenue", "inventory", "operations", "customer_behaviour"]


@router.get("/anomalies")
def anomalies(
    principal: ManagerPrincipal,
    settings: SettingsDep,
    store_id: OptionalStoreIdQuery = None,
    since: Annotated[date | None, Query(description="Only days on or after this date.")] = None,
    severity: Annotated[Severity | None, Query(description="Only this severity.")] = None,
    type: Annotated[  # noqa: A002 - the query parameter's name
        AnomalyType,
        Query(
            description="sales (store-days), cashier (cashier shifts), inventory (shelf counts with stock "
            "missing), security (source IPs, admin), performance (API endpoint-hours with latency or "
            "error-rate degradation, admin) or access (users and terminals whose data access departs from "
            "their own history: volume, stores read, hours; admin)."
        ),
    ] = "sales",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AnomaliesResponse:
    """Flagged anomalies, newest first; managers see their stores only (security, performance and access
    anomalies are chain-wide, for admins)."""
    if store_id is not None:
        principal.require_store(store_id)
    if type in ADMIN_ANOMALY_TYPES and principal.stores is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{type.capitalize()} anomalies are for admins")
    if type in ADMIN_ANOMALY_TYPES and store_id is not None:
        # Source IPs, API endpoints and principals belong to no store: refuse the filter, not ignore it.
        # A validation error like any other 422: the documented body names the field.
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "store_id"),
                    "msg": f"store_id does not apply to {type} anomalies (chain-wide); leave it out",
                    "type": "value_error",
                }
            ]
        )
    snapshot = _current(settings)
    try:
        if type == "sales":
            rows = snapshots.sales_anomalies(
                snapshot,
                stores=principal.stores,
                store_id=store_id,
                since=since,
                severity=severity,
                limit=limit,
            )
        else:
            rows = snapshots.other_anomalies(
                snapshot,
                kind=type,
                stores=principal.stores,
                store_id=store_id,
                since=since,
                severity=severity,
                limit=limit,
            )
    except snapshots.SnapshotUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except snapshots.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return AnomaliesResponse.model_validate(
        {
            "snapshot_version": snapshot.version,
            "snapshot_created_at": snapshot.created_at,
            "type": type,
            "count": len(rows),
            "anomalies": rows,
        }
    )


@router.get("/insights")
def insights(
    principal: ManagerPrincipal,
    settings: SettingsDep,
    store_id: OptionalStoreIdQuery = None,
    category: Annotated[Category | None, Query(description="Only this category.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> InsightsResponse:
    """Recommendations ranked by priority (impact x confidence x urgency), each with evidence and an
    action; managers see their stores' insights."""
    if store_id is not None:
        principal.require_store(store_id)
    snapshot = _current(settings)
    try:
        rows = snapshots.insights(
            snapshot, stores=principal.stores, store_id=store_id, category=category, limit=limit
        )
    except snapshots.SnapshotUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    except snapshots.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return InsightsResponse.model_validate(
        {
            "snapshot_version": snapshot.version,
            "snapshot_created_at": snapshot.created_at,
            "count": len(rows),
            "insights": rows,
        }
    )


@router.get("/dashboard")
def dashboard(principal: ManagerPrincipal, settings: SettingsDep) -> DashboardResponse:
    """Per visible store: next week's forecast (bottom-up, 80 % band), accuracy, recent anomalies, reorder
    counts; and the five highest-priority insights."""
    snapshot = _current(settings)
    try:
        body = snapshots.dashboard(snapshot, stores=principal.stores)
    except snapshots.SnapshotUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return DashboardResponse.model_validate(
        {"snapshot_version": snapshot.version, "snapshot_created_at": snapshot.created_at, **body}
    )


AI_TABLES = contract.AI_TABLES  # the tables these endpoints serve, as the snapshot contract marks them


@status_router.get("/status")
def ai_status(principal: AdminPrincipal, settings: SettingsDep) -> AIStatus:
    """Admin: the snapshot serving the AI endpoints, its AI tables with row counts, and the cache (as it
    was before this request read the tables)."""
    cache = snapshots.cache_info()
    try:
        snapshot: Snapshot | None = snapshots.load_current(settings.serving)
    except snapshots.SnapshotUnavailable:
        snapshot = None
    tables: dict[str, int] = {}
    if snapshot is not None:
        for name in AI_TABLES:
            try:
                tables[name] = snapshots.read_table(snapshot, name).height
            except snapshots.SnapshotUnavailable:
                continue
    return AIStatus(
        enabled=settings.ai_analytics_enabled,
        snapshot_version=snapshot.version if snapshot else None,
        snapshot_created_at=snapshot.created_at if snapshot else None,
        tables=tables,
        cache=cache,
    )


@router.post("/cache/clear")
def cache_clear(principal: AdminPrincipal, shared: SharedStateDep) -> CacheCleared:
    """Admin: drop every cached snapshot table (the next request reads from disk), in every API process
    when they share Redis; ``cleared`` counts this process's."""
    return CacheCleared(cleared=clear_ai_cache(shared))

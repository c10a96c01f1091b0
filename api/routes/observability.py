"""Observability: health (anyone), metrics/config/WebSocket stats (admins), performance (managers+), and
``GET /metrics`` in the Prometheus text format (admins)."""

from __future__ import annotations

import weakref
from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, SecretStr, create_model
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, HubDep, MetricsDep, SettingsDep
from api.metrics import CONTENT_TYPE, process_stats
from api.models import IsoTime, Number
from api.queries.config import effective_config
from api.queries.health import ops_store_status
from api.queries.snapshots import SnapshotUnavailable, load_current
from api.queries.system import disk_free_bytes, pipeline_status, store_sizes
from api.routes import security_events
from api.security.principals import AdminPrincipal, ManagerPrincipal, require_admin
from api.ws.hub import Hub
from chainsync.settings import Settings

router = APIRouter(prefix="/observability", tags=["observability"])
router.include_router(security_events.router)  # GET /security/events (admins)
metrics_router = APIRouter(tags=["observability"])


@lru_cache(maxsize=1)
def app_version() -> str:
    try:
        return version("chainsync")
    except PackageNotFoundError:  # running from a source tree that was never installed
        from chainsync import __version__

        return __version__


class PipelineRun(BaseModel):
    run_id: str | None
    created_at: datetime


class PipelineFailure(BaseModel):
    run_id: str | None = None
    job: str | None = None
    recorded_at: datetime | None = None
    message: str | None = None


class SnapshotHealth(BaseModel):
    version: str
    created_at: datetime
    age_seconds: float


class Check(BaseModel):
    status: Literal["ok", "degraded", "failing"]
    detail: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    ops_store_reachable: bool
    schema_version: str | None
    snapshot: SnapshotHealth | None
    last_pipeline_run: PipelineRun | None
    last_pipeline_failure: PipelineFailure | None = None
    degraded: list[str] = []  # names of the checks that are not ok
    checks: dict[str, Check] = {}


class RouteStats(BaseModel):
    """Requests to one ``METHOD /route/template`` over the window (latencies in ms)."""

    requests: int
    rate_per_s: float
    p50_ms: Number
    p95_ms: Number
    p99_ms: Number
    max_ms: Number
    error_rate: float  # share answered 5xx
    client_error_rate: float  # share answered 4xx


class RequestSummary(BaseModel):
    window_seconds: Number
    requests: int
    rate_per_s: float
    p50_ms: Number
    p95_ms: Number
    p99_ms: Number
    error_rate: float


class RequestStats(RequestSummary):
    routes: dict[str, RouteStats]  # by METHOD /route/template


class IngestRate(BaseModel):
    window_seconds: Number
    events: int
    events_per_s: float
    by_type: dict[str, int]


class StoreSizes(BaseModel):
    """Bytes on disk (null: not a file this process can measure)."""

    ops_store: int | None
    warehouse: int | None
    serving: int | None


class LastSnapshot(BaseModel):
    version: str
    run_id: str | None
    created_at: IsoTime
    age_seconds: float
    events_seq: int | None  # the last ops-store event the run read
    tables: dict[str, int | None]  # rows per published table


class PipelineStats(BaseModel):
    last_failure: dict[str, Any] | None  # as the run-failure sensor recorded it (run_id, job, message...)
    failures_total: int
    snapshot_versions_kept: int
    last_snapshot: LastSnapshot | None


class ProcessStats(BaseModel):
    pid: int
    uptime_seconds: float
    cpu_seconds: float
    cpu_percent_avg: float
    memory_rss_bytes: int
    memory_peak_rss_bytes: int
    threads: int | None
    open_fds: int | None


class WebSocketTotals(BaseModel):
    connections: int
    messages_published_total: int
    messages_dropped_total: int


class ServiceMetrics(BaseModel):
    generated_at: IsoTime
    requests: RequestStats
    ingest: IngestRate
    store_sizes_bytes: StoreSizes
    disk_free_bytes: int | None
    pipeline: PipelineStats
    process: ProcessStats
    websocket: WebSocketTotals | None  # null without a WebSocket hub


class SlowEndpoint(RouteStats):
    endpoint: str  # METHOD /route/template


class Performance(RequestSummary):
    slowest: list[SlowEndpoint]  # by p95, slowest first
    endpoints: dict[str, RouteStats]  # by METHOD /route/template


class ChannelStats(BaseModel):
    subscribers: int
    published: int
    delivered: int
    dropped: int
    buffered: int  # kept for replay


class WebSocketStats(BaseModel):
    enabled: bool
    path: str
    connections: int
    max_connections: int
    max_connections_per_user: int
    users: int
    accepted_total: int
    rejected_total: dict[str, int]  # by reason
    closed_total: dict[str, int]  # by reason
    replayed_total: int
    last_seq: int
    fanout: str  # in-process, redis, redis-unavailable
    channels: dict[str, ChannelStats]
    messages_published_total: int
    messages_delivered_total: int
    messages_dropped_total: int


def _shown_type(annotation: Any) -> Any:
    """A setting's type as the configuration endpoint shows it: paths and secrets as strings, and any
    value may be the string ``[redacted]`` (see :mod:`api.queries.config`)."""
    args = getattr(annotation, "__args__", (annotation,))
    if SecretStr in args:
        return str | None  # redacted when set, else null
    if Path in args:
        return str if annotation is Path else str | None
    return annotation | str


# One field per setting, derived from the settings class so that a new setting is shown (and typed) here.
EffectiveConfig = create_model(  # type: ignore[call-overload]
    "EffectiveConfig",
    __doc__="Every setting's effective value, secrets and credentials redacted as ``[redacted]``.",
    **{name: (_shown_type(field.annotation), ...) for name, field in Settings.model_fields.items()},
    ops_store=(str, ...),
)


def _health(settings: Settings, engine: Any) -> tuple[Health, bool]:
    """The health body and whether the API can serve at all (ops store up, disk not critically full)."""
    store = ops_store_status(engine)
    checks: dict[str, Check] = {
        "ops_store": Check(status="ok")
        if store.reachable
        else Check(status="failing", detail="the ops store does not answer a query")
    }
    snapshot = run = failure = None
    now = datetime.now(UTC)
    try:
        current = load_current(settings.serving)
    except SnapshotUnavailable:
        checks["snapshot"] = Check(status="degraded", detail="no serving snapshot published yet")
    else:
        age = current.age_seconds(now)
        snapshot = SnapshotHealth(
            version=current.version, created_at=current.created_at, age_seconds=round(age, 3)
        )
        run = PipelineRun(run_id=current.manifest.get("run_id"), created_at=current.created_at)
        checks["snapshot"] = (
            Check(status="ok")
            if age <= settings.snapshot_stale_seconds
            else Check(status="degraded", detail=f"snapshot is {age / 3600:.1f} h old (stale)")
        )
    recorded = pipeline_status(settings).get("last_failure")
    if recorded:
        failure = PipelineFailure.model_validate({k: recorded.get(k) for k in PipelineFailure.model_fields})
        # A failure older than the current snapshot has been recovered from.
        recovered = (
            failure.recorded_at is not None and run is not None and failure.recorded_at <= run.created_at
        )
        checks["pipeline"] = (
            Check(status="ok")
            if recovered
            else Check(
                status="degraded",
                detail=f"last pipeline run failed ({failure.job or 'run'} {failure.run_id})",
            )
        )
    else:
        checks["pipeline"] = Check(status="ok")
    free = disk_free_bytes(settings)
    if free is None:
        checks["disk"] = Check(status="degraded", detail="free disk space unknown")
    else:
        free_mb = free / 2**20
        if free_mb < settings.disk_free_critical_mb:
            checks["disk"] = Check(status="failing", detail=f"{free_mb:.0f} MB free")
        elif free_mb < settings.disk_free_warn_mb:
            checks["disk"] = Check(status="degraded", detail=f"{free_mb:.0f} MB free")
        else:
            checks["disk"] = Check(status="ok")
    # Before the first pipeline run there is simply nothing to serve yet: not a fault of the API.
    not_ok = [
        name
        for name, c in checks.items()
        if c.status != "ok" and not (name == "snapshot" and snapshot is None)
    ]
    serving = all(c.status != "failing" for c in checks.values())
    body = Health(
        status="ok" if not not_ok else "degraded",
        version=app_version(),
        ops_store_reachable=store.reachable,
        schema_version=store.schema_version,
        snapshot=snapshot,
        last_pipeline_run=run,
        last_pipeline_failure=failure,
        degraded=not_ok,
        checks=checks,
    )
    return body, serving


@router.get("/health", responses={200: {"model": Health}, 503: {"model": Health}})
def health(settings: SettingsDep, engine: EngineDep) -> JSONResponse:
    """Liveness and freshness, without secrets, for a container health check: 200 while the API can
    serve (``status`` ``degraded`` names what is wrong in ``degraded``: a stale snapshot, a failed pipeline
    run, low disk), 503 when the ops store does not answer or the disk is critically full."""
    body, serving = _health(settings, engine)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if serving else 503)


def live_facts(settings: Settings, hub: Hub | None) -> dict[str, Any]:
    """What the scrape-time gauges read (also used by the JSON metrics)."""
    try:
        age: float | None = load_current(settings.serving).age_seconds()
    except SnapshotUnavailable:
        age = None
    return {
        "websocket": hub.snapshot_stats() if hub is not None else None,
        "snapshot_age_seconds": age,
        "store_sizes": store_sizes(settings),
        "disk_free_bytes": disk_free_bytes(settings),
    }


def live_source(settings: Settings, hub: Hub) -> Any:
    """A no-argument callable for :meth:`api.metrics.Metrics.set_live_source`."""
    return lambda: live_facts(settings, hub)


@router.get("/metrics", summary="Service metrics (JSON)")
async def metrics_json(
    settings: SettingsDep,
    metrics: MetricsDep,
    hub: HubDep,
    _admin: AdminPrincipal,
    window_seconds: int = Query(300, ge=10, le=24 * 3600, description="Look-back window in seconds"),
) -> ServiceMetrics:
    """Request rate, latency percentiles (ms) and error rate by route over the window; ingest rate;
    store sizes; pipeline run statistics; process CPU and memory; WebSocket totals."""
    facts = await run_in_threadpool(live_facts, settings, hub)
    pipeline = await run_in_threadpool(pipeline_status, settings)
    try:
        current = load_current(settings.serving)
        pipeline["last_snapshot"] = {
            "version": current.version,
            "run_id": current.manifest.get("run_id"),
            "created_at": current.created_at.isoformat(),
            "age_seconds": round(current.age_seconds(), 3),
            "events_seq": (current.manifest.get("pipeline") or {}).get("events_seq"),
            "tables": {n: t.get("rows") for n, t in current.manifest.get("tables", {}).items()},
        }
    except SnapshotUnavailable:
        pipeline["last_snapshot"] = None
    ws = facts["websocket"]
    return ServiceMetrics.model_validate(
        {
            "generated_at": datetime.now(UTC).isoformat(),
            "requests": metrics.window.by_route(window=window_seconds),
            "ingest": metrics.window.ingest_rate(window=window_seconds),
            "store_sizes_bytes": facts["store_sizes"],
            "disk_free_bytes": facts["disk_free_bytes"],
            "pipeline": pipeline,
            "process": process_stats(),
            "websocket": None
            if ws is None
            else {k: ws[k] for k in ("connections", "messages_published_total", "messages_dropped_total")},
        }
    )


@router.get("/performance", summary="Latency percentiles and the slowest endpoints")
async def performance(
    request: Request,
    metrics: MetricsDep,
    _manager: ManagerPrincipal,
    window_seconds: int = Query(300, ge=10, le=24 * 3600, description="Look-back window in seconds"),
    top: int = Query(5, ge=1, le=50, description="How many of the slowest endpoints to list"),
) -> Performance:
    """Overall and per-endpoint p50/p95/p99 latency (ms) over the window (the API keeps at most
    ``CHAINSYNC_PERFORMANCE_WINDOW_SECONDS``), and the ``top`` endpoints by p95. A manager is shown the
    endpoints a manager may call; admin-only endpoints are listed for admins alone."""
    summary = metrics.window.by_route(window=window_seconds)
    routes = summary.pop("routes")
    if _manager.role != "admin":
        hidden = admin_only_endpoints(request.app)
        routes = {name: stats for name, stats in routes.items() if name not in hidden}
    slowest = sorted(routes.items(), key=lambda kv: kv[1]["p95_ms"], reverse=True)[:top]
    return Performance.model_validate(
        {
            **summary,
            "slowest": [{"endpoint": name, **stats} for name, stats in slowest],
            "endpoints": routes,
        }
    )


def _requires_admin(dependant: Dependant) -> bool:
    return any(d.call is require_admin or _requires_admin(d) for d in dependant.dependencies)


# Per app, computed once: the routes do not change after start-up.
_admin_only: weakref.WeakKeyDictionary[FastAPI, frozenset[str]] = weakref.WeakKeyDictionary()


def admin_only_endpoints(app: FastAPI) -> frozenset[str]:
    """``METHOD /route`` of every endpoint whose dependencies require the admin role (read from the app's
    own routes, so a new admin endpoint is hidden from managers without a list to keep)."""
    cached = _admin_only.get(app)
    if cached is None:
        cached = frozenset(
            f"{method} {ctx.path_format}"
            for ctx in iter_route_contexts(app.routes)
            if isinstance(getattr(ctx, "dependant", None), Dependant) and _requires_admin(ctx.dependant)
            for method in ctx.methods or ()
        )
        _admin_only[app] = cached
    return cached


@router.get("/websocket/stats", summary="WebSocket connections, messages and drops by channel")
async def websocket_stats(settings: SettingsDep, hub: HubDep, _admin: AdminPrincipal) -> WebSocketStats:
    return WebSocketStats.model_validate(
        {"enabled": settings.ws_enabled, "path": settings.ws_path, **hub.snapshot_stats()}
    )


@router.get("/config", summary="Effective configuration, secrets redacted")
async def config(settings: SettingsDep, _admin: AdminPrincipal) -> EffectiveConfig:
    return EffectiveConfig.model_validate(effective_config(settings))


@metrics_router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(metrics: MetricsDep, _admin: AdminPrincipal) -> Response:
    """Prometheus text format: request counts and latency by route template, events ingested, process CPU
    and memory, WebSocket connections and messages by channel, snapshot age, store sizes, free disk."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)

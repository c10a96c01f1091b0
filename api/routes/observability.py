"""Health (anyone) and Prometheus metrics (admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import AdminPrincipal, EngineDep, SettingsDep
from api.metrics import CONTENT_TYPE
from api.queries.health import ops_store_status
from api.queries.snapshots import SnapshotUnavailable, load_current

router = APIRouter(prefix="/observability", tags=["observability"])
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


class SnapshotHealth(BaseModel):
    version: str
    created_at: datetime
    age_seconds: float


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    ops_store_reachable: bool
    schema_version: str | None
    snapshot: SnapshotHealth | None
    last_pipeline_run: PipelineRun | None


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(settings: SettingsDep, engine: EngineDep) -> JSONResponse:
    """Liveness and freshness, without secrets: 200 when the ops store answers a query, 503 otherwise."""
    store = ops_store_status(engine)
    snapshot = run = None
    try:
        current = load_current(settings.serving)
    except SnapshotUnavailable:
        pass
    else:
        now = datetime.now(UTC)
        snapshot = SnapshotHealth(
            version=current.version,
            created_at=current.created_at,
            age_seconds=round(current.age_seconds(now), 3),
        )
        run = PipelineRun(run_id=current.manifest.get("run_id"), created_at=current.created_at)
    body = Health(
        status="ok" if store.reachable else "degraded",
        version=app_version(),
        ops_store_reachable=store.reachable,
        schema_version=store.schema_version,
        snapshot=snapshot,
        last_pipeline_run=run,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if store.reachable else 503)


@metrics_router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(request: Request, _admin: AdminPrincipal) -> Response:
    """Prometheus text format: request counts and latency by route template, events ingested."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

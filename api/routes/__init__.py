"""Every router, collected once under ``/api``; ``/metrics`` sits at the root for Prometheus."""

from fastapi import APIRouter

from api.routes import admin, ai, auth, events, observability, sales, sync

api_router = APIRouter(prefix="/api")
api_router.include_router(auth.router)
api_router.include_router(events.router)
api_router.include_router(ai.router)
api_router.include_router(ai.status_router)
api_router.include_router(sales.router)
api_router.include_router(observability.router)
api_router.include_router(sync.router)
api_router.include_router(admin.router)

root_router = APIRouter()
root_router.include_router(observability.metrics_router)

__all__ = ["api_router", "root_router"]

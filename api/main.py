"""The ChainSync API: ``create_app()`` builds it (nothing is built at import time).

Run it with ``chainsync api`` (uvicorn ``api.main:create_app --factory``). This module must stay light:
the API never opens the warehouse, so it never imports dagster, duckdb or the model libraries.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.log import configure_logging, get_logger
from api.metrics import Metrics
from api.middleware import RequestContextMiddleware
from api.openapi import install_openapi
from api.request_log import RequestLog
from api.routes import api_router, root_router
from api.routes.observability import app_version, live_source
from api.routes.ws import websocket_router
from api.security.checks import address_refused
from api.security.device_keys import DeviceKeyCache
from api.security.firewall import FirewallMiddleware
from api.security.ipfilter import parse_address, parse_networks
from api.security.ratelimit import RateLimiter
from api.security.state import install_security_state
from api.server import LIFESPAN_KEY, PeerGate
from api.shared.state import SharedState, clear_ai_cache
from api.writer import InboxWriter, UploadWriter
from api.ws.feeds import Notifier
from api.ws.hub import Hub
from chainsync.demo_seed import disable_demo_users, seed_demo_users
from chainsync.ops_store import get_engine, schema_version
from chainsync.settings import Settings, SettingsError, get_settings

log = get_logger("api")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for ``settings`` (default: :func:`get_settings`).

    Start-up fails fast with a clear message when no JWT secret is configured outside demo mode; it then
    migrates the ops store and, in demo mode only, seeds the demo users."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    production = settings.environment == "production"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, PeerGate]]:
        try:
            settings.jwt_key()
        except SettingsError as exc:
            log.error("startup_failed", reason=str(exc))
            raise RuntimeError(f"ChainSync API cannot start: {exc}") from None
        engine = get_engine(settings.ops_store)
        app.state.engine = engine
        install_security_state(app, settings, engine)
        seeded = seed_demo_users(engine, settings)
        disabled = disable_demo_users(engine, settings)
        if disabled:
            log.warning(
                "demo_users_disabled",
                users=disabled,
                reason="demo mode is off and these users still had the demo password",
            )
        log.info(
            "startup",
            version=app_version(),
            environment=settings.environment,
            demo_mode=settings.demo_mode,
            schema_version=schema_version(engine),
            demo_users_created=seeded,
        )
        app.state.device_keys = DeviceKeyCache(engine, settings.revocation_cache_seconds)
        app.state.writer = InboxWriter(engine)
        app.state.writer.start()
        app.state.upload_writer = UploadWriter(engine)
        app.state.upload_writer.start()
        request_log = None
        if settings.request_log_enabled:
            request_log = RequestLog(engine, flush_seconds=settings.request_log_flush_seconds)
            request_log.start()
            app.state.metrics.request_log = request_log.observe
        app.state.request_log = request_log
        shared: SharedState | None = None
        if settings.redis_url:  # several API processes: fan-out, replay and pushes through Redis
            shared = SharedState.build(settings, app.state.hub, app.state.revoked_tokens, app.state.risk)
            await shared.start()
        app.state.shared = shared
        notifier = Notifier(
            app.state.hub,
            engine,
            app.state.metrics,
            settings.serving,
            poll_s=settings.notify_poll_seconds,
            metrics_s=settings.ws_metrics_interval_seconds,
            # A new snapshot makes the cached tables of the older ones dead weight, in every process.
            on_snapshot=lambda snapshot: clear_ai_cache(shared, keep_version=snapshot.version),
        )
        await notifier.start()
        # Everything built so far lives as long as the process: keep it out of the cyclic GC's full
        # collections, whose pauses otherwise grow with the size of the imported libraries.
        gc.freeze()
        try:
            # The server (api.server) closes a refused address's connection before reading a byte of it.
            yield {LIFESPAN_KEY: _peer_gate(app, settings)}
        finally:
            await notifier.stop()
            await app.state.writer.stop()
            await app.state.upload_writer.stop()
            if shared is not None:
                await shared.stop()
            if request_log is not None:
                app.state.metrics.request_log = None
                await asyncio.to_thread(request_log.stop)  # writes what is left, the current minute too

    app = FastAPI(
        title="ChainSync Analytics API",
        version=app_version(),
        lifespan=lifespan,
        docs_url=None if production else "/docs",
        redoc_url=None if production else "/redoc",
        openapi_url=None if production else "/openapi.json",
    )
    app.state.settings = settings
    app.state.metrics = Metrics(window_seconds=settings.performance_window_seconds)
    # The hub exists even with WS_ENABLED=false (publishing is then a cheap no-op for nobody).
    app.state.hub = Hub(
        replay_size=settings.ws_replay_buffer,
        max_connections=settings.ws_max_connections,
        per_user=settings.ws_max_connections_per_user,
    )
    app.state.metrics.set_live_source(live_source(settings, app.state.hub))
    install_error_handlers(app)
    app.state.ratelimiter = RateLimiter(settings)
    app.add_middleware(FirewallMiddleware, host=app)  # inside the request context (request ids, 413)
    app.add_middleware(
        RequestContextMiddleware, metrics=app.state.metrics, max_body_bytes=settings.max_body_bytes
    )
    app.include_router(api_router)
    app.include_router(root_router)
    app.include_router(websocket_router(settings.ws_path, enabled=settings.ws_enabled))
    install_openapi(app)
    return app


def _peer_gate(app: FastAPI, settings: Settings) -> PeerGate:
    """True for a peer the firewall refuses now; a trusted proxy is never refused here (its clients are
    judged by their forwarded address, in the firewall middleware)."""
    proxies = parse_networks(settings.trusted_proxies)

    def refuse(ip: str) -> bool:
        addr = parse_address(ip)
        if addr is not None and any(addr in net for net in proxies):
            return False
        return address_refused(app.state, ip) is not None

    return refuse

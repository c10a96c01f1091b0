"""Request context: a request id on every response, one structured access log line, request metrics,
the request body size limit (413, by Content-Length and by the streamed size), a generic JSON 500 for
unexpected exceptions (logged with their traceback, never sent), and the security headers every response
carries (``X-Content-Type-Options: nosniff``; ``Cache-Control: no-store`` on the API's answers, which hold
store figures, tokens and the audit trail, unless a route set its own)."""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

import structlog
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.log import get_logger
from api.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_NO_STORE_PREFIXES = ("/api/", "/metrics")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

log = get_logger("api.access")

# Request ids: a random prefix per process and a counter (unique across processes and restarts for
# practical purposes), instead of a uuid4 per request: reading the OS's randomness on every request was
# among the profile's top entries under load.
_RID_PREFIX = os.urandom(6).hex()
_rid_counter = itertools.count(1)


def _new_prefix() -> None:
    global _RID_PREFIX, _rid_counter  # a forked worker must not repeat its parent's ids
    _RID_PREFIX, _rid_counter = os.urandom(6).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    """A fresh request id: 12 hex characters of this process's random prefix, then a counter in hex."""
    return f"{_RID_PREFIX}{next(_rid_counter):012x}"


def route_templates(app: Any) -> dict[int, str]:
    """Full path templates by route object id. Since FastAPI 0.137 an included router is matched lazily
    and ``scope["route"].path`` lacks the outer prefixes, so the full template comes from here."""
    return {id(ctx.original_route): ctx.path_format or "" for ctx in iter_route_contexts(app.routes)}


def route_template(scope: Scope, templates: dict[int, str]) -> str:
    """The matched route's path template (bounded label cardinality), or ``unmatched``."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    return templates.get(id(route)) or getattr(route, "path", None) or "unmatched"


def route_template_of(scope: Scope) -> str:
    """The full route template of a request being handled (for messages; cached by the middleware)."""
    return route_template(scope, route_templates(scope["app"]))


class BodyTooLarge(Exception):
    """The request body is larger than ``max_body_bytes`` (declared or streamed)."""


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._templates: dict[int, str] | None = None

    def _route(self, scope: Scope) -> str:
        if self._templates is None:
            self._templates = route_templates(scope["app"])
        return route_template(scope, self._templates)

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that raises :class:`BodyTooLarge` once the streamed body passes the limit."""
        limit = self.max_body_bytes
        if limit is None:
            return receive
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        return receive_limited

    def _declared_too_large(self, headers: Headers) -> bool:
        if self.max_body_bytes is None:
            return False
        declared = headers.get("content-length", "")
        return declared.isdigit() and int(declared) > self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _VALID_REQUEST_ID.match(incoming) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status_code = 500
        response_started = False
        no_store = scope["path"].startswith(_NO_STORE_PREFIXES)

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                out = MutableHeaders(scope=message)
                out[REQUEST_ID_HEADER] = rid
                out["X-Content-Type-Options"] = "nosniff"
                if no_store and "cache-control" not in out:
                    out["Cache-Control"] = "no-store"
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                if self._declared_too_large(headers):
                    raise BodyTooLarge  # refused before reading a byte
                await self.app(scope, self._limited(receive), send_with_id)
            except BodyTooLarge:
                if response_started:
                    raise
                response = JSONResponse(
                    {"detail": f"Request body exceeds {self.max_body_bytes} bytes", "request_id": rid},
                    status_code=413,
                )
                await response(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled_error", method=scope["method"], route=self._route(scope))
                if response_started:
                    raise
                status_code = 500
                response = JSONResponse(
                    {"detail": "Internal server error", "request_id": rid},
                    status_code=500,
                    headers={REQUEST_ID_HEADER: rid},
                )
                await response(scope, receive, send)
            finally:
                seconds = time.perf_counter() - started
                route = self._route(scope)
                self.metrics.observe_request(scope["method"], route, status_code, seconds)
                log.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status_code,
                    duration_ms=round(seconds * 1000, 2),
                )

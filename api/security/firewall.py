"""The request firewall: client address, IP lists, risk blocks, per-address rate limits, the input
scanner (:mod:`api.security.scanner`) on the URL and body, and the audit of what the response says
(401/403/404/422, sensitive reads).

Runs inside :class:`api.middleware.RequestContextMiddleware`, so its answers carry a request id. Per-user
and per-device limits need the authenticated caller and live in :func:`api.security.checks.check_principal`,
called by the authentication dependency.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.log import get_logger
from api.middleware import route_template_of
from api.security.audit import Auditor
from api.security.auth_trail import AuthFailureTrail, presented_credential
from api.security.checks import reread_if_stale
from api.security.ipfilter import IpFilter, parse_networks, resolve_client_ip
from api.security.ratelimit import RateLimiter
from api.security.risk import RiskEngine
from api.security.sampling import InboxSampler
from api.security.scanner import suspicious_body, suspicious_text
from chainsync import data_access

log = get_logger("api.security.firewall")


_SCANNED_TYPES = ("application/json", "application/x-www-form-urlencoded")
_SCAN_INLINE_BYTES = 64 * 1024  # bigger bodies are parsed on a worker thread, off the event loop

# Reads worth a data-access record (bulk downloads, the audit trail, configuration, user admin, the
# operator's views of the system). Every write by a user (not a terminal's ingest) is one as well.
SENSITIVE_PREFIXES = (
    "/api/admin",
    "/api/observability/security",
    "/api/observability/config",
    "/api/observability/metrics",
    "/api/observability/websocket",
    "/api/ai/status",
    "/api/ai/cache",
    "/api/sync/download",
    "/metrics",
)
_READ_METHODS = ("GET", "HEAD", "OPTIONS")
LOGIN_PATHS = ("/api/auth/token", "/api/auth/refresh", "/api/auth/2fa")
_QUIET_SECONDS = 60.0  # one audit record per address and kind of refusal per minute, not one per request


def _replay(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app once (or the disconnect that cut it
    short), then the client's own messages."""
    pending: list[Message] = [ended] if ended is not None else []
    pending.insert(0, {"type": "http.request", "body": body, "more_body": False})

    async def receive_again() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return receive_again


class FirewallMiddleware:
    def __init__(self, app: ASGIApp, *, host: Any) -> None:
        """``host`` is the FastAPI app, whose ``state`` holds the settings, firewall parts and auditor."""
        self.app = app
        self.host = host
        settings = host.state.settings
        self._trusted = parse_networks(settings.trusted_proxies)
        self._last_audit: dict[tuple[str, str], float] = {}
        self._inbox_sampler = InboxSampler(
            settings.validation_inbox_burst,
            settings.validation_inbox_per_address_minute,
            settings.validation_inbox_per_minute,
        )

    def _quiet(self, ip: str, kind: str) -> bool:
        """True when a record of ``kind`` for ``ip`` was written in the last minute."""
        now = time.monotonic()
        key = (ip, kind)
        if now - self._last_audit.get(key, -1e9) < _QUIET_SECONDS:
            return True
        if len(self._last_audit) > 10_000:
            self._last_audit.clear()
        self._last_audit[key] = now
        return False

    async def _record(self, scope: Scope, **fields: Any) -> None:
        auditor: Auditor = self.host.state.auditor
        headers = Headers(scope=scope)
        fields.setdefault("user_agent", headers.get("user-agent"))
        fields.setdefault("method", scope.get("method"))
        await run_in_threadpool(lambda: auditor.record(**fields))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = self.host.state
        ip = resolve_client_ip(scope, self._trusted)
        scope.setdefault("state", {})["client_ip"] = ip
        path: str = scope.get("path", "")
        ipfilter: IpFilter = state.ipfilter
        risk: RiskEngine = state.risk
        settings = state.settings

        refusal = await self._refusal(scope, ip or "unknown", path, ipfilter, risk, settings)
        if refusal is not None:
            if scope["type"] == "websocket":
                await self._refuse_websocket(receive, send, refusal.status_code)
            else:
                await refusal(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        query = scope.get("query_string", b"").decode("latin-1")
        fragment = suspicious_text(f"{path}?{query}")
        if fragment is not None:
            await self._suspicious(scope, ip, path, risk, f"pattern {fragment!r}")
        elif self._scannable(scope, settings.input_scan_max_bytes):
            # Read the body (through the size cap: past it BodyTooLarge still answers 413), scan its string
            # values, and hand the same bytes to the route.
            body, ended = await _read_body(receive)
            receive = _replay(body, ended, receive)
            if len(body) <= settings.input_scan_max_bytes:
                content_type = Headers(scope=scope).get("content-type", "")
                if len(body) > _SCAN_INLINE_BYTES:
                    hit = await run_in_threadpool(suspicious_body, body, content_type)
                else:
                    hit = suspicious_body(body, content_type)
                if hit is not None:
                    field, found = hit
                    what = (
                        f"pattern {found!r}"
                        if found is not None
                        else "a pattern (secret field, not recorded)"
                    )
                    await self._suspicious(scope, ip, path, risk, f"{what} in body field {field}")

        status_code = 0

        async def send_watch(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        await self.app(scope, receive, send_watch)
        await self._after(scope, ip, path, status_code, risk)

    async def _refuse_websocket(self, receive: Receive, send: Send, status_code: int) -> None:
        """Accept, then close with the notifications protocol's code (4403 refused address, 4429 rate
        limited), so a browser client sees why; nothing else is sent."""
        hub = getattr(self.host.state, "hub", None)
        if hub is not None:
            hub.stats.rejected["ip_blocked" if status_code == 403 else "rate_limited"] += 1
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        code, reason = (4429, "rate limited") if status_code == 429 else (4403, "address not allowed")
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": reason})

    @staticmethod
    def _scannable(scope: Scope, limit: int) -> bool:
        """A JSON or form body that may be scanned: a method with a body, a declared length (if any) within
        ``limit``, body scanning on (``limit`` > 0)."""
        if limit <= 0 or scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
            return False
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").lower()
        if not (content_type.startswith(_SCANNED_TYPES) or "+json" in content_type.split(";")[0]):
            return False
        declared = headers.get("content-length", "")
        return not (declared.isdigit() and int(declared) > limit) and declared != "0"

    async def _suspicious(self, scope: Scope, ip: str | None, path: str, risk: RiskEngine, what: str) -> None:
        """Score and audit one request whose input looks like an attack (``what`` says where and which)."""
        decision = await run_in_threadpool(risk.observe, ip, "suspicious_input")
        await self._record(
            scope,
            kind="suspicious_input",
            outcome="failure",
            source_ip=ip,
            route=path[:200],
            risk_score=decision.risk_score,
            severity=decision.severity if decision.enforced else "warning",
            detail=f"{scope['method']} {path[:200]}: {what}"[:900]
            + (f"; {decision.reason}" if decision.reason else ""),
        )

    async def _refused(self, scope: Scope, ip: str, path: str, quiet_key: str, **fields: Any) -> None:
        """Audit a refusal of ``ip`` (or, in dry run, the refusal it would have been) as a warning, once per
        quiet period and ``quiet_key`` so a flood of refused requests does not flood the trail."""
        if not self._quiet(ip, quiet_key):
            await self._record(scope, source_ip=ip, route=path[:200], severity="warning", **fields)

    async def _refusal(
        self, scope: Scope, ip: str, path: str, ipfilter: IpFilter, risk: RiskEngine, settings: Any
    ) -> JSONResponse | None:
        listed = ipfilter.decide(ip)
        if listed.verdict != "allowed":
            why = "deny list" if listed.verdict == "denied" else "not on the allowlist"
            dry = settings.security_dry_run
            await self._refused(
                scope,
                ip,
                path,
                "ip_list_dry" if dry else "ip_list",
                kind="ip_blocked",
                outcome="failure" if dry else "blocked",
                detail=f"{why}; dry run, not refused" if dry else f"refused: {why}",
            )
            if not dry:
                return JSONResponse(
                    {"detail": "Address not allowed", "request_id": _rid(scope)},
                    status_code=status.HTTP_403_FORBIDDEN,
                )
        await reread_if_stale(risk)  # blocks and unblocks made by the other API processes
        blocked = risk.blocked_for(ip)
        if blocked:
            await self._refused(
                scope,
                ip,
                path,
                "banned",
                kind="ip_blocked",
                outcome="blocked",
                risk_score=round(risk.ip_score(ip), 2),
                detail=f"refused: address blocked for {blocked} more seconds",
            )
            return JSONResponse(
                {
                    "detail": "Too many suspicious requests from this address; try again later",
                    "request_id": _rid(scope),
                },
                status_code=status.HTTP_403_FORBIDDEN,
                headers={"Retry-After": str(blocked)},
            )
        limiter: RateLimiter = self.host.state.ratelimiter
        exceeded = await limiter.hit("ip", ip)
        if exceeded is None and path.startswith(LOGIN_PATHS) and scope.get("method") == "POST":
            exceeded = await limiter.hit("login", ip)
        if exceeded is not None:
            decision = await run_in_threadpool(risk.observe, ip, "rate_limited")
            await self._refused(
                scope,
                ip,
                path,
                f"rate_{exceeded.scope}",
                kind="rate_limited",
                outcome="blocked",
                risk_score=decision.risk_score,
                detail=f"{exceeded.scope} limit {exceeded.limit} exceeded",
            )
            return _too_many(exceeded.retry_after, exceeded.scope, _rid(scope))
        return None

    async def _after(
        self, scope: Scope, ip: str | None, path: str, status_code: int, risk: RiskEngine
    ) -> None:
        principal = (scope.get("state") or {}).get("principal")
        actor = getattr(principal, "subject", None)
        role = getattr(principal, "role", None)
        if status_code == 401 and not path.startswith(LOGIN_PATHS):
            headers = Headers(scope=scope)
            what = presented_credential(headers.get("authorization"), headers.get("x-api-key"))
            if what is None:  # nothing presented: not an attempt, but still a probing signal
                await run_in_threadpool(risk.observe, ip, "bad_credentials")
            else:
                trail: AuthFailureTrail = self.host.state.auth_failures
                await trail.record(
                    ip=ip,
                    what=what,
                    channel="HTTP",
                    method=scope["method"],
                    route=route_template_of(scope),
                    user_agent=headers.get("user-agent"),
                )
        elif status_code == 403 and principal is not None:
            await run_in_threadpool(risk.observe, ip, "authorization_denied")
        elif status_code == 404:
            await run_in_threadpool(risk.observe, ip, "not_found")
        elif status_code == 422:
            # A burst of validation failures from one address is a probing signal the pipeline should see,
            # so they reach the event inbox too, sampled (InboxSampler) so a flood cannot fill it.
            decision = await run_in_threadpool(risk.observe, ip, "validation_failure")
            held_back = self._inbox_sampler.admit(ip or "unknown")
            detail = f"{scope['method']} {route_template_of(scope)} answered 422"
            if held_back:
                detail += f"; {held_back} earlier from this address not in the event inbox"
            await self._record(
                scope,
                kind="validation_failure",
                outcome="failure",
                inbox=held_back is not None,
                source_ip=ip,
                username=None if role == "device" else actor,
                actor=actor,
                role=role,
                route=route_template_of(scope),
                risk_score=decision.risk_score,
                detail=detail,
            )
        elif (
            200 <= status_code < 300
            and principal is not None
            and (
                path.startswith(SENSITIVE_PREFIXES)
                or (role != "device" and path.startswith(data_access.STORE_DATA_PREFIXES))
                or (
                    scope["method"] not in _READ_METHODS
                    and role != "device"
                    and not path.startswith(LOGIN_PATHS + ("/api/auth/logout",))
                )
            )
        ):
            # Audit trail only: an authorised read or write is no risk signal, and not a kind the pipeline
            # knows (logins and logouts have authentication records of their own).
            await self._record(
                scope,
                kind="data_access",
                outcome="success",
                source_ip=ip,
                username=None if role == "device" else actor,
                actor=actor,
                role=role,
                route=route_template_of(scope),
                detail=data_access.describe(scope["method"], path, _store_read(scope, principal)),
            )


def _store_read(scope: Scope, principal: Any) -> str | None:
    """The one store a request read (its ``store_id`` query parameter, or a terminal's own store), for the
    data-access record; None for a chain-wide read."""
    if getattr(principal, "role", None) == "device" and principal.stores:
        return str(next(iter(principal.stores)))
    query = scope.get("query_string", b"").decode("latin-1")
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "store_id"]
    return values[-1] if values else None


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole request body, and the message that ended it early (a disconnect) if one did.
    ``receive`` is the request context's, which raises past the size cap."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _rid(scope: Scope) -> str | None:
    return (scope.get("state") or {}).get("request_id")


def _too_many(retry_after: int, scope_name: str, rid: str | None) -> JSONResponse:
    return JSONResponse(
        {"detail": f"Rate limit exceeded ({scope_name}); retry after {retry_after} s", "request_id": rid},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after)},
    )

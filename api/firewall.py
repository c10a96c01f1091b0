"""The request firewall: client address, IP lists, risk blocks, per-address rate limits, suspicious-input
detection, and the audit of what the response says (401/403/404/422, sensitive reads).

Runs inside :class:`api.middleware.RequestContextMiddleware`, so its answers carry a request id. Per-user
and per-device limits need the authenticated caller and live in :func:`check_principal`, called by the
authentication dependency.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal
from urllib.parse import unquote_plus

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import Auditor
from api.ipfilter import IpFilter, parse_networks, resolve_client_ip
from api.log import get_logger
from api.middleware import route_template_of
from api.ratelimit import RateLimiter
from api.risk import RiskEngine

log = get_logger("api.firewall")

# Input that looks like SQL injection, script injection, path traversal or a null byte. Detection only:
# validation and parameterised SQL are the defence; a match scores the address and is audited.
SUSPICIOUS = re.compile(
    r"(<\s*script|javascript:|on(error|load)\s*=|<\s*iframe|"
    r"\bunion\b[\s\S]{0,20}\bselect\b|'\s*or\s+'?\d+'?\s*=\s*'?\d|;\s*drop\s+table|--\s*$|"
    r"\.\./|\.\.\\|\x00|\bsleep\s*\(\s*\d|\$\{jndi:)",
    re.IGNORECASE,
)

# Reads worth a data-access record (bulk downloads, the audit trail, configuration, user admin).
SENSITIVE_PREFIXES = (
    "/api/admin",
    "/api/observability/security",
    "/api/observability/config",
    "/api/sync/download",
)
LOGIN_PATHS = ("/api/auth/token", "/api/auth/refresh", "/api/auth/2fa")
_QUIET_SECONDS = 60.0  # one audit record per address and kind of refusal per minute, not one per request


def suspicious_text(text: str) -> str | None:
    """The fragment of ``text`` (URL-decoded) that looks like an attack, or None."""
    match = SUSPICIOUS.search(unquote_plus(text))
    return match.group(0)[:64] if match else None


class FirewallMiddleware:
    def __init__(self, app: ASGIApp, *, host: Any) -> None:
        """``host`` is the FastAPI app, whose ``state`` holds the settings, firewall parts and auditor."""
        self.app = app
        self.host = host
        self._trusted = parse_networks(host.state.settings.trusted_proxies)
        self._last_audit: dict[tuple[str, str], float] = {}

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
                await send({"type": "websocket.close", "code": 1008, "reason": "address not allowed"})
            else:
                await refusal(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        query = scope.get("query_string", b"").decode("latin-1")
        fragment = suspicious_text(f"{path}?{query}")
        if fragment is not None:
            decision = await run_in_threadpool(risk.observe, ip, "suspicious_input")
            await self._record(
                scope,
                kind="suspicious_input",
                outcome="failure",
                source_ip=ip,
                route=path[:200],
                risk_score=decision.risk_score,
                severity=decision.severity if decision.enforced else "warning",
                detail=f"{scope['method']} {path[:200]}: pattern {fragment!r}"
                + (f"; {decision.reason}" if decision.reason else ""),
            )

        status_code = 0

        async def send_watch(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        await self.app(scope, receive, send_watch)
        await self._after(scope, ip, path, status_code, risk)

    async def _refusal(
        self, scope: Scope, ip: str, path: str, ipfilter: IpFilter, risk: RiskEngine, settings: Any
    ) -> JSONResponse | None:
        listed = ipfilter.decide(ip)
        if listed.verdict != "allowed":
            why = "deny list" if listed.verdict == "denied" else "not on the allowlist"
            if settings.security_dry_run:
                if not self._quiet(ip, "ip_list_dry"):
                    await self._record(
                        scope,
                        kind="ip_blocked",
                        outcome="failure",
                        source_ip=ip,
                        route=path[:200],
                        severity="warning",
                        detail=f"{why}; dry run, not refused",
                    )
            else:
                if not self._quiet(ip, "ip_list"):
                    await self._record(
                        scope,
                        kind="ip_blocked",
                        outcome="blocked",
                        source_ip=ip,
                        route=path[:200],
                        severity="warning",
                        detail=f"refused: {why}",
                    )
                return JSONResponse(
                    {"detail": "Address not allowed", "request_id": _rid(scope)},
                    status_code=status.HTTP_403_FORBIDDEN,
                )
        blocked = risk.blocked_for(ip)
        if blocked:
            if not self._quiet(ip, "banned"):
                await self._record(
                    scope,
                    kind="ip_blocked",
                    outcome="blocked",
                    source_ip=ip,
                    route=path[:200],
                    severity="warning",
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
        exceeded = limiter.hit("ip", ip)
        if exceeded is None and path.startswith(LOGIN_PATHS) and scope.get("method") == "POST":
            exceeded = limiter.hit("login", ip)
        if exceeded is not None:
            decision = await run_in_threadpool(risk.observe, ip, "rate_limited")
            if not self._quiet(ip, f"rate_{exceeded.scope}"):
                await self._record(
                    scope,
                    kind="rate_limited",
                    outcome="blocked",
                    source_ip=ip,
                    route=path[:200],
                    risk_score=decision.risk_score,
                    severity="warning",
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
            await run_in_threadpool(risk.observe, ip, "bad_credentials")
        elif status_code == 403 and principal is not None:
            await run_in_threadpool(risk.observe, ip, "authorization_denied")
        elif status_code == 404:
            await run_in_threadpool(risk.observe, ip, "not_found")
        elif status_code == 422:
            decision = await run_in_threadpool(risk.observe, ip, "validation_failure")
            await self._record(
                scope,
                kind="validation_failure",
                outcome="failure",
                inbox=False,
                source_ip=ip,
                username=None if role == "device" else actor,
                actor=actor,
                role=role,
                route=route_template_of(scope),
                risk_score=decision.risk_score,
                detail=f"{scope['method']} {route_template_of(scope)} answered 422",
            )
        elif 200 <= status_code < 300 and path.startswith(SENSITIVE_PREFIXES) and principal is not None:
            await self._record(
                scope,
                kind="data_access",
                outcome="success",
                source_ip=ip,
                username=None if role == "device" else actor,
                actor=actor,
                role=role,
                route=route_template_of(scope),
                detail=f"{scope['method']} {path[:200]}",
            )


def _rid(scope: Scope) -> str | None:
    return (scope.get("state") or {}).get("request_id")


def _too_many(retry_after: int, scope_name: str, rid: str | None) -> JSONResponse:
    return JSONResponse(
        {"detail": f"Rate limit exceeded ({scope_name}); retry after {retry_after} s", "request_id": rid},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after)},
    )


async def check_principal(request: Request, principal: Any) -> None:
    """Per-user and per-device rate limits and access-token revocation, for an authenticated caller.

    Raises 429 (with ``Retry-After``) or 401 (a token revoked by logout)."""
    state = request.app.state
    request.state.principal = principal
    token_id = getattr(principal, "token_id", None)
    revoked = getattr(state, "revoked_tokens", None)
    if token_id and revoked is not None and token_id in revoked:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Token has been revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    limiter: RateLimiter | None = getattr(state, "ratelimiter", None)
    if limiter is None:
        return
    scope_name: Literal["device", "user"] = "device" if principal.role == "device" else "user"
    exceeded = limiter.hit(scope_name, principal.subject)
    if exceeded is not None:
        ip = request.scope.get("state", {}).get("client_ip")
        auditor: Auditor | None = getattr(state, "auditor", None)
        if auditor is not None:
            record = auditor.record
            await run_in_threadpool(
                lambda: record(
                    kind="rate_limited",
                    outcome="blocked",
                    username=None if principal.role == "device" else principal.subject,
                    actor=principal.subject,
                    role=principal.role,
                    source_ip=ip,
                    user_agent=request.headers.get("user-agent"),
                    method=request.method,
                    route=request.url.path[:200],
                    severity="warning",
                    detail=f"{scope_name} limit {exceeded.limit} exceeded",
                )
            )
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Rate limit exceeded ({scope_name}); retry after {exceeded.retry_after} s",
            headers={"Retry-After": str(exceeded.retry_after)},
        )


def install_security_state(app: Any, settings: Any, engine: Any) -> None:
    """Build the firewall's parts on ``app.state`` once the ops store is open (at start-up): the IP
    lists (settings plus admin rules), the risk engine (reputations restored), the auditor, and the set
    of access tokens revoked by logout (in memory: access tokens live minutes; refresh families are
    revoked in the store)."""
    app.state.ipfilter = IpFilter(settings, engine)
    app.state.risk = RiskEngine(settings, engine, app.state.ipfilter)
    app.state.auditor = Auditor(engine, settings)
    app.state.revoked_tokens = set()

"""The request firewall: client address, IP lists, risk blocks, per-address rate limits, suspicious-input
detection (URL, and the string values of JSON and form bodies), and the audit of what the response says
(401/403/404/422, sensitive reads).

Runs inside :class:`api.middleware.RequestContextMiddleware`, so its answers carry a request id. Per-user
and per-device limits need the authenticated caller and live in :func:`check_principal`, called by the
authentication dependency.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, unquote_plus

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import Auditor
from api.auth_trail import AuthFailureTrail, presented_credential
from api.ipfilter import IpFilter, parse_networks, resolve_client_ip
from api.log import get_logger
from api.middleware import route_template_of
from api.ratelimit import RateLimiter
from api.risk import RiskEngine
from api.sampling import InboxSampler
from api.security import RevokedTokens, totp_cipher
from chainsync import data_access

log = get_logger("api.firewall")

# Input that looks like SQL injection, script injection, path traversal or a null byte. Detection only:
# validation and parameterised SQL are the defence; a match scores the address and is audited.
# One pattern each, matched against the lowercased text: each has a literal start the regex engine scans
# for quickly, which one alternation of them all does not (about 20 times slower on a 300 KiB batch).
# ``union … select`` only as SQL writes it (blanks, brackets or /* comments */ of at most 64 characters
# between), so a product called "Union Jack Select Tea" is not an attack. Linear work whatever the input:
# no quantifier nests in another that can match the same text two ways (the separators' loop is possessive,
# a comment ends at its first ``*/``), and a comment is bounded, so an unclosed ``/*`` after each of many
# ``union``s is not scanned to the end of the text from each (tests/api/test_security.py, pathological).
_ATTACK_PATTERNS = (
    r"<\s*(?:script|iframe)",
    r"javascript:",
    r"on(?:error|load)\s*=",
    r"union(?:\s|\(|/\*(?:[^*]|\*(?!/)){0,64}\*/)++(?:all\s+|distinct\s+)?\(*select\b",
    r"'\s*or\s+'?\d+'?\s*=\s*'?\d",
    r";\s*drop\s+table",
    r"--\s*$",
    r"\.\.[/\\]",
    r"\x00",
    r"sleep\s*\(\s*\d",
    r"\$\{jndi:",
)
ATTACKS = tuple(re.compile(p, re.DOTALL) for p in _ATTACK_PATTERNS)


def _ending_at(end: str) -> tuple[re.Pattern[str], ...]:
    """The patterns with "end of the text" (a trailing ``$``) also matching before ``end``."""
    return tuple(
        re.compile(p[:-1] + f"(?:{end}|$)" if p.endswith("$") and not p.endswith("\\$") else p, re.DOTALL)
        for p in _ATTACK_PATTERNS
    )


# Cheap first looks at a whole body (a match is then confirmed value by value): the raw JSON text when it
# has no backslash (every string as written, ending at a quote), else all values joined by U+FFFF.
_JOIN = "\uffff"
_ATTACKS_IN_RAW_JSON = _ending_at('"')
_ATTACKS_IN_JOINED = _ending_at(_JOIN)
# Body fields whose values are secrets: scanned, but a hit records the field's name only (never a fragment).
SECRET_FIELD = re.compile(r"pass|secret|token|otp|code|key|authorization", re.IGNORECASE)
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


def find_attack(text: str, patterns: tuple[re.Pattern[str], ...] = ATTACKS) -> str | None:
    """The (lowercased) fragment of ``text`` that looks like an attack, or None."""
    lowered = text.lower()
    for pattern in patterns:
        match = pattern.search(lowered)
        if match is not None:
            return match.group(0)[:64]
    return None


def suspicious_text(text: str) -> str | None:
    """The fragment of ``text`` (URL-decoded) that looks like an attack, or None."""
    return find_attack(unquote_plus(text))


def _string_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(field path, text)`` for every string in a parsed JSON document, depth first, in order. Keys are
    strings too (a key can carry a payload)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            yield where or "(body)", node
        elif isinstance(node, dict):
            children = []
            for key, child in node.items():
                child_path = f"{where}.{key}" if where else str(key)
                yield child_path, str(key)
                children.append((child_path, child))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{where}.{i}" if where else str(i), c) for i, c in enumerate(node)]))


def _strings(document: Any) -> list[str]:
    """Every string (values and keys) of a parsed JSON document, in no particular order."""
    out: list[str] = []
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            out.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def suspicious_body(body: bytes, content_type: str) -> tuple[str, str | None] | None:
    """The first string value of a JSON or form body that looks like an attack: ``(field path, fragment)``,
    the fragment None when the field holds a secret (a password is never recorded, not even in part).
    None when nothing matches or the body does not parse (validation answers that)."""
    leaves: Iterator[tuple[str, str]]
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return None
        leaves = ((name, text) for name, value in pairs for text in (name, value))
    else:
        # Parsed from the bytes as the route will (``json.loads`` also takes UTF-16/32 and a UTF-8 BOM).
        # A look at the raw text first, for plain UTF-8 only: without a backslash (no escape) JSON holds
        # every string as it is, so no match there means none in any value, and nothing need be parsed.
        if json.detect_encoding(body) == "utf-8":
            try:
                text = body.decode("utf-8", "surrogatepass")  # as json.loads decodes (lone surrogates too)
            except UnicodeDecodeError:
                return None
            if "\\" not in text and find_attack(text, _ATTACKS_IN_RAW_JSON) is None:
                return None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None
        # All values at once (cheap), and only on a match the walk that names the field.
        if find_attack(_JOIN.join(_strings(document)), _ATTACKS_IN_JOINED) is None:
            return None
        leaves = _string_leaves(document)
    for field, value in leaves:
        found = find_attack(value)
        if found is not None:
            # Anything under a secret's name is secret too ({"password": {"new": …}}, {"password": […]}).
            secret = any(SECRET_FIELD.search(part) for part in field.split("."))
            return field[:120], None if secret else found
    return None


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


def address_refused(state: Any, ip: str | None) -> str | None:
    """Why the firewall refuses ``ip`` now (the deny list or admin deny rules, allowlist-only mode, a
    risk block), or None. A dry run refuses nothing. For connections that outlive the check made when
    they opened (WebSockets): called on the event loop, it answers from memory and, when the risk
    engine's copy of the other processes' blocks is stale, has it re-read on a worker thread for the next
    check."""
    if state.settings.security_dry_run:
        return None
    _refresh_soon(state.risk)
    listed = state.ipfilter.decide(ip)
    if listed.verdict == "denied":
        return "deny list"
    if listed.verdict == "not_allowlisted":
        return "not on the allowlist"
    if state.risk.blocked_for(ip):
        return "address blocked"
    return None


def session_ended(state: Any, principal: Any) -> str | None:
    """Why ``principal``'s token no longer holds (a logout, a revoked login, a changed or deactivated
    user), or None; devices never. Like :func:`address_refused`, for connections that outlive the check
    made when they opened: answers from memory and has a stale copy re-read on a worker thread."""
    revoked: RevokedTokens | None = getattr(state, "revoked_tokens", None)
    if revoked is None or not getattr(principal, "token_id", None):
        return None
    _refresh_soon(revoked)
    if principal.token_id in revoked:
        return "token revoked"
    return revoked.session_ended(
        subject=principal.subject, family=principal.token_family, security_version=principal.security_version
    )


def _refresh_soon(cache: SharedStateCache) -> None:
    """Start re-reading a stale ``cache`` on a worker thread without waiting for it (no-op outside an
    event loop); a re-read already under way is not repeated (``refresh`` sees to that)."""
    if not cache.stale():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    loop.run_in_executor(None, cache.refresh)


def _rid(scope: Scope) -> str | None:
    return (scope.get("state") or {}).get("request_id")


def _too_many(retry_after: int, scope_name: str, rid: str | None) -> JSONResponse:
    return JSONResponse(
        {"detail": f"Rate limit exceeded ({scope_name}); retry after {retry_after} s", "request_id": rid},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after)},
    )


class SharedStateCache(Protocol):
    """State shared by the API processes through the ops store and cached in each (the access tokens
    revoked by logout, the risk engine's blocks): ``stale`` once older than its bound; ``refresh``
    re-reads it."""

    def stale(self) -> bool: ...

    def refresh(self) -> None: ...


async def reread_if_stale(cache: SharedStateCache | None) -> None:
    """Re-read ``cache`` on a worker thread when it is past its bound; otherwise a request costs no query."""
    if cache is not None and cache.stale():
        await run_in_threadpool(cache.refresh)


async def check_principal(request: Request, principal: Any) -> None:
    """Per-user and per-device rate limits and access-token revocation, for an authenticated caller.

    Raises 429 (with ``Retry-After``) or 401 (a token revoked by logout)."""
    state = request.app.state
    request.state.principal = principal
    token_id = getattr(principal, "token_id", None)
    revoked: RevokedTokens | None = getattr(state, "revoked_tokens", None)
    if token_id:
        await reread_if_stale(revoked)
    if token_id and revoked is not None and token_id in revoked:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "Token has been revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    if token_id and revoked is not None:
        claims = {
            "subject": principal.subject,
            "family": principal.token_family,
            "security_version": principal.security_version,
        }
        ended = revoked.session_ended(**claims)
        if ended and revoked.may_be_behind(principal.subject, principal.security_version):
            await run_in_threadpool(revoked.refresh)
            ended = revoked.session_ended(**claims)
        if ended:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, ended, headers={"WWW-Authenticate": "Bearer"})
    limiter: RateLimiter | None = getattr(state, "ratelimiter", None)
    if limiter is None:
        return
    scope_name: Literal["device", "user"] = "device" if principal.role == "device" else "user"
    exceeded = await limiter.hit(scope_name, principal.subject)
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
    lists (settings plus admin rules), the risk engine (reputations restored), the auditor, and the
    access tokens revoked by logout (in the store, shared by every process; cached here), and the cipher
    of TOTP secrets."""
    app.state.ipfilter = IpFilter(settings, engine)
    app.state.risk = RiskEngine(settings, engine, app.state.ipfilter)
    app.state.auditor = Auditor(engine, settings)
    app.state.revoked_tokens = RevokedTokens(
        engine,
        settings.revocation_cache_seconds,
        token_lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    app.state.totp_cipher = totp_cipher(settings)
    app.state.auth_failures = AuthFailureTrail(app.state.risk, app.state.auditor)
    if settings.ws_ip_allowlist or settings.ws_ip_denylist:
        log.warning(
            "deprecated_setting",
            detail="CHAINSYNC_WS_IP_ALLOWLIST/_DENYLIST still narrow WebSockets, but the firewall's "
            "CHAINSYNC_IP_ALLOWLIST/_DENYLIST and admin IP rules now apply to them too: move the lists there",
        )

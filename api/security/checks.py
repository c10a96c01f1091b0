"""Checks on a caller past the firewall: per-user and per-device rate limits and revoked sessions
(:func:`check_principal`, called by authentication), and, for connections that outlive their first
check (WebSockets), whether the address or the session still holds. The shared state they read is cached
per process and re-read when stale.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, Protocol

from fastapi import HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from api.log import get_logger
from api.security.audit import Auditor
from api.security.ratelimit import RateLimiter
from api.security.tokens import RevokedTokens

log = get_logger("api.security.checks")


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

"""``WS <WS_PATH>`` (default ``/ws/notifications``): live notifications by channel (see
:mod:`api.ws.channels` for who may follow what, :mod:`api.ws.hub` for the channels themselves).

Protocol (JSON text frames):

1. Connect with ``?token=<JWT or device key>``, or send ``{"type": "auth", "token": ...}`` first (within
   ``CHAINSYNC_WS_AUTH_TIMEOUT_SECONDS``). A bad or missing token closes with 4401 before any data; an
   address the HTTP firewall refuses (``CHAINSYNC_IP_DENYLIST`` and admin deny rules, allowlist-only
   mode, a risk block) closes with 4403 (:mod:`api.security.firewall`), as does one outside the deprecated
   WebSocket-only lists ``CHAINSYNC_WS_IP_ALLOWLIST``/``_DENYLIST``; an address over its rate limit
   closes with 4429; a full server with 1013, a user over ``CHAINSYNC_WS_MAX_CONNECTIONS_PER_USER`` with
   4429. An open connection whose address becomes refused (a new deny rule, a block) is closed with 4403
   within ``ADDRESS_CHECK_SECONDS``.
2. Optional: ``?channels=a,b`` (default: every channel the caller may follow) and ``?last_seq=N`` (or
   ``"channels"``/``"last_seq"`` in the auth message) to resume: messages after N still in the replay
   buffers are sent first, and ``{"type": "gap", "channels": [...]}`` names channels that lost some. With
   Redis the replay comes from the shared stream, so it works on whichever API process the client
   reconnects to (:mod:`api.shared.bus`).
3. The server answers ``{"type": "welcome", "seq", "channels", "denied", "heartbeat_ms"}``, then sends
   ``{"type", "channel", "seq", "ts", "data"}`` messages. ``{"type": "subscribe" | "unsubscribe",
   "channels": [...]}`` changes the subscription.
4. Heartbeat: ``{"type": "ping"}`` every ``WS_HEARTBEAT_INTERVAL`` ms; any frame from the client (normally
   ``{"type": "pong"}``) proves it alive. A client silent for two intervals is closed with 4408. A client
   whose queue of unsent messages fills up is closed with 4008 (slow consumer); the others never wait.
   A connection opened with a user token is closed with 4401 when that token expires, and within about a
   second (plus the revocation bound on another process) when its session ends: a logout, a revoked login,
   a deactivated, demoted or re-assigned user.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AuthFailuresDep, EngineDep, FirewallViewDep, HubDep, OptionalAuditorDep, SettingsDep
from api.log import get_logger
from api.security.audit import record_security_event
from api.security.auth_trail import presented_credential
from api.security.checks import address_refused, session_ended
from api.security.ipfilter import client_ip_of
from api.security.principals import Principal, get_current_principal
from api.security.tokens import InvalidToken, decode_access_token
from api.ws import channels as channel_rules
from api.ws.hub import (
    CLOSE_FORBIDDEN,
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_MANY_FOR_USER,
    CLOSE_UNAUTHORIZED,
    Hub,
    Subscriber,
)
from chainsync.settings import Settings

log = get_logger("api.ws")


# How often an open connection looks again at whether the firewall now refuses its address (an
# in-memory check: the IP lists and the risk engine's blocks).
ADDRESS_CHECK_SECONDS = 1.0


def ip_admitted(settings: Settings, host: str | None) -> bool:
    """The deprecated WebSocket-only lists (``CHAINSYNC_WS_IP_ALLOWLIST``/``_DENYLIST``): deny list first,
    then the allow list (when one is set). An unparsable address is refused. The firewall's own lists
    apply before this, to every connection."""
    allow, deny = settings.ws_ip_allow, settings.ws_ip_deny
    if not allow and not deny:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if any(address in net for net in deny):
        return False
    return not allow or any(address in net for net in allow)


async def _authenticate(websocket: WebSocket, token: str) -> Principal | int:
    """The caller behind ``token`` by the same rules as HTTP requests (JWT or device key, sessions and
    rate limits), or the close code refusing it (4401; 4429 when rate limited)."""
    try:
        # The WebSocket is an HTTPConnection: the app's state and client address the checks read.
        return await get_current_principal(request=cast(Request, websocket), bearer=token, api_key=None)
    except HTTPException as exc:
        return CLOSE_TOO_MANY_FOR_USER if exc.status_code == 429 else CLOSE_UNAUTHORIZED


def _token_expiry(settings: Settings, token: str) -> float | None:
    """Seconds until a user token expires (None for device keys, which do not expire)."""
    try:
        claims = decode_access_token(settings, token)
    except InvalidToken:
        return None
    return (claims.expires_at - datetime.now(UTC)).total_seconds()


async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
    # A consumer that stopped reading may never let the close frame out: do not wait on it for long.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), timeout=1.0)


def _split(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    if isinstance(value, list):
        return [str(c) for c in value]
    return None


async def notifications(
    websocket: WebSocket,
    settings: SettingsDep,
    hub: HubDep,
    engine: EngineDep,
    auditor: OptionalAuditorDep,
    trail: AuthFailuresDep,
    firewall: FirewallViewDep,
) -> None:
    host = client_ip_of(websocket.scope)  # behind a trusted proxy, the client, not the proxy
    await websocket.accept()
    if not ip_admitted(settings, host):
        hub.stats.rejected["ip_blocked"] += 1
        detail = f"WebSocket {settings.ws_path} refused by CHAINSYNC_WS_IP_ALLOWLIST/_DENYLIST"
        if auditor is not None:  # the app's audit trail (honours SECURITY_AUDIT_ENABLED itself)
            await run_in_threadpool(
                partial(
                    auditor.record,
                    kind="ip_blocked",
                    outcome="blocked",
                    severity="warning",
                    source_ip=host,
                    detail=detail,
                )
            )
        elif settings.security_audit_enabled:
            await run_in_threadpool(
                partial(
                    record_security_event,
                    engine,
                    kind="ip_blocked",
                    outcome="blocked",
                    source_ip=host,
                    detail=detail,
                )
            )
        await _close(websocket, CLOSE_FORBIDDEN, "address not allowed")
        return

    params: dict[str, Any] = dict(websocket.query_params)
    token = params.get("token")
    if not token:
        try:
            first = await asyncio.wait_for(websocket.receive_text(), timeout=settings.ws_auth_timeout_seconds)
            hello = json.loads(first)
            if not isinstance(hello, dict) or hello.get("type") != "auth":
                raise ValueError("first message is not auth")
            token = hello.get("token")
            params.update({k: hello[k] for k in ("channels", "last_seq") if k in hello})
        except (TimeoutError, ValueError, WebSocketDisconnect, RuntimeError):
            token = None
    principal = (
        await _authenticate(websocket, token) if isinstance(token, str) and token else CLOSE_UNAUTHORIZED
    )
    if isinstance(principal, int):
        hub.stats.rejected["unauthorized" if principal == CLOSE_UNAUTHORIZED else "rate_limited"] += 1
        if principal == CLOSE_UNAUTHORIZED and isinstance(token, str) and token and trail is not None:
            await trail.record(
                ip=host,
                what=presented_credential(f"Bearer {token}", None) or "token",
                channel="WebSocket",
                method="GET",
                route=websocket.url.path,
                user_agent=websocket.headers.get("user-agent"),
            )
        await _close(
            websocket, principal, "not authenticated" if principal == CLOSE_UNAUTHORIZED else "rate limited"
        )
        return

    admitted = hub.admit(principal.subject, settings.ws_queue_size)
    if isinstance(admitted, int):
        await _close(websocket, admitted, "too many connections")
        return
    sub = admitted
    reason = "client_closed"
    code = CLOSE_GOING_AWAY
    try:
        requested = _split(params.get("channels")) or channel_rules.default_channels(principal)
        granted = [c for c in requested if channel_rules.allowed(principal, c)]
        denied = [c for c in requested if c not in granted]
        try:
            last_seq = int(params["last_seq"]) if params.get("last_seq") is not None else None
        except (TypeError, ValueError):
            last_seq = None
        # Subscribed first, then the replay up to the seq reached at that moment: what is newer arrives
        # live (queued meanwhile), so nothing falls in the gap and nothing comes twice.
        hub.subscribe(sub, granted)
        upto = hub.last_seq
        backlog, gaps = (
            await hub.replay_shared(sub.channels, last_seq, upto) if last_seq is not None else ([], [])
        )
        heartbeat_ms = settings.ws_heartbeat_interval
        await websocket.send_text(
            json.dumps(
                {
                    "type": "welcome",
                    "seq": upto,
                    "channels": sorted(sub.channels),
                    "denied": denied,
                    "heartbeat_ms": heartbeat_ms,
                    "replayed": len(backlog),
                }
            )
        )
        if gaps:
            await websocket.send_text(json.dumps({"type": "gap", "channels": gaps, "after_seq": last_seq}))
        for message in backlog:
            await websocket.send_text(message.text)
        expires_in = _token_expiry(settings, str(token)) if principal.role != "device" else None
        # The firewall's own view of the connection (IP lists, risk blocks, ended logins), checked again
        # while it stays open.
        refused = partial(address_refused, firewall, host) if firewall is not None else None
        ended = partial(session_ended, firewall, principal) if firewall is not None else None
        reason, code = await _serve(
            websocket, hub, sub, principal, heartbeat_ms / 1000, expires_in, refused, ended
        )
    except WebSocketDisconnect:
        reason = "client_closed"
    finally:
        hub.release(sub, reason)
    if reason != "client_closed":
        log.info("ws_closed", subject=principal.subject, reason=reason, code=code)
        await _close(websocket, code, reason)


async def _serve(
    websocket: WebSocket,
    hub: Hub,
    sub: Subscriber,
    principal: Principal,
    interval_s: float,
    expires_in: float | None = None,
    refused: Callable[[], str | None] | None = None,
    ended: Callable[[], str | None] | None = None,
) -> tuple[str, int]:
    """Run the connection until it ends; returns ``(reason, close code)``. ``refused`` says why the
    firewall now refuses the client's address, ``ended`` why the user's session is over (a logout, a
    revoked login, a deactivated or changed user); both checked every ``ADDRESS_CHECK_SECONDS``."""
    last_heard = time.monotonic()

    async def send_loop() -> str:
        while True:
            await websocket.send_text(await sub.queue.get())

    async def receive_loop() -> str:
        nonlocal last_heard
        while True:
            try:
                text = await websocket.receive_text()
            except WebSocketDisconnect:
                return "client_closed"
            last_heard = time.monotonic()
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            kind = message.get("type")
            if kind in ("subscribe", "unsubscribe"):
                wanted = _split(message.get("channels")) or []
                if kind == "subscribe":
                    granted = [c for c in wanted if channel_rules.allowed(principal, c)]
                    hub.subscribe(sub, granted)
                else:
                    hub.unsubscribe(sub, wanted)
                sub.offer(
                    json.dumps(
                        {
                            "type": "subscribed",
                            "channels": sorted(sub.channels),
                            "denied": [c for c in wanted if kind == "subscribe" and c not in sub.channels],
                        }
                    )
                )

    async def heartbeat_loop() -> str:
        while True:
            await asyncio.sleep(interval_s)
            if time.monotonic() - last_heard > 2 * interval_s:
                return "heartbeat_timeout"
            sub.offer(json.dumps({"type": "ping", "ts": time.time(), "seq": hub.last_seq}))

    async def dropped() -> str:
        await sub.dropped.wait()
        return "slow_consumer"

    async def token_expired() -> str:
        # A connection lives no longer than the access token it opened with (reconnect with a new one).
        if expires_in is None:
            await asyncio.Event().wait()  # never: device keys do not expire
        await asyncio.sleep(max(0.0, expires_in or 0.0))
        return "token_expired"

    async def address_watch() -> str:
        while True:
            await asyncio.sleep(ADDRESS_CHECK_SECONDS)
            if refused is not None and refused() is not None:
                return "address_refused"
            if ended is not None and ended() is not None:
                return "session_ended"

    tasks = [
        asyncio.create_task(address_watch()),
        asyncio.create_task(token_expired()),
        asyncio.create_task(send_loop()),
        asyncio.create_task(receive_loop()),
        asyncio.create_task(heartbeat_loop()),
        asyncio.create_task(dropped()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    finished = next(iter(done))
    try:
        reason = finished.result()
    except WebSocketDisconnect:
        reason = "client_closed"
    except Exception:
        reason = "send_failed"
    codes = {
        "heartbeat_timeout": CLOSE_HEARTBEAT_TIMEOUT,
        "slow_consumer": CLOSE_SLOW_CONSUMER,
        "token_expired": CLOSE_UNAUTHORIZED,
        "address_refused": CLOSE_FORBIDDEN,
        "session_ended": CLOSE_UNAUTHORIZED,
    }
    return reason, codes.get(reason, CLOSE_GOING_AWAY)


def websocket_router(path: str, *, enabled: bool = True) -> APIRouter:
    """The router holding the notifications endpoint at ``path``; with ``WS_ENABLED=false`` an endpoint
    that answers the upgrade with a plain 404 (there is nothing to authenticate against, so not 403)."""
    router = APIRouter(tags=["notifications"])
    router.add_api_websocket_route(path, notifications if enabled else _disabled, name="notifications")
    return router


async def _disabled(websocket: WebSocket) -> None:
    await websocket.send_denial_response(
        JSONResponse({"detail": "WebSocket notifications are disabled (WS_ENABLED=false)"}, status_code=404)
    )

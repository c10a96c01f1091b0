"""The HTTP server around the app: uvicorn, with the connection timeouts a reverse proxy would apply.

uvicorn arms its keep-alive timeout only after a first response, so a client that connects and then sends
nothing, or trickles its headers a byte every few seconds, holds a socket (and a slot of the process) for as
long as it likes; so does one that stalls in the middle of a body. :class:`GuardedHttpProtocol` adds:

* a **header timeout** (``CHAINSYNC_HTTP_HEADER_TIMEOUT_SECONDS``): the request line and headers must be
  complete within this many seconds of the connection opening (or, on a kept-alive connection, of the next
  request's first byte); otherwise 408 and close — nginx's ``client_header_timeout``;
* a **body timeout** (``CHAINSYNC_HTTP_BODY_TIMEOUT_SECONDS``): between two reads of a request body no more
  than this many seconds may pass (not counting time the server itself paused reading); otherwise the
  connection is closed and the app sees a disconnect — nginx's ``client_body_timeout``;
* the **keep-alive timeout** (``CHAINSYNC_HTTP_KEEPALIVE_TIMEOUT_SECONDS``), uvicorn's own, between requests;
* **refusal before reading**: an address the firewall refuses now (deny list, allowlist-only mode, a risk
  block) is closed as soon as it connects, before a byte is parsed — unless the peer is a trusted proxy,
  whose clients are told apart by their forwarded address in the firewall middleware.

The app hands the refusal check over through the ASGI lifespan state (``refuse_peer``), which uvicorn gives
every protocol instance, so the server needs no import of the app's internals.

What the ASGI server cannot enforce (a proxy in front must): a total deadline for a whole request or
response, slow reading of responses (uvicorn applies back-pressure only), per-address connection counts,
TLS handshake timeouts, and HTTP/2 stream limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chainsync.settings import Settings

PeerGate = Callable[[str], bool]  # True: refuse this peer address now
LIFESPAN_KEY = "refuse_peer"

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and early refusal (see the module)."""

    header_timeout: float = 10.0
    body_timeout: float = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_body = False

    # -- connection ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        gate: PeerGate | None = self.app_state.get(LIFESPAN_KEY)
        if gate is not None and self.client is not None:
            try:
                refused = gate(self.client[0])
            except Exception:  # the gate is advisory here; the firewall middleware decides again
                refused = False
            if refused:
                transport.abort()
                return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(header=True, body=True)
        super().connection_lost(exc)

    # -- header timeout -------------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.info(
                "closing %s: request headers not complete in %ss", self._peer(), self.header_timeout
            )
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel(header=True)
        super().on_headers_complete()
        self._in_body = True
        self._arm_body_timer()

    # -- body timeout ---------------------------------------------------------------------------------
    def _arm_body_timer(self) -> None:
        self._cancel(body=True)
        if self._in_body:
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_stalled)

    def _body_stalled(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or not self._in_body:
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm_body_timer()  # we stopped reading (the app is behind): not the client's stall
            return
        self.logger.info("closing %s: request body stalled for %ss", self._peer(), self.body_timeout)
        self.transport.close()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel(body=True)
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._in_body = False
        self._cancel(header=True, body=True)
        super().handle_websocket_upgrade()

    # -- helpers --------------------------------------------------------------------------------------
    def _cancel(self, *, header: bool = False, body: bool = False) -> None:
        if header and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if body and self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """The protocol class with ``settings``' timeouts (a subclass, so several configurations can coexist)."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "header_timeout": settings.http_header_timeout_seconds,
            "body_timeout": settings.http_body_timeout_seconds,
        },
    )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that apply the connection timeouts."""
    return {
        "http": guarded_protocol(settings),
        # websockets' Sans-I/O protocol: about a third less server CPU per fan-out delivery than the
        # legacy asyncio one (bench/websocket.py --ws ...), the same wire behaviour.
        "ws": "websockets-sansio",
        # No per-message compression: the fan-out sends one small message to every client, and deflating
        # it again for each connection was a third of the server's CPU per delivery.
        "ws_per_message_deflate": False,
        "timeout_keep_alive": settings.http_keepalive_timeout_seconds,
    }


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    """Run the API under uvicorn on ``host:port`` with ``workers`` processes and the guarded protocol.

    Worker processes import the protocol by name, so the timeouts reach them through the environment
    (the same settings every worker reads)."""
    options = uvicorn_options(settings)
    if workers > 1:
        options["http"] = "api.server:EnvGuardedHttpProtocol"
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # The request middleware writes one structured line per request; uvicorn's own would be a second.
        access_log=False,
        proxy_headers=False,
        **options,
    )


class EnvGuardedHttpProtocol(GuardedHttpProtocol):
    """The guarded protocol for worker processes: timeouts read from the settings when first used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from chainsync.settings import get_settings

        settings = get_settings()
        self.header_timeout = settings.http_header_timeout_seconds
        self.body_timeout = settings.http_body_timeout_seconds
        super().__init__(*args, **kwargs)

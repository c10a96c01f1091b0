"""The Redis connection of the API and the names of everything it keeps there.

One place says which keys and channels exist (:class:`RedisKeys`, every name under
``CHAINSYNC_REDIS_KEY_PREFIX``), how a client is made (:func:`connect`: short timeouts, so a Redis that
hangs costs a request at most a second, never a stuck event loop) and how an outage is reported
(:class:`Availability`: one log line when Redis goes away, one when it is back, and a pause between
attempts so a dead server is not retried on every request).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.log import get_logger

if TYPE_CHECKING:  # redis is imported on first connect: the firewall imports this module, Redis or not
    import redis.asyncio as aioredis

log = get_logger("api.shared")

# Seconds before a client gives up on a connect or an answer. A blocking stream read asks for less than
# READ_TIMEOUT_SECONDS per call, so its socket timeout only fires when the server stopped answering.
CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 5.0
# After a failure, Redis is left alone this long (each part then works locally) before the next try.
RETRY_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class RedisKeys:
    """Every Redis key and pub/sub channel of one deployment (``prefix`` from the settings)."""

    prefix: str

    @property
    def ws_seq(self) -> str:
        """String counter: the last WebSocket ``seq`` handed out (INCR)."""
        return f"{self.prefix}ws:seq"

    @property
    def ws_stream(self) -> str:
        """Stream of WebSocket messages; entry id ``<seq>-0``; trimmed to about the replay depth."""
        return f"{self.prefix}ws:stream"

    def ws_dedupe(self, news: str) -> str:
        """Marker (SET NX with a TTL) that one process already published ``news`` (a snapshot version, an
        ops store event)."""
        return f"{self.prefix}ws:seen:{news}"

    @property
    def control(self) -> str:
        """Pub/sub channel of the pushes between API processes (revocations, risk blocks, cache clears)."""
        return f"{self.prefix}control"

    @property
    def ratelimit(self) -> str:
        """Key prefix of the ``limits`` library's counters (it adds ``:<key>``)."""
        return f"{self.prefix}ratelimit"


def connect(url: str, *, read_timeout_s: float = CONNECT_TIMEOUT_SECONDS) -> aioredis.Redis:
    """An asyncio client for ``url`` (``redis://host:port/db``); connections open on first use."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=read_timeout_s,
        health_check_interval=30,
    )


class Availability:
    """Whether one part (``what``: "ws bus", "rate limits", ...) may use Redis now, and its log lines:
    ``redis_unavailable`` once when it fails, ``redis_available`` once when it works again."""

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.clock = clock
        self.down = False
        self._retry_at = 0.0

    def usable(self) -> bool:
        """True unless Redis failed less than ``RETRY_AFTER_SECONDS`` ago."""
        return not self.down or self.clock() >= self._retry_at

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            log.error(
                "redis_unavailable",
                part=self.what,
                error_type=type(exc).__name__,
                error=str(exc)[:200],
                fallback="local to this process",
            )
        self.down = True
        self._retry_at = self.clock() + RETRY_AFTER_SECONDS

    def worked(self) -> None:
        if self.down:
            log.warning("redis_available", part=self.what)
        self.down = False

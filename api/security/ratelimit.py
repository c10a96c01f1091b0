"""Rate limits per client address, per user, per device and for logins, with the ``limits`` library.

A moving window per key; the answer past a limit is 429 with ``Retry-After`` (whole seconds until the
window frees a slot). Where the counts live:

* ``CHAINSYNC_RATE_LIMIT_STORAGE_URL`` when set (any ``limits`` storage URL);
* else the Redis of ``CHAINSYNC_REDIS_URL`` when that is set, under ``<CHAINSYNC_REDIS_KEY_PREFIX>ratelimit``,
  so every API process counts against the same windows;
* else ``memory://``: per process.

A shared store is reached with the library's asyncio storage, so a request waits for its count without
holding up the event loop. When that store fails (Redis down), the request is counted in this process's
memory instead, with one log line (:class:`api.shared.redis.Availability`), and the store is tried again
a second later: limits then hold per process, and a request is never refused for the store's sake.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from limits import RateLimitItem, parse_many, storage, strategies

from api.shared.redis import CONNECT_TIMEOUT_SECONDS, Availability, RedisKeys
from chainsync.settings import Settings

if TYPE_CHECKING:  # the asyncio storages are imported only when a shared store is configured
    from limits.aio import storage as aio_storage
    from limits.aio import strategies as aio_strategies

Scope = Literal["ip", "user", "device", "login", "login_user"]


@dataclass(frozen=True)
class Exceeded:
    scope: Scope
    limit: str  # e.g. "10 per 1 minute"
    retry_after: int  # seconds


class SweptMemoryStorage(storage.MemoryStorage):
    """``limits``' memory storage without its expiry thread churn.

    The library's storage starts a 10 ms ``threading.Timer`` on every hit when none is running, i.e. a
    new thread about every 10 ms under load, and ``Thread.start`` blocks the event loop until the thread
    runs (it was among the ingest profile's top entries). Here the same sweep of expired entries runs
    inline, at most once per ``SWEEP_SECONDS``; limits are decided from the entries' times either way."""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        self._next_sweep = 0.0
        super().__init__()  # starts one first timer, which ends at once

    # Overrides the name-mangled private hook every MemoryStorage operation calls (pinned by uv.lock).
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


def storage_url(settings: Settings) -> str:
    """The ``limits`` storage URL the settings ask for (see the module docstring)."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    return settings.redis_url or "memory://"


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.url = storage_url(settings)
        # This process's own counts: the only ones without a shared store, the fallback with one.
        self._memory = SweptMemoryStorage()
        self._local = strategies.MovingWindowRateLimiter(self._memory)
        self._shared: aio_strategies.MovingWindowRateLimiter | None = None
        self._shared_storage: aio_storage.Storage | None = None
        self.available = Availability("rate limits")
        if not self.url.startswith("memory://"):
            from limits.aio import storage as aio_storage
            from limits.aio import strategies as aio_strategies

            url = self.url if self.url.startswith("async+") else f"async+{self.url}"
            options: dict[str, float | str | bool] = {}
            if url.startswith(("async+redis", "async+rediss")):
                options = {
                    "implementation": "redispy",  # redis-py is a dependency already (coredis is not)
                    "key_prefix": RedisKeys(settings.redis_key_prefix).ratelimit,
                    "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
                    "socket_timeout": CONNECT_TIMEOUT_SECONDS,
                }
            shared = storage.storage_from_string(url, **options)
            if not isinstance(shared, aio_storage.Storage):  # "async+" always makes an asyncio storage
                raise TypeError(f"not an asyncio limits storage: {type(shared).__name__}")
            self._shared_storage = shared
            self._shared = aio_strategies.MovingWindowRateLimiter(shared)
        self._items: dict[Scope, list[RateLimitItem]] = {
            "ip": parse_many(settings.rate_limit_ip),
            "user": parse_many(settings.rate_limit_user),
            "device": parse_many(settings.rate_limit_device),
            "login": parse_many(settings.rate_limit_login),
            "login_user": parse_many(settings.rate_limit_login_user),
        }

    async def hit(self, scope: Scope, key: str) -> Exceeded | None:
        """Count one request of ``key`` under ``scope``; the exceeded limit, or None when within all."""
        if not self.enabled:
            return None
        if self._shared is not None and self.available.usable():
            try:
                exceeded = await self._hit_shared(self._shared, scope, key)
            except Exception as exc:
                self.available.failed(exc)
            else:
                self.available.worked()
                return exceeded
        for item in self._items[scope]:
            if not self._local.hit(item, scope, key):
                stats = self._local.get_window_stats(item, scope, key)
                return Exceeded(scope=scope, limit=str(item), retry_after=_seconds_until(stats.reset_time))
        return None

    async def exceeded(self, scope: Scope, key: str) -> Exceeded | None:
        """The limit ``key`` is over under ``scope`` now, without counting anything (for budgets that only
        failures spend: :meth:`hit` on each failure, this before each attempt)."""
        if not self.enabled:
            return None
        if self._shared is not None and self.available.usable():
            try:
                for item in self._items[scope]:
                    if not await self._shared.test(item, scope, key):
                        stats = await self._shared.get_window_stats(item, scope, key)
                        return Exceeded(scope, str(item), _seconds_until(stats.reset_time))
                return None
            except Exception as exc:
                self.available.failed(exc)
        for item in self._items[scope]:
            if not self._local.test(item, scope, key):
                stats = self._local.get_window_stats(item, scope, key)
                return Exceeded(scope=scope, limit=str(item), retry_after=_seconds_until(stats.reset_time))
        return None

    async def _hit_shared(
        self, limiter: aio_strategies.MovingWindowRateLimiter, scope: Scope, key: str
    ) -> Exceeded | None:
        for item in self._items[scope]:
            if not await limiter.hit(item, scope, key):
                stats = await limiter.get_window_stats(item, scope, key)
                return Exceeded(scope=scope, limit=str(item), retry_after=_seconds_until(stats.reset_time))
        return None

    async def reset(self) -> None:
        """Forget every count (this process's, and the shared store's: every key under its prefix)."""
        self._memory.reset()
        if self._shared_storage is not None:
            await self._shared_storage.reset()


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))

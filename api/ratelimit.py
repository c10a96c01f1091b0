"""Rate limits per client address, per user, per device and for logins, with the ``limits`` library.

A moving window per key; the answer past a limit is 429 with ``Retry-After`` (whole seconds until the
window frees a slot). Storage comes from ``CHAINSYNC_RATE_LIMIT_STORAGE_URL``: ``memory://`` counts per
process, so with several API workers point it at Redis (``redis://host:6379/0``) to share the counts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse_many, storage, strategies

from chainsync.settings import Settings

Scope = Literal["ip", "user", "device", "login"]


@dataclass(frozen=True)
class Exceeded:
    scope: Scope
    limit: str  # e.g. "10 per 1 minute"
    retry_after: int  # seconds


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self._storage = storage.storage_from_string(settings.rate_limit_storage_url)
        self._limiter = strategies.MovingWindowRateLimiter(self._storage)
        self._items: dict[Scope, list[RateLimitItem]] = {
            "ip": parse_many(settings.rate_limit_ip),
            "user": parse_many(settings.rate_limit_user),
            "device": parse_many(settings.rate_limit_device),
            "login": parse_many(settings.rate_limit_login),
        }

    def hit(self, scope: Scope, key: str) -> Exceeded | None:
        """Count one request of ``key`` under ``scope``; the exceeded limit, or None when within all."""
        if not self.enabled:
            return None
        for item in self._items[scope]:
            if not self._limiter.hit(item, scope, key):
                stats = self._limiter.get_window_stats(item, scope, key)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                return Exceeded(scope=scope, limit=str(item), retry_after=wait)
        return None

    def reset(self) -> None:
        self._storage.reset()

"""Device API keys as the request path sees them: verified against the ops store once, then answered from
memory for at most ``max_age_s`` seconds.

A POS terminal sends its key with every request; without this, each request cost a database read and a
hash on a worker thread. Only keys that verified are remembered (an unknown or revoked key is looked up
every time, so guessing gains nothing), keyed by the key's SHA-256 so no usable key is held. A key revoked
through this process (``DELETE /api/admin/device-keys/{prefix}``) stops working here at once
(:meth:`DeviceKeyCache.forget`); revoked on another process or in the store directly, it stops working
here within ``max_age_s`` (``CHAINSYNC_REVOCATION_CACHE_SECONDS``, the same bound as a logout's).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from chainsync.ops_store.users import DeviceKey, verify_device_key

MAX_CACHED_KEYS = 100_000  # terminals of a large chain; past it the cache starts over


class DeviceKeyCache:
    def __init__(self, engine: Engine, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.clock = clock
        self._verified: dict[bytes, tuple[float, DeviceKey]] = {}

    async def verify(self, key: str) -> DeviceKey | None:
        """The active device key ``key`` names, or None (unknown, malformed or revoked)."""
        digest = hashlib.sha256(key.encode()).digest()
        now = self.clock()
        hit = self._verified.get(digest)
        if hit is not None and now - hit[0] < self.max_age_s:
            return None if hit[1].expired() else hit[1]
        found = await run_in_threadpool(verify_device_key, self.engine, key)  # a database read
        if found is None:
            self._verified.pop(digest, None)
            return None
        if len(self._verified) >= MAX_CACHED_KEYS:
            self._verified.clear()
        self._verified[digest] = (now, found)
        return found

    def forget(self, prefix: str) -> None:
        """Drop the remembered key with ``prefix`` (just revoked here), so its next use is read again."""
        for digest, (_, key) in list(self._verified.items()):
            if key.prefix == prefix:
                self._verified.pop(digest, None)

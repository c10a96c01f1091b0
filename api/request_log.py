"""The request log: every request's latency and status class, aggregated per minute, method and route
template in memory, and flushed by a background thread into the ops store's ``request_stats`` table.

Observing a request is a dictionary update under a lock: it never does I/O, never raises and never blocks
on the database. Every ``REQUEST_LOG_FLUSH_SECONDS`` the thread writes the minutes that are over (and, at
shutdown, everything) with an additive upsert, instance ``hostname:pid``. A failed write is logged and the
buckets are kept for the next attempt; at most ``max_buckets`` are held, the oldest dropped (and counted)
beyond that, so a database outage cannot grow memory without bound. Buckets older than the pipeline's
landing window (``LANDING_OVERLAP``) are dropped (counted and logged) at the next flush attempt: written
that late they would never be landed.

Percentiles come from a fixed histogram of 10 %-wide logarithmic latency buckets (0.1 ms to ~10 min),
interpolated inside the bucket like Prometheus' ``histogram_quantile``: within 5 % of the exact value at
any latency, in constant memory per minute and route. (prometheus-client's own ``Histogram`` keeps
cumulative counts for scraping but computes no quantiles, and its buckets are too coarse for a p95.)
"""

from __future__ import annotations

import bisect
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from api.log import get_logger
from chainsync.ops_store.request_stats import LANDING_OVERLAP, merge_request_stats

log = get_logger("api.request_log")

_GROWTH = 1.1
# Upper bounds (ms) of the histogram buckets: 0.1 ms x 1.1^k up to ~10 minutes; one overflow bucket above.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.1 * _GROWTH**k for k in range(165))
MAX_BUCKETS = 50_000  # (minute, method, route) buckets held while the ops store is unreachable

Key = tuple[int, str, str]  # (minute start, epoch seconds; method; route template)


def instance_name() -> str:
    """``hostname:pid`` of this API process (at most 64 characters, the column's width)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}"


@dataclass
class MinuteStats:
    """One minute of one route: counts, latency sum and max (ms), and the latency histogram."""

    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        if 400 <= status < 500:
            self.errors_4xx += 1
        elif status >= 500:
            self.errors_5xx += 1
        self.latency_ms_sum += latency_ms
        self.latency_ms_max = max(self.latency_ms_max, latency_ms)
        self.counts[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)] += 1

    def merge(self, other: MinuteStats) -> None:
        self.requests += other.requests
        self.errors_4xx += other.errors_4xx
        self.errors_5xx += other.errors_5xx
        self.latency_ms_sum += other.latency_ms_sum
        self.latency_ms_max = max(self.latency_ms_max, other.latency_ms_max)
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def percentile(self, q: float) -> float:
        """The ``q`` (0..1) latency percentile in ms, interpolated geometrically inside its bucket and
        never above the largest latency seen; 0.0 with no requests."""
        if self.requests == 0:
            return 0.0
        rank = q * self.requests
        seen = 0
        for i, count in enumerate(self.counts):
            if count and seen + count >= rank:
                upper = LATENCY_BOUNDS_MS[i] if i < len(LATENCY_BOUNDS_MS) else self.latency_ms_max
                lower = LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0.0
                share = (rank - seen) / count
                if lower <= 0.0 or upper <= lower:
                    value = lower + (upper - lower) * share
                else:
                    value = lower * math.exp(math.log(upper / lower) * share)
                return min(value, self.latency_ms_max)
            seen += count
        return self.latency_ms_max

    def row(self, key: Key, instance: str) -> dict[str, Any]:
        minute, method, route = key
        return {
            "bucket_start": datetime.fromtimestamp(minute, UTC).replace(tzinfo=None),
            "instance": instance,
            "method": method[:10],
            "route": route[:200],
            "requests": self.requests,
            "errors_4xx": self.errors_4xx,
            "errors_5xx": self.errors_5xx,
            "latency_ms_sum": round(self.latency_ms_sum, 3),
            "latency_ms_max": round(self.latency_ms_max, 3),
            "latency_ms_p50": round(self.percentile(0.50), 3),
            "latency_ms_p95": round(self.percentile(0.95), 3),
        }


class RequestLog:
    """Per-minute request statistics of this process, flushed to ``request_stats`` in the background."""

    def __init__(
        self,
        engine: Engine,
        *,
        flush_seconds: float = 15.0,
        instance: str | None = None,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.flush_seconds = flush_seconds
        self.instance = instance or instance_name()
        self.max_buckets = max_buckets
        self.clock = clock
        self.dropped_buckets = 0
        self.failed_flushes = 0
        self._buckets: dict[Key, MinuteStats] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished request (never raises: the request it describes has already been served)."""
        try:
            key = (int(self.clock() // 60) * 60, method, route)
            with self._lock:
                stats = self._buckets.get(key)
                if stats is None:
                    stats = self._buckets[key] = MinuteStats()
                    if len(self._buckets) > self.max_buckets:
                        self._drop_oldest()
                stats.add(status, seconds * 1000.0)
        except Exception:
            log.exception("request_log_observe_failed")

    def pending(self) -> int:
        """Buckets held in memory, not yet written."""
        with self._lock:
            return len(self._buckets)

    def _drop_oldest(self) -> None:
        # Called with the lock held, only when over the bound.
        excess = len(self._buckets) - self.max_buckets
        for key in sorted(self._buckets)[:excess]:
            del self._buckets[key]
        self.dropped_buckets += excess

    def flush(self, *, everything: bool = False) -> int:
        """Write the minutes that are over (all of them with ``everything``); returns the rows written. On
        failure the buckets go back into memory for the next flush and the error is logged. Buckets older
        than ``LANDING_OVERLAP`` are dropped first (counted in ``dropped_buckets``): the pipeline would not
        land them."""
        now = self.clock()
        current_minute = int(now // 60) * 60
        oldest_landed = now - LANDING_OVERLAP.total_seconds()
        with self._lock:
            expired = [k for k in self._buckets if k[0] < oldest_landed]
            for key in expired:
                del self._buckets[key]
            self.dropped_buckets += len(expired)
            keys = [k for k in self._buckets if everything or k[0] < current_minute]
            taken = {k: self._buckets.pop(k) for k in keys}
        if expired:
            log.warning(
                "request_log_buckets_expired",
                buckets=len(expired),
                oldest=datetime.fromtimestamp(min(k[0] for k in expired), UTC).isoformat(),
                dropped_buckets=self.dropped_buckets,
            )
        if not taken:
            return 0
        try:
            return merge_request_stats(self.engine, [s.row(k, self.instance) for k, s in taken.items()])
        except Exception as exc:
            self.failed_flushes += 1
            with self._lock:
                for key, stats in taken.items():
                    newer = self._buckets.get(key)
                    if newer is not None:
                        stats.merge(newer)
                    self._buckets[key] = stats
                if len(self._buckets) > self.max_buckets:
                    self._drop_oldest()
            log.warning(
                "request_log_flush_failed",
                error=f"{type(exc).__name__}: {exc}",
                buckets_kept=len(taken),
                failed_flushes=self.failed_flushes,
            )
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="request-log-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write everything still held (the current minute included)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.flush_seconds))
            self._thread = None
        self.flush(everything=True)

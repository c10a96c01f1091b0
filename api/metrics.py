"""Metrics, one set per app (so several apps in one process, as in tests, never clash).

Two views of the same observations:

* Prometheus (prometheus-client registry): counters and histograms for ``GET /metrics``, plus gauges read
  at scrape time (process CPU and memory, WebSocket hub, snapshot age, store sizes).
* A rolling in-memory window of recent requests and ingests for the JSON endpoints (exact percentiles
  over the last ``window_seconds``, bounded in entries so memory stays flat under load).
"""

from __future__ import annotations

import os
import resource
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MAX_WINDOW_ENTRIES = 200_000
_STARTED = time.time()


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` (0..1) percentile of an already sorted list, nearest-rank; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class RequestWindow:
    """The last ``window_seconds`` of requests: ``(monotonic time, method, route, status, seconds)``."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._entries: deque[tuple[float, str, str, int, float]] = deque(maxlen=_MAX_WINDOW_ENTRIES)
        self._ingested: deque[tuple[float, str, int]] = deque(maxlen=_MAX_WINDOW_ENTRIES)

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        self._entries.append((time.monotonic(), method, route, status, seconds))

    def add_ingest(self, event_type: str, count: int) -> None:
        self._ingested.append((time.monotonic(), event_type, count))

    def _recent(self, window: float | None) -> tuple[float, list[tuple[float, str, str, int, float]]]:
        span = min(window or self.window_seconds, self.window_seconds)
        since = time.monotonic() - span
        return span, [e for e in self._entries if e[0] >= since]

    def by_route(self, window: float | None = None) -> dict[str, Any]:
        """Request rate, latency percentiles (ms) and error rates per ``METHOD route`` over the window."""
        span, entries = self._recent(window)
        groups: dict[str, list[tuple[int, float]]] = {}
        for _, method, route, status, seconds in entries:
            groups.setdefault(f"{method} {route}", []).append((status, seconds))
        routes = {}
        for name, rows in sorted(groups.items()):
            durations = sorted(s for _, s in rows)
            server_errors = sum(1 for status, _ in rows if status >= 500)
            client_errors = sum(1 for status, _ in rows if 400 <= status < 500)
            routes[name] = {
                "requests": len(rows),
                "rate_per_s": round(len(rows) / span, 4),
                "p50_ms": round(percentile(durations, 0.50) * 1000, 3),
                "p95_ms": round(percentile(durations, 0.95) * 1000, 3),
                "p99_ms": round(percentile(durations, 0.99) * 1000, 3),
                "max_ms": round(durations[-1] * 1000, 3),
                "error_rate": round(server_errors / len(rows), 4),
                "client_error_rate": round(client_errors / len(rows), 4),
            }
        every = sorted(e[4] for e in entries)
        return {
            "window_seconds": span,
            "requests": len(entries),
            "rate_per_s": round(len(entries) / span, 4),
            "p50_ms": round(percentile(every, 0.50) * 1000, 3),
            "p95_ms": round(percentile(every, 0.95) * 1000, 3),
            "p99_ms": round(percentile(every, 0.99) * 1000, 3),
            "error_rate": round(sum(1 for e in entries if e[3] >= 500) / len(entries), 4) if entries else 0.0,
            "routes": routes,
        }

    def ingest_rate(self, window: float | None = None) -> dict[str, Any]:
        span = min(window or self.window_seconds, self.window_seconds)
        since = time.monotonic() - span
        totals: dict[str, int] = {}
        for t, event_type, count in self._ingested:
            if t >= since:
                totals[event_type] = totals.get(event_type, 0) + count
        return {
            "window_seconds": span,
            "events": sum(totals.values()),
            "events_per_s": round(sum(totals.values()) / span, 4),
            "by_type": totals,
        }


def process_stats() -> dict[str, Any]:
    """CPU seconds, average CPU share since start, resident memory, threads and open files of this
    process (Linux ``/proc`` where available, ``resource`` otherwise)."""
    times = os.times()
    cpu = times.user + times.system
    uptime = max(time.time() - _STARTED, 1e-6)
    rss = None
    threads = None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    if rss is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        open_fds: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_fds = None
    return {
        "pid": os.getpid(),
        "uptime_seconds": round(uptime, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_percent_avg": round(100 * cpu / uptime, 2),
        "memory_rss_bytes": rss,
        "memory_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads": threads,
        "open_fds": open_fds,
    }


class _LiveCollector(Collector):
    """Gauges and counters read when Prometheus scrapes: whatever ``source()`` returns."""

    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        live = self.source()
        hub = live.get("websocket")
        if hub is not None:
            yield GaugeMetricFamily(
                "chainsync_ws_connections", "Open WebSocket connections.", value=hub["connections"]
            )
            subscribers = GaugeMetricFamily(
                "chainsync_ws_subscribers", "WebSocket subscribers by channel.", labels=["channel"]
            )
            published = CounterMetricFamily(
                "chainsync_ws_messages_published", "Messages published by channel.", labels=["channel"]
            )
            delivered = CounterMetricFamily(
                "chainsync_ws_messages_delivered",
                "Messages queued to subscribers by channel.",
                labels=["channel"],
            )
            dropped = CounterMetricFamily(
                "chainsync_ws_messages_dropped",
                "Messages lost to slow consumers (then disconnected) by channel.",
                labels=["channel"],
            )
            for channel, c in hub["channels"].items():
                subscribers.add_metric([channel], c["subscribers"])
                published.add_metric([channel], c["published"])
                delivered.add_metric([channel], c["delivered"])
                dropped.add_metric([channel], c["dropped"])
            yield from (subscribers, published, delivered, dropped)
            closed = CounterMetricFamily(
                "chainsync_ws_connections_closed",
                "WebSocket connections closed, by reason.",
                labels=["reason"],
            )
            for reason, n in hub["closed_total"].items():
                closed.add_metric([reason], n)
            for reason, n in hub["rejected_total"].items():
                closed.add_metric([f"rejected_{reason}"], n)
            yield closed
        age = live.get("snapshot_age_seconds")
        if age is not None:
            yield GaugeMetricFamily(
                "chainsync_snapshot_age_seconds", "Age of the current serving snapshot.", value=age
            )
        sizes = GaugeMetricFamily("chainsync_store_size_bytes", "Bytes on disk by store.", labels=["store"])
        for store, size in (live.get("store_sizes") or {}).items():
            if size is not None:
                sizes.add_metric([store], size)
        yield sizes
        free = live.get("disk_free_bytes")
        if free is not None:
            yield GaugeMetricFamily(
                "chainsync_disk_free_bytes", "Free bytes on the data directory's disk.", value=free
            )


class Metrics:
    def __init__(self, window_seconds: float = 900) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.window = RequestWindow(window_seconds)
        self.requests = Counter(
            "chainsync_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chainsync_http_request_duration_seconds",
            "HTTP request latency in seconds by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "chainsync_events_ingested",
            "Events received for ingest, by event type and outcome (applied, duplicate, rejected).",
            ["event_type", "status"],
            registry=self.registry,
        )
        # process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        ProcessCollector(registry=self.registry)
        self._live: Callable[[], dict[str, Any]] = dict
        self.registry.register(_LiveCollector(lambda: self._live()))
        # The request log (api.request_log.RequestLog.observe) when REQUEST_LOG_ENABLED, set at start-up.
        self.request_log: Callable[[str, str, int, float], None] | None = None

    def set_live_source(self, source: Callable[[], dict[str, Any]]) -> None:
        """What the scrape-time gauges read (set at start-up, once the hub and paths exist)."""
        self._live = source

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        self.window.add(method, route, status, seconds)
        if self.request_log is not None:
            self.request_log(method, route, status, seconds)

    def observe_ingest(self, event_type: str, outcome: str, count: int) -> None:
        self.events.labels(event_type, outcome).inc(count)
        if outcome == "applied":
            self.window.add_ingest(event_type, count)

    def render(self) -> bytes:
        return generate_latest(self.registry)

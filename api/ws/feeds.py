"""What feeds the hub: the ingest path (sales ticker), and background tasks started by the app's lifespan
that look cheaply for news: a new serving snapshot (``current.json`` changed), new security and sync
events in the ops store (by seq, on an index), and a live-metrics tick.

With several API processes on one shared bus (Redis), each process polls the same ops store and serving
directory and so finds the same news: snapshot and ops-store announcements carry a ``dedupe`` name (the
snapshot version, the event's seq) and the bus publishes each once, whichever process found it first.
Sales are published by the process that ingested them (nobody else knows them). Live metrics describe
the process that measured them and reach only its own subscribers (``this_process``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.aio import cancel_all
from api.log import get_logger
from api.metrics import Metrics
from api.queries.feed import events_after, feed_watermark
from api.queries.snapshots import (
    ANOMALY_TABLE,
    INSIGHTS_TABLE,
    SnapshotUnavailable,
    load_current,
    read_table,
)
from api.ws.hub import Hub
from chainsync.schemas.events import sale_totals
from chainsync.serving import POINTER, Snapshot

log = get_logger("api.notifications")

_MAX_ITEMS = 20  # anomalies or insights per store in one announcement


def publish_ingested(hub: Hub | None, sales: Iterable[Any]) -> None:
    """The sales ticker: one message per store per ingest request, with its newly stored sales (models, or
    the wire decoder's objects of them: ``store_id``, ``transaction_id``, ``kind``, ``occurred_at``,
    ``lines``). Never awaits."""
    if hub is None:
        return
    by_store: dict[str, list[Any]] = {}
    for sale in sales:
        by_store.setdefault(sale.store_id, []).append(sale)
    for store_id, store_sales in by_store.items():
        units = net = 0
        for sale in store_sales:
            sale_units, sale_net = sale_totals(sale)
            units += sale_units
            net += sale_net
        hub.publish(
            f"sales:{store_id}",
            "sales",
            {
                "store_id": store_id,
                "transactions": len(store_sales),
                "units": units,
                "net_revenue_cents": net,
                "latest": [
                    {
                        "transaction_id": s.transaction_id,
                        "kind": s.kind,
                        "occurred_at": s.occurred_at.isoformat(),
                        "total_cents": sum(
                            line.quantity * line.unit_price_cents - line.discount_cents for line in s.lines
                        ),
                    }
                    for s in store_sales[-5:]
                ],
            },
        )


def _flagged(snapshot: Snapshot) -> pl.DataFrame | None:
    try:
        frame = read_table(snapshot, ANOMALY_TABLE)
    except SnapshotUnavailable:
        return None
    if "is_anomaly" not in frame.columns:
        return None
    return frame.filter(pl.col("is_anomaly"))


def _insights(snapshot: Snapshot) -> pl.DataFrame | None:
    try:
        frame = read_table(snapshot, INSIGHTS_TABLE)
    except SnapshotUnavailable:
        return None
    return frame if "store_id" in frame.columns else None


def announcements(snapshot: Snapshot, previous: Snapshot | None) -> list[tuple[str, str, dict[str, Any]]]:
    """``(channel, kind, data)`` to publish for ``snapshot``: one ``snapshot`` message, and per store the
    anomalies flagged now but not in ``previous`` and the store's insights (when the snapshot has them)."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        (
            "snapshot",
            "snapshot",
            {
                "version": snapshot.version,
                "created_at": snapshot.created_at.isoformat(),
                "run_id": snapshot.manifest.get("run_id"),
                "tables": {name: t.get("rows") for name, t in snapshot.manifest.get("tables", {}).items()},
            },
        )
    ]
    flagged = _flagged(snapshot)
    new_by_store: dict[str, list[dict[str, Any]]] = {}
    if flagged is not None and not flagged.is_empty():
        before = _flagged(previous) if previous is not None else None
        if before is not None and not before.is_empty():
            flagged = flagged.join(
                before.select("store_id", "sale_date"), on=["store_id", "sale_date"], how="anti"
            )
        keep = [
            c
            for c in ("store_id", "sale_date", "anomaly_score", "severity", "drivers")
            if c in flagged.columns
        ]
        for (store_id,), part in (
            flagged.sort("anomaly_score", descending=True).partition_by("store_id", as_dict=True).items()
        ):
            new_by_store[str(store_id)] = part.select(keep).head(_MAX_ITEMS).to_dicts()
    insights = _insights(snapshot)
    insights_by_store: dict[str, list[dict[str, Any]]] = {}
    if insights is not None and not insights.is_empty():
        for (store_id,), part in insights.partition_by("store_id", as_dict=True).items():
            insights_by_store[str(store_id)] = part.head(_MAX_ITEMS).to_dicts()
    for store_id in sorted(set(new_by_store) | set(insights_by_store)):
        out.append(
            (
                f"anomalies:{store_id}",
                "anomalies",
                {
                    "version": snapshot.version,
                    "store_id": store_id,
                    "new_anomalies": new_by_store.get(store_id, []),
                    "insights": insights_by_store.get(store_id, []),
                },
            )
        )
    return out


class Notifier:
    """The background tasks feeding the hub; started and stopped by the app's lifespan."""

    def __init__(
        self,
        hub: Hub,
        engine: Engine,
        metrics: Metrics,
        serving_dir: Path,
        *,
        poll_s: float,
        metrics_s: float,
        on_snapshot: Callable[[Snapshot], object] | None = None,
    ) -> None:
        self.hub = hub
        self.engine = engine
        self.metrics = metrics
        self.serving_dir = serving_dir
        self.poll_s = poll_s
        self.metrics_s = metrics_s
        self.on_snapshot = on_snapshot  # called with each new snapshot found (the AI cache is cleared)
        self.snapshot: Snapshot | None = None
        self._pointer_stat: tuple[int, int, int] | None = None
        self._feed_seq: int | None = None  # None until the ops store has answered once
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.snapshot = await run_in_threadpool(self._load)
        self._pointer_stat = self._stat()
        try:
            self._feed_seq = await run_in_threadpool(feed_watermark, self.engine)
        except Exception:  # the ops store may be down; the feed starts once it answers
            log.warning("notification_feed_unavailable")
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._every(self.poll_s, self.check_snapshot), name="notify-snapshot"),
            loop.create_task(self._every(self.poll_s, self.check_ops_feed), name="notify-ops-feed"),
            loop.create_task(self._every(self.metrics_s, self.tick_metrics), name="notify-metrics"),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    async def _every(self, seconds: float, step: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception as exc:  # one bad look must not end the feed
                log.warning("notification_step_failed", step=step.__name__, error=type(exc).__name__)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.serving_dir / POINTER)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> Snapshot | None:
        try:
            return load_current(self.serving_dir)
        except SnapshotUnavailable:
            return None

    async def check_snapshot(self) -> None:
        """One ``stat`` per poll; the manifest and the anomaly table are read only when the pointer moved."""
        stat = self._stat()
        if stat is None or stat == self._pointer_stat:
            return
        self._pointer_stat = stat
        current = await run_in_threadpool(self._load)
        if current is None or (self.snapshot is not None and current.version == self.snapshot.version):
            return
        previous, self.snapshot = self.snapshot, current
        if self.on_snapshot is not None:
            self.on_snapshot(current)
        messages = await run_in_threadpool(announcements, current, previous)
        for channel, kind, data in messages:
            self.hub.publish(channel, kind, data, dedupe=f"snapshot:{current.version}:{channel}")
        log.info("snapshot_announced", version=current.version, messages=len(messages))

    async def check_ops_feed(self) -> None:
        if self._feed_seq is None:  # start from now, never from the whole history
            self._feed_seq = await run_in_threadpool(feed_watermark, self.engine)
            return
        rows = await run_in_threadpool(events_after, self.engine, self._feed_seq)
        for row in rows:
            self._feed_seq = max(self._feed_seq, row["seq"])
            payload = row["payload"]
            news = f"ops:{row['seq']}"
            if row["event_type"] == "security":
                self.hub.publish(
                    "security", "security", {"store_id": row["store_id"], **payload}, dedupe=news
                )
            elif row["store_id"]:
                self.hub.publish(f"sync:{row['store_id']}", "sync", payload, dedupe=news)

    async def tick_metrics(self) -> None:
        if not self.hub.has_subscribers("metrics"):
            return
        recent = self.metrics.window.by_route(window=60)
        self.hub.publish(
            "metrics",
            "metrics",
            {
                "window_seconds": recent["window_seconds"],
                "requests_per_s": recent["rate_per_s"],
                "p50_ms": recent["p50_ms"],
                "p99_ms": recent["p99_ms"],
                "error_rate": recent["error_rate"],
                "ingest": self.metrics.window.ingest_rate(window=60),
                "websocket_connections": self.hub.connections,
            },
            this_process=True,
        )

"""Terminals playing a store day against a running API over HTTP (``chainsync simulate``).

Each terminal is a thread with its own device key. It downloads the catalog, then rings up sales (and the
odd stock receipt and shelf-label edit) into a local queue, and uploads the queue in batches. It goes
offline now and then (the queue grows), comes back, and retries a batch that got no answer with the same
``batch_id`` and mutation ids, so a retry can never double a sale. It also re-sends acknowledged items
on purpose (they must come back ``duplicate``) and runs with a skewed clock. Everything is bounded: a
number of sales per terminal and a wall-clock deadline.

The report compares what the terminals sold with what the server acknowledged.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


@dataclass(frozen=True)
class SimulationConfig:
    api: str
    store_id: str
    keys: Sequence[tuple[str, str]]  # (device_id, API key) per terminal
    sales_per_terminal: int = 100
    batch_size: int = 25
    offline_rate: float = 0.05  # chance per sale of dropping offline
    offline_sales: tuple[int, int] = (5, 30)  # sales rung up while offline
    duplicate_rate: float = 0.05  # chance per upload of re-sending acknowledged items
    edit_rate: float = 0.02  # chance per sale of a shelf-label edit
    bad_rate: float = 0.0  # chance per sale of also queueing a malformed item
    max_skew_seconds: int = 900
    deadline_seconds: float = 60.0
    pace_seconds: float = 0.0  # pause between sales
    timeout_seconds: float = 5.0
    seed: int = 7


@dataclass
class TerminalReport:
    device_id: str
    clock_skew_seconds: int
    sold: dict[str, int] = field(default_factory=dict)  # event_id -> net cents
    units: dict[str, int] = field(default_factory=dict)  # event_id -> units
    acknowledged: set[str] = field(default_factory=set)  # sale event ids answered applied/duplicate
    statuses: dict[str, int] = field(default_factory=dict)
    uploads: int = 0
    retries: int = 0
    offline_periods: int = 0
    duplicates_sent: int = 0
    unsent: int = 0
    errors: list[str] = field(default_factory=list)

    def count(self, status: str, n: int = 1) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + n


@dataclass
class SimulationReport:
    terminals: list[TerminalReport]
    seconds: float

    @property
    def sold(self) -> int:
        return sum(len(t.sold) for t in self.terminals)

    @property
    def acknowledged(self) -> int:
        return sum(len(t.acknowledged) for t in self.terminals)

    @property
    def sold_cents(self) -> int:
        return sum(sum(t.sold.values()) for t in self.terminals)

    @property
    def acknowledged_cents(self) -> int:
        return sum(t.sold[e] for t in self.terminals for e in t.acknowledged)

    @property
    def sold_units(self) -> int:
        return sum(sum(t.units.values()) for t in self.terminals)

    def summary(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for t in self.terminals:
            for k, v in t.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        return {
            "terminals": len(self.terminals),
            "seconds": round(self.seconds, 2),
            "sales_sold": self.sold,
            "sales_acknowledged": self.acknowledged,
            "sales_unacknowledged": self.sold - self.acknowledged,
            "sold_cents": self.sold_cents,
            "acknowledged_cents": self.acknowledged_cents,
            "units_sold": self.sold_units,
            "item_statuses": statuses,
            "uploads": sum(t.uploads for t in self.terminals),
            "retries": sum(t.retries for t in self.terminals),
            "offline_periods": sum(t.offline_periods for t in self.terminals),
            "duplicates_sent": sum(t.duplicates_sent for t in self.terminals),
            "errors": sum(len(t.errors) for t in self.terminals),
        }


class Terminal:
    def __init__(self, config: SimulationConfig, device_id: str, key: str, index: int) -> None:
        self.config = config
        self.rng = random.Random(config.seed * 1000 + index)
        self.device_id = device_id
        skew = (
            self.rng.randint(-config.max_skew_seconds, config.max_skew_seconds)
            if config.max_skew_seconds
            else 0
        )
        self.skew = timedelta(seconds=skew)
        self.report = TerminalReport(device_id=device_id, clock_skew_seconds=skew)
        self.http = httpx.Client(
            base_url=config.api, headers={"X-API-Key": key}, timeout=config.timeout_seconds
        )
        self.queue: list[dict[str, Any]] = []
        self.acked_items: list[dict[str, Any]] = []
        self.catalog: dict[str, int] = {}  # product_id -> price_cents
        self.override_versions: dict[str, int] = {}
        self.offline_for = 0
        self.offline_since: datetime | None = None
        self.in_flight: dict[str, Any] | None = None  # the batch awaiting an answer, resent as is

    def clock(self) -> datetime:
        return datetime.now(UTC) + self.skew

    def expired(self, deadline: float) -> bool:
        return time.monotonic() >= deadline

    # --- HTTP with retries -----------------------------------------------------------------------
    def _download(self, deadline: float) -> bool:
        cursor: str | None = None
        while not self.expired(deadline):
            try:
                params: dict[str, Any] = {"limit": 2000}
                if cursor:
                    params["cursor"] = cursor
                resp = self.http.get("/api/sync/download", params=params)
            except httpx.TransportError:
                self._backoff()
                continue
            if resp.status_code == 410:
                cursor = None
                continue
            if resp.status_code != 200:
                self.report.errors.append(f"download {resp.status_code}")
                self._backoff()
                continue
            body = resp.json()
            for rec in body["records"]:
                if rec["entity"] == "product":
                    if rec["op"] == "upsert":
                        self.catalog[rec["key"]] = rec["data"]["price_cents"]
                    else:
                        self.catalog.pop(rec["key"], None)
                elif rec["entity"] == "product_override":
                    self.override_versions[rec["key"]] = rec["version"]
            cursor = body["next_cursor"]
            if not body["has_more"]:
                return True
        return False

    def _backoff(self) -> None:
        self.report.retries += 1
        time.sleep(min(1.0, 0.05 * (1 + self.rng.random() * 4)))

    def _upload(self, deadline: float) -> bool:
        """Send the in-flight batch (or make one from the queue) until answered or out of time."""
        if self.in_flight is None:
            if not self.queue:
                return True
            items = self.queue[: self.config.batch_size]
            extra: list[dict[str, Any]] = []
            if self.acked_items and self.rng.random() < self.config.duplicate_rate:
                extra = self.rng.sample(self.acked_items, min(3, len(self.acked_items)))
                self.report.duplicates_sent += len(extra)
            self.in_flight = {
                "batch_id": f"B-{uuid.uuid4().hex[:16]}",
                "offline_since": self.offline_since.isoformat() if self.offline_since else None,
                "items": items + extra,
                "taken": len(items),
            }
        batch = self.in_flight
        while not self.expired(deadline):
            body = {
                "batch_id": batch["batch_id"],
                "sent_at": self.clock().isoformat(),
                "pending": max(0, len(self.queue) - batch["taken"]),
                "items": batch["items"],
            }
            if batch["offline_since"]:
                body["offline_since"] = batch["offline_since"]
            self.report.uploads += 1
            try:
                resp = self.http.post("/api/sync/upload", json=body)
            except httpx.TransportError:
                self._backoff()
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                self._backoff()
                continue
            if resp.status_code != 200:
                # A whole batch refused (should not happen): drop it rather than wedge the queue.
                self.report.errors.append(f"upload {resp.status_code}: {resp.text[:200]}")
                del self.queue[: batch["taken"]]
                self.in_flight = None
                return False
            answered = resp.json()["results"]
            for item, result in zip(batch["items"], answered, strict=True):
                status = result["status"]
                self.report.count(status)
                if item["type"] == "sale" and status in ("applied", "duplicate"):
                    self.report.acknowledged.add(item["payload"]["event_id"])
                if item["type"] == "product_override" and "version" in result:
                    self.override_versions[item["payload"]["product_id"]] = result["version"]
                if status in ("applied", "duplicate") and item["type"] in ("sale", "inventory"):
                    self.acked_items.append(item)
            del self.queue[: batch["taken"]]
            self.in_flight = None
            self.offline_since = None
            return True
        return False

    # --- the day ---------------------------------------------------------------------------------
    def _ring_up(self, n: int) -> None:
        products = sorted(self.catalog)
        lines = []
        units = cents = 0
        for pid in self.rng.sample(products, min(len(products), self.rng.randint(1, 3))):
            qty = self.rng.randint(1, 3)
            lines.append(
                {
                    "product_id": pid,
                    "quantity": qty,
                    "unit_price_cents": self.catalog[pid],
                    "discount_cents": 0,
                }
            )
            units += qty
            cents += qty * self.catalog[pid]
        event_id = str(uuid.uuid4())
        sale = {
            "event_id": event_id,
            "occurred_at": self.clock().isoformat(),
            "store_id": self.config.store_id,
            "device_id": self.device_id,
            "transaction_id": f"{self.device_id}-{n:06d}",
            "kind": "sale",
            "cashier_id": f"C{self.rng.randint(1, 5):02d}",
            "payment_type": self.rng.choice(["cash", "card", "card", "mobile"]),
            "lines": lines,
        }
        self.queue.append({"mutation_id": f"m-{event_id}", "type": "sale", "payload": sale})
        self.report.sold[event_id] = cents
        self.report.units[event_id] = units
        if self.rng.random() < self.config.edit_rate:
            pid = self.rng.choice(products)
            self.queue.append(
                {
                    "mutation_id": f"m-{uuid.uuid4()}",
                    "type": "product_override",
                    "base_version": self.override_versions.get(pid, 0),
                    "edited_at": self.clock().isoformat(),
                    "payload": {"product_id": pid, "shelf_label": f"{self.device_id}-{n % 50:02d}"},
                }
            )
        if self.rng.random() < self.config.bad_rate:
            bad = {**sale, "event_id": str(uuid.uuid4()), "lines": [{**lines[0], "quantity": 0}]}
            self.queue.append({"mutation_id": f"m-{bad['event_id']}", "type": "sale", "payload": bad})

    def run(self, deadline: float) -> TerminalReport:
        try:
            if not self._download(deadline) or not self.catalog:
                self.report.errors.append("no catalog downloaded")
                return self.report
            for n in range(self.config.sales_per_terminal):
                if self.expired(deadline):
                    break
                self._ring_up(n)
                if self.offline_for > 0:
                    self.offline_for -= 1
                elif self.rng.random() < self.config.offline_rate:
                    self.offline_for = self.rng.randint(*self.config.offline_sales)
                    self.offline_since = self.offline_since or self.clock()
                    self.report.offline_periods += 1
                elif len(self.queue) >= self.config.batch_size or self.rng.random() < 0.3:
                    self._upload(deadline)
                if self.config.pace_seconds:
                    time.sleep(self.config.pace_seconds)
            # Back online at closing time: flush everything, retrying until the deadline.
            while (self.queue or self.in_flight) and not self.expired(deadline):
                self._upload(deadline)
            self.report.unsent = len(self.queue)
            return self.report
        finally:
            self.http.close()


def run_simulation(config: SimulationConfig) -> SimulationReport:
    """Run every terminal in its own thread until done or ``deadline_seconds`` have passed."""
    started = time.monotonic()
    deadline = started + config.deadline_seconds
    terminals = [Terminal(config, device, key, i) for i, (device, key) in enumerate(config.keys)]
    threads = [threading.Thread(target=t.run, args=(deadline,), name=t.device_id) for t in terminals]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=config.deadline_seconds + 30)
    return SimulationReport(terminals=[t.report for t in terminals], seconds=time.monotonic() - started)

"""A small, realistic chain written straight into a real ops store, with its expected totals."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from chainsync.ops_store.catalog import upsert_products, upsert_stores
from chainsync.ops_store.events import InboxRow, append_events
from chainsync.schemas.events import InventoryEvent, SaleEvent, SaleLine, SecurityEvent, SyncEvent


@dataclass
class ChainTotals:
    """Expected mart totals over the sale events appended (refunds subtract, voids excluded)."""

    units: int = 0
    net_revenue_cents: int = 0
    sale_events: int = 0
    sale_lines: int = 0
    series: set[tuple[str, str]] = field(default_factory=set)

    def add(self, event: SaleEvent) -> None:
        self.sale_events += 1
        self.sale_lines += len(event.lines)
        if event.kind == "void":
            return
        sign = 1 if event.kind == "sale" else -1
        for line in event.lines:
            self.units += sign * line.quantity
            self.net_revenue_cents += sign * (line.quantity * line.unit_price_cents - line.discount_cents)
            self.series.add((event.store_id, line.product_id))


def seed_catalog(engine: Engine, stores: int, products: int) -> tuple[list[str], dict[str, int]]:
    store_ids = [f"S{i:02d}" for i in range(1, stores + 1)]
    prices = {f"P{i:03d}": 199 + 150 * i for i in range(1, products + 1)}
    upsert_stores(
        engine,
        [
            {
                "store_id": s,
                "name": f"Store {s}",
                "region": "North",
                "city": "Oslo",
                "opened_on": "2024-01-01",
                "timezone": "UTC",
            }
            for s in store_ids
        ],
    )
    upsert_products(
        engine,
        [
            {
                "product_id": p,
                "name": f"Product {p}",
                "category": "grocery",
                "unit_cost_cents": price // 2,
                "price_cents": price,
                "lead_time_days": 5,
                "is_active": True,
            }
            for p, price in prices.items()
        ],
    )
    return store_ids, prices


def sale_events(
    store_ids: list[str], prices: dict[str, int], start: date, days: int, seed: int, per_day: int = 4
) -> list[SaleEvent]:
    rng = random.Random(f"sale-events-{seed}")
    events: list[SaleEvent] = []
    products = sorted(prices)
    for d in range(days):
        day = start + timedelta(days=d)
        for store in store_ids:
            for t in range(per_day + (2 if day.weekday() >= 5 else 0)):
                kind = rng.choices(["sale", "refund", "void"], weights=[90, 6, 4])[0]
                lines = []
                for product in rng.sample(products, rng.randint(1, 3)):
                    qty = rng.randint(1, 4)
                    price = prices[product]
                    lines.append(
                        SaleLine(
                            product_id=product,
                            quantity=qty,
                            unit_price_cents=price,
                            discount_cents=rng.choice([0, 0, 0, price // 10]),
                        )
                    )
                events.append(
                    SaleEvent(
                        event_id=uuid.UUID(int=rng.getrandbits(128)),
                        occurred_at=datetime(
                            day.year, day.month, day.day, 9 + t % 10, rng.randint(0, 59), tzinfo=UTC
                        ),
                        store_id=store,
                        device_id=f"{store}-T1",
                        transaction_id=f"{store}-{d}-{t}-{seed}",
                        kind=kind,
                        cashier_id=f"{store}-C1",
                        payment_type=rng.choice(["cash", "card", "mobile"]),
                        lines=lines,
                    )
                )
    return events


def other_events(store_ids: list[str], prices: dict[str, int], start: date, days: int, seed: int) -> list:  # type: ignore[type-arg]
    rng = random.Random(f"other-events-{seed}")
    events: list = []  # type: ignore[type-arg]
    for store in store_ids:
        base = datetime(start.year, start.month, start.day, 6, tzinfo=UTC)
        for product in prices:
            events.append(
                InventoryEvent(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    occurred_at=base,
                    store_id=store,
                    device_id=f"{store}-T1",
                    product_id=product,
                    kind="count",
                    counted_level=200,
                )
            )
            events.append(
                InventoryEvent(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    occurred_at=base + timedelta(days=days // 2),
                    store_id=store,
                    device_id=f"{store}-T1",
                    product_id=product,
                    kind="receipt",
                    quantity_delta=48,
                )
            )
        for d in range(0, days, 7):
            at = base + timedelta(days=d, hours=3)
            events.append(
                SecurityEvent(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    occurred_at=at,
                    store_id=store,
                    device_id=f"{store}-T1",
                    kind="device_login_failure",
                    username="cashier",
                    outcome="failure",
                )
            )
            events.append(
                SyncEvent(
                    event_id=uuid.UUID(int=rng.getrandbits(128)),
                    occurred_at=at,
                    store_id=store,
                    device_id=f"{store}-T1",
                    session_id=f"sync-{store}-{d}",
                    offline_since=at - timedelta(minutes=30),
                    items_received=10,
                    items_applied=9,
                    items_duplicate=1,
                    duration_ms=120,
                )
            )
    return events


def append(engine: Engine, events: list) -> None:  # type: ignore[type-arg]
    """Append events with a received_at just after the last occurred_at (as a live till would)."""
    received = max(e.occurred_at for e in events) + timedelta(minutes=5)
    append_events(engine, [InboxRow.from_event(e) for e in events], received_at=received)

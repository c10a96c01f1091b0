"""Sales so far today, per store, straight from the ops store (the live figure the snapshot cannot give).

"Today" is each store's own business day in its timezone, the same day ``fct_sales_daily`` files a sale
under. Reads use the inbox's (event_type, occurred_at) index, so the cost follows today's volume."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, select

from chainsync.ops_store.tables import event_inbox, stores
from chainsync.schemas.events import SaleEvent


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _business_day_start(zone: ZoneInfo, now: datetime) -> tuple[date, datetime]:
    day = now.astimezone(zone).date()
    return day, datetime.combine(day, time.min, zone).astimezone(UTC)


def _summary(store_id: str, day: date | None, sales: Iterable[SaleEvent]) -> dict[str, Any]:
    counts = {"sale": 0, "refund": 0, "void": 0}
    units = net = sold_cents = 0
    for sale in sales:
        counts[sale.kind] += 1
        u, n = sale.signed_totals()
        units += u
        net += n
        if sale.kind == "sale":
            sold_cents += n
    return {
        "store_id": store_id,
        "business_day": day,
        "transactions": counts["sale"],
        "refunds": counts["refund"],
        "voids": counts["void"],
        "units": units,
        "net_revenue_cents": net,
        "avg_basket_cents": round(sold_cents / counts["sale"], 2) if counts["sale"] else None,
    }


def sales_today(
    engine: Engine, store_ids: Iterable[str] | None, *, now: datetime | None = None
) -> dict[str, Any]:
    """Today's transactions, refunds, voids, units, net revenue and average basket (cents) per store in
    ``store_ids`` (every store in the catalog when None), and their total."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        catalog: dict[str, str] = {
            str(sid): str(tz) for sid, tz in conn.execute(select(stores.c.store_id, stores.c.timezone))
        }
    wanted = sorted(catalog if store_ids is None else set(store_ids))
    starts = {s: _business_day_start(_zone(catalog.get(s)), now) for s in wanted}
    by_store: dict[str, list[SaleEvent]] = {s: [] for s in wanted}
    if wanted:
        earliest = min(start for _, start in starts.values()).replace(tzinfo=None)
        stmt = select(event_inbox.c.store_id, event_inbox.c.occurred_at, event_inbox.c.payload).where(
            event_inbox.c.event_type == "sale",
            event_inbox.c.occurred_at >= earliest,
            event_inbox.c.store_id.in_(wanted),
        )
        with engine.connect() as conn:
            for row in conn.execute(stmt):
                store_id, payload = str(row.store_id), str(row.payload)
                occurred: datetime = row.occurred_at.replace(tzinfo=UTC)  # stored as UTC wall time
                if starts[store_id][1] <= occurred <= now:
                    by_store[store_id].append(SaleEvent.model_validate_json(payload))
    per_store = [_summary(s, starts[s][0], by_store[s]) for s in wanted]
    total = _summary("all", None, (sale for sales in by_store.values() for sale in sales))
    return {"as_of": now, "stores": per_store, "total": total}

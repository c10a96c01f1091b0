"""Sales so far today, per store, straight from the ops store (the live figure the snapshot cannot give).

"Today" is each store's own business day in its timezone, the same day ``fct_sales_daily`` files a sale
under. The figures are kept incrementally at ingest (``chainsync.ops_store.live_sales``), so a call reads
one row per store: the same cost at 100 or 10 million events a day."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, select

from chainsync.ops_store.live_sales import FIGURES, business_day, day_totals, store_zone
from chainsync.ops_store.tables import stores


def _summary(store_id: str, day: date | None, figures: Mapping[str, int]) -> dict[str, Any]:
    sales = figures.get("transactions", 0)
    return {
        "store_id": store_id,
        "business_day": day,
        "transactions": sales,
        "refunds": figures.get("refunds", 0),
        "voids": figures.get("voids", 0),
        "units": figures.get("units", 0),
        "net_revenue_cents": figures.get("net_revenue_cents", 0),
        "avg_basket_cents": round(figures.get("sold_cents", 0) / sales, 2) if sales else None,
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
        days = {s: business_day(now, store_zone(catalog.get(s))) for s in wanted}
        found = day_totals(conn, days.items())
    per_store = [_summary(s, days[s], found.get((s, days[s]), {})) for s in wanted]
    total = {f: sum(found.get((s, days[s]), {}).get(f, 0) for s in wanted) for f in FIGURES}
    return {"as_of": now, "stores": per_store, "total": _summary("all", None, total)}

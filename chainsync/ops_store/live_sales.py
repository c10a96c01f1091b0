"""Today's sales per store, kept incrementally: every applied sale adds to its store's business-day row
in the same transaction that stores the event, so reading "today so far" is one indexed row per store,
whatever the day's volume.

A sale is filed under the business day of its ``occurred_at`` in its store's timezone (``stores.timezone``
when it is stored, UTC otherwise), the day ``fct_sales_daily`` files it under. Figures come from
:func:`chainsync.schemas.events.sale_totals`, the one definition of units and net cents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError
from sqlalchemy import Connection, select

from chainsync.ops_store.tables import live_store_sales
from chainsync.schemas.events import SaleEvent, sale_totals

if TYPE_CHECKING:
    from chainsync.ops_store.events import InboxRow

FIGURES = ("transactions", "refunds", "voids", "units", "net_revenue_cents", "sold_cents")
"""The additive columns of ``live_store_sales`` (cents are integers; ``sold_cents`` is the net of
``sale`` transactions only, the numerator of the average basket)."""


@lru_cache(maxsize=512)
def store_zone(name: str | None) -> ZoneInfo:
    """The zone named ``name``; UTC when it is empty or unknown (never fails a sale)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def business_day(occurred_at: datetime, zone: ZoneInfo) -> date:
    """The store-local date of ``occurred_at`` (naive values are UTC, as stored)."""
    aware = occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC)
    return aware.astimezone(zone).date()


@dataclass(slots=True)
class _Totals:
    transactions: int = 0
    refunds: int = 0
    voids: int = 0
    units: int = 0
    net_revenue_cents: int = 0
    sold_cents: int = 0

    def add(self, sale: Any) -> None:
        units, net = sale_totals(sale)
        if sale.kind == "sale":
            self.transactions += 1
            self.sold_cents += net
        elif sale.kind == "refund":
            self.refunds += 1
        else:
            self.voids += 1
        self.units += units
        self.net_revenue_cents += net


def add_sales(conn: Connection, rows: Sequence[InboxRow]) -> None:
    """Add the sales among ``rows`` (newly stored events, never duplicates) to their stores' day rows,
    inside the caller's transaction. One upsert per (store, day) touched."""
    sales = [r for r in rows if r.event_type == "sale" and r.store_id is not None]
    if not sales:
        return
    wanted = sorted({str(r.store_id) for r in sales})
    zones = {str(sid): store_zone(tz) for sid, tz in _store_zones(conn, wanted)}
    totals: dict[tuple[str, date], _Totals] = {}
    for row in sales:
        store = str(row.store_id)
        key = (store, business_day(row.occurred_at, zones.get(store) or store_zone(None)))
        try:
            # The validated event (a model, or the wire decoder's object), else the stored payload.
            sale = row.event if row.event is not None else SaleEvent.model_validate_json(row.payload)
        except ValidationError:
            # Stored anyway (the API validated it, or it is history); the landing quarantines it with
            # a reason, and the marts leave it out: so do the live figures.
            continue
        totals.setdefault(key, _Totals()).add(sale)
    if not totals:
        return
    # One statement, sent as the driver takes it: this runs in every ingest transaction, and
    # SQLAlchemy's compiling of an upsert cost more than the database's work on it.
    postgres = conn.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    values = "(" + ", ".join([mark] * (2 + len(FIGURES))) + ")"
    params: list[object] = []
    for (store, day), t in sorted(totals.items()):
        params += [store, day if postgres else day.isoformat(), *(getattr(t, f) for f in FIGURES)]
    conn.exec_driver_sql(
        f"INSERT INTO live_store_sales (store_id, business_day, {', '.join(FIGURES)}) "
        f"VALUES {', '.join([values] * len(totals))} ON CONFLICT (store_id, business_day) DO UPDATE SET "
        + ", ".join(f"{f} = live_store_sales.{f} + excluded.{f}" for f in FIGURES),
        tuple(params),
    )


def _store_zones(conn: Connection, store_ids: list[str]) -> list[tuple[str, str | None]]:
    postgres = conn.dialect.name == "postgresql"
    marks = ", ".join(["%s" if postgres else "?"] * len(store_ids))
    result = conn.exec_driver_sql(
        f"SELECT store_id, timezone FROM stores WHERE store_id IN ({marks})", tuple(store_ids)
    )
    return [(str(sid), None if tz is None else str(tz)) for sid, tz in result]


def day_totals(conn: Connection, days: Iterable[tuple[str, date]]) -> dict[tuple[str, date], dict[str, int]]:
    """The figures of each ``(store_id, business_day)`` in ``days`` that has any sale."""
    keys = list(days)
    if not keys:
        return {}
    t = live_store_sales
    stmt = select(t).where(
        t.c.store_id.in_(sorted({s for s, _ in keys})), t.c.business_day.in_({d for _, d in keys})
    )
    wanted = set(keys)
    out: dict[tuple[str, date], dict[str, int]] = {}
    for row in conn.execute(stmt).mappings():
        key = (str(row["store_id"]), row["business_day"])
        if key in wanted:
            out[key] = {f: int(row[f]) for f in FIGURES}
    return out

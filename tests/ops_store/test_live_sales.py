"""Live per-store sales (``live_store_sales``): kept in the ingest transaction on both engines, equal to
adding up the stored payloads, filed under each store's own business day; migration 0007 backfills them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from alembic import command
from sqlalchemy import select

from api.queries.sales import sales_today
from chainsync.ops_store import get_engine, make_engine, migrate
from chainsync.ops_store.catalog import upsert_stores
from chainsync.ops_store.engine import alembic_config
from chainsync.ops_store.events import InboxRow, append_events
from chainsync.ops_store.live_sales import FIGURES
from chainsync.ops_store.tables import event_inbox, live_store_sales
from chainsync.schemas.events import SaleEvent, SaleLine
from chainsync.settings import Settings

ZONES = {"S01": "UTC", "S02": "America/New_York", "S03": "Asia/Tokyo"}


def _sale(store: str, at: datetime, kind: str = "sale", qty: int = 2, price: int = 300) -> InboxRow:
    return InboxRow.from_event(
        SaleEvent(
            event_id=uuid.uuid4(),
            occurred_at=at,
            store_id=store,
            device_id=f"{store}-T1",
            transaction_id=f"T-{uuid.uuid4().hex[:10]}",
            kind=kind,  # type: ignore[arg-type]
            cashier_id="C1",
            payment_type="cash",
            lines=[SaleLine(product_id="P001", quantity=qty, unit_price_cents=price, discount_cents=25)],
        )
    )


def _stores(engine) -> None:  # type: ignore[no-untyped-def]
    upsert_stores(
        engine,
        [
            {"store_id": s, "name": s, "region": "R", "city": "C", "opened_on": None, "timezone": tz}
            for s, tz in ZONES.items()
        ],
    )


def _recomputed(engine) -> dict[tuple[str, date], dict[str, int]]:  # type: ignore[no-untyped-def]
    """The figures the slow way: every stored payload parsed and added up."""
    out: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    with engine.connect() as conn:
        for store, payload in conn.execute(
            select(event_inbox.c.store_id, event_inbox.c.payload).where(event_inbox.c.event_type == "sale")
        ):
            sale = SaleEvent.model_validate_json(payload)
            day = sale.occurred_at.astimezone(ZoneInfo(ZONES.get(store, "UTC"))).date()
            units, net = sale.signed_totals()
            f = out[(store, day)]
            f[{"sale": "transactions", "refund": "refunds", "void": "voids"}[sale.kind]] += 1
            f["units"] += units
            f["net_revenue_cents"] += net
            f["sold_cents"] += net if sale.kind == "sale" else 0
    return dict(out)


def _stored(engine) -> dict[tuple[str, date], dict[str, int]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {
            (r["store_id"], r["business_day"]): {f: r[f] for f in FIGURES}
            for r in conn.execute(select(live_store_sales)).mappings()
        }


# 23:30 UTC on Dec 2 is still Dec 2 in UTC and New York (18:30) but already Dec 3 in Tokyo (08:30).
LATE = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)


def test_totals_follow_ingest_exactly_once_by_business_day(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    _stores(engine)
    rows = [_sale(s, LATE) for s in ZONES] + [
        _sale("S01", LATE, "refund", qty=1),
        _sale("S02", LATE, "void"),
        _sale("S09", LATE),  # a store not in the catalog (yet): UTC
    ]
    assert append_events(engine, rows + rows[:2]).count("duplicate") == 2
    assert append_events(engine, rows[2:]) == ["duplicate"] * (len(rows) - 2)  # a replay adds nothing
    stored = _stored(engine)
    assert stored == _recomputed(engine)
    assert set(stored) == {
        ("S01", date(2026, 12, 2)),
        ("S02", date(2026, 12, 2)),
        ("S03", date(2026, 12, 3)),
    } | {("S09", date(2026, 12, 2))}
    s01 = stored[("S01", date(2026, 12, 2))]
    assert (s01["transactions"], s01["refunds"], s01["units"]) == (1, 1, 2 - 1)
    assert s01["net_revenue_cents"] == (2 * 300 - 25) - (300 - 25)

    # The API's figure reads those rows: New York is still on Dec 2, Tokyo on Dec 3.
    today = sales_today(engine, None, now=LATE)
    by_store = {s["store_id"]: s for s in today["stores"]}
    assert by_store["S02"]["business_day"] == date(2026, 12, 2) and by_store["S02"]["voids"] == 1
    assert by_store["S03"]["business_day"] == date(2026, 12, 3) and by_store["S03"]["transactions"] == 1
    assert today["total"]["transactions"] == 3
    assert today["total"]["avg_basket_cents"] == 2 * 300 - 25


def test_an_unreadable_payload_is_stored_but_not_counted(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    bad = InboxRow(str(uuid.uuid4()), "sale", "S01", "T1", LATE, '{"not": "a sale"}')
    assert append_events(engine, [bad, _sale("S01", LATE)]) == ["applied", "applied"]
    assert _stored(engine)[("S01", date(2026, 12, 2))]["transactions"] == 1


def test_migration_0007_backfills_sales_stored_before_it(settings: Settings) -> None:
    engine = make_engine(settings.ops_store)
    migrate(engine)
    command.downgrade(alembic_config(engine), "0006")  # (also proves 0008 and 0007 step back cleanly)
    _stores(engine)
    with engine.begin() as conn:  # the inbox as 0006 left it: no live table to add to yet
        rows = [_sale(s, LATE) for s in ZONES for _ in range(3)] + [_sale("S02", LATE, "refund")]
        conn.execute(
            event_inbox.insert(),
            [
                {
                    "event_id": r.event_id,
                    "seq": i,
                    "event_type": "sale",
                    "store_id": r.store_id,
                    "device_id": r.device_id,
                    "occurred_at": r.occurred_at,
                    "received_at": LATE,
                    "payload": r.payload,
                }
                for i, r in enumerate(rows, start=1)
            ],
        )
    migrate(engine)
    assert _stored(engine) == _recomputed(engine)
    assert sum(f["transactions"] for f in _stored(engine).values()) == 9
    engine.dispose()

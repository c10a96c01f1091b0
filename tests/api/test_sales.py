"""GET /api/sales/today: live per-store totals from the ops store, each store's own business day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from chainsync.ops_store.catalog import upsert_stores
from tests.api.conftest import bearer, sale_event


def _line(qty: int, price: int, discount: int = 0) -> dict[str, int | str]:
    return {"product_id": "P001", "quantity": qty, "unit_price_cents": price, "discount_cents": discount}


def test_today_counts_only_todays_sales_of_visible_stores(
    client: TestClient, engine: Engine, tokens: dict[str, str], device_keys: dict[str, str]
) -> None:
    upsert_stores(
        engine,
        [
            {"store_id": s, "name": s, "region": "R", "city": "C", "opened_on": None, "timezone": "UTC"}
            for s in ("S001", "S002", "S003")
        ],
    )
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=1, microsecond=0)
    if now - today < timedelta(seconds=5):  # just after midnight: stay inside today
        today = now
    yesterday = (today - timedelta(days=1)).isoformat()
    posts = [
        ("S001", sale_event(occurred_at=today.isoformat(), lines=[_line(2, 500, 100)])),  # +900
        (
            "S001",
            sale_event(occurred_at=today.isoformat(), lines=[_line(1, 300)], transaction_id="T-300"),
        ),  # +300
        (
            "S001",
            sale_event(
                occurred_at=today.isoformat(), kind="refund", lines=[_line(1, 300)], refund_of="T-300"
            ),
        ),  # -300
        ("S001", sale_event(occurred_at=today.isoformat(), kind="void", lines=[_line(9, 999)])),  # 0
        ("S001", sale_event(occurred_at=yesterday, lines=[_line(5, 1000)])),  # not today
        ("S002", sale_event(store_id="S002", occurred_at=today.isoformat(), lines=[_line(3, 200)])),  # +600
    ]
    for store, event in posts:
        resp = client.post("/api/events/sales", json=event, headers={"X-API-Key": device_keys[store]})
        assert resp.status_code == 201, resp.text

    admin = client.get("/api/sales/today", headers=bearer(tokens["admin"])).json()
    per_store = {s["store_id"]: s for s in admin["stores"]}
    assert set(per_store) == {"S001", "S002", "S003"}
    s1 = per_store["S001"]
    assert (s1["transactions"], s1["refunds"], s1["voids"]) == (2, 1, 1)
    assert s1["units"] == 2 + 1 - 1
    assert s1["net_revenue_cents"] == 900 + 300 - 300
    assert s1["avg_basket_cents"] == (900 + 300) / 2
    assert per_store["S003"]["transactions"] == 0 and per_store["S003"]["avg_basket_cents"] is None
    assert admin["total"]["net_revenue_cents"] == 900 + 600

    manager = client.get("/api/sales/today", headers=bearer(tokens["manager"])).json()
    assert {s["store_id"] for s in manager["stores"]} == {"S001", "S002"}
    one = client.get("/api/sales/today", params={"store_id": "S002"}, headers=bearer(tokens["manager"]))
    assert one.status_code == 200 and one.json()["total"]["net_revenue_cents"] == 600
    assert (
        client.get(
            "/api/sales/today", params={"store_id": "S003"}, headers=bearer(tokens["manager"])
        ).status_code
        == 403
    )
    assert client.get("/api/sales/today", headers=bearer(tokens["cashier"])).status_code == 403

"""chainsync/ops_store/sale_rules.py through the real API: a refund names the sale it returns and returns
no more than it sold; a sale line names a product of the catalog (once there is one). On both engines."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from chainsync.ops_store.catalog import upsert_products
from chainsync.ops_store.tables import event_inbox, sync_dead_letters
from tests.api.conftest import recent, sale_event

pytestmark = pytest.mark.parametrize("ops_backend", ["sqlite", "postgresql"], indirect=True)

SALES = "/api/events/sales"


def _line(product: str = "P001", qty: int = 1) -> dict[str, Any]:
    return {"product_id": product, "quantity": qty, "unit_price_cents": 250, "discount_cents": 0}


def _post(client, key: str, body: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post(SALES, json=body, headers={"X-API-Key": key})


def _fields(resp) -> set[str]:  # type: ignore[no-untyped-def]
    return {e["field"] for e in resp.json()["errors"]}


def test_a_refund_returns_at_most_what_its_sale_sold(client, device_keys) -> None:
    key = device_keys["S001"]
    assert (
        _post(client, key, sale_event(transaction_id="T-1", lines=[_line(qty=2), _line("P002")])).status_code
        == 201
    )

    no_name = _post(client, key, sale_event(kind="refund", lines=[_line()]))
    assert no_name.status_code == 422 and _fields(no_name) == {"refund_of"}
    unknown = _post(client, key, sale_event(kind="refund", refund_of="T-404", lines=[_line()]))
    assert unknown.status_code == 422 and "names no sale" in unknown.json()["errors"][0]["message"]
    not_sold = _post(client, key, sale_event(kind="refund", refund_of="T-1", lines=[_line("P003")]))
    assert not_sold.status_code == 422 and _fields(not_sold) == {"lines.0.product_id"}

    first = sale_event(kind="refund", refund_of="T-1", lines=[_line(qty=1)])
    assert _post(client, key, first).status_code == 201
    assert _post(client, key, first).status_code == 200  # a retry is a duplicate, not a second return
    too_many = _post(client, key, sale_event(kind="refund", refund_of="T-1", lines=[_line(qty=2)]))
    assert too_many.status_code == 422 and _fields(too_many) == {"lines.0.quantity"}
    assert "sold 2, returned already 1" in too_many.json()["errors"][0]["message"]
    assert (
        _post(client, key, sale_event(kind="refund", refund_of="T-1", lines=[_line(qty=1)])).status_code
        == 201
    )

    # Another store's terminal cannot return this store's sale.
    other = _post(
        client,
        device_keys["S002"],
        sale_event(store_id="S002", kind="refund", refund_of="T-1", lines=[_line()]),
    )
    assert other.status_code == 422 and _fields(other) == {"refund_of"}
    # Only a refund names a sale.
    odd = _post(client, key, sale_event(refund_of="T-1", lines=[_line()]))
    assert odd.status_code == 422 and _fields(odd) == {"refund_of"}


def test_a_batch_may_sell_then_return_and_racing_returns_cannot_both_pass(
    client, device_keys, engine
) -> None:
    key = device_keys["S001"]
    batch = [
        sale_event(transaction_id="T-7", lines=[_line(qty=1)]),
        sale_event(kind="refund", refund_of="T-7", lines=[_line(qty=1)]),
        sale_event(kind="refund", refund_of="T-7", lines=[_line(qty=1)]),  # the unit is back already
    ]
    resp = client.post(SALES, json={"events": batch}, headers={"X-API-Key": key})
    assert resp.status_code == 200
    assert [r["status"] for r in resp.json()["results"]] == ["applied", "applied", "rejected"]
    assert resp.json()["results"][2]["errors"][0]["field"] == "lines.0.quantity"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event_inbox)).scalar_one() == 2


def test_unknown_products_are_refused_once_there_is_a_catalog(client, device_keys, engine) -> None:
    key = device_keys["S001"]
    # No catalog yet (a fresh install): nothing to check against.
    assert _post(client, key, sale_event(lines=[_line("P777")])).status_code == 201
    upsert_products(
        engine,
        [
            {
                "product_id": "P001",
                "name": "One",
                "category": "c",
                "unit_cost_cents": 1,
                "price_cents": 250,
                "lead_time_days": 7,
                "is_active": True,
            }
        ],
    )
    assert _post(client, key, sale_event(lines=[_line("P001")])).status_code == 201
    resp = _post(client, key, sale_event(lines=[_line("P001"), _line("P999")]))
    assert resp.status_code == 422 and _fields(resp) == {"lines.1.product_id"}
    assert "not a product in the catalog" in resp.json()["errors"][0]["message"]


def test_an_offline_upload_is_held_to_the_same_rules(client, device_keys, engine) -> None:
    key = device_keys["S001"]
    sale = sale_event(transaction_id="T-9", lines=[_line(qty=1)])
    back = sale_event(kind="refund", refund_of="T-9", lines=[_line(qty=3)])
    items = [
        {"mutation_id": "m-1", "type": "sale", "payload": sale},
        {"mutation_id": "m-2", "type": "sale", "payload": back},
    ]
    resp = client.post(
        "/api/sync/upload",
        json={"batch_id": "B-9", "sent_at": recent(0.1), "items": items},
        headers={"X-API-Key": key},
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["applied", "rejected"]
    assert results[1]["errors"][0]["field"] == "lines.0.quantity"
    with engine.connect() as conn:
        dead = conn.execute(select(sync_dead_letters.c.mutation_id, sync_dead_letters.c.payload)).all()
    assert [d[0] for d in dead] == ["m-2"] and back["event_id"] in dead[0][1]

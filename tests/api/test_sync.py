"""Offline sync endpoints on a real SQLite ops store: upload (applied, duplicate, rejected, conflict,
replay, 413), download (full, incremental, paged, tombstones, stale cursor), status, health, conflict
resolution with its audit trail, and the OFFLINE_SYNC_* switches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine, func, select

from chainsync.ops_store.catalog import upsert_products
from chainsync.ops_store.sync.changes import prune_changes
from chainsync.ops_store.tables import event_inbox, products, sync_audit
from chainsync.serving import publish_snapshot
from chainsync.settings import Settings
from tests.api.conftest import bearer, inventory_event, sale_event

PRODUCTS = [
    {
        "product_id": f"P{i:03d}",
        "name": f"Product {i}",
        "category": "grocery",
        "unit_cost_cents": 100 + i,
        "price_cents": 199 + i,
        "lead_time_days": 7,
        "is_active": True,
    }
    for i in range(1, 6)
]


@pytest.fixture
def catalog(engine: Engine) -> list[dict[str, Any]]:
    upsert_products(engine, PRODUCTS)
    return PRODUCTS


def envelope(items: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "batch_id": f"B-{uuid.uuid4().hex[:12]}",
        "sent_at": datetime.now(UTC).isoformat(),
        "items": items,
    }
    body.update(overrides)
    return body


def sale_item(**overrides: Any) -> dict[str, Any]:
    event = sale_event(**overrides)
    return {"mutation_id": f"m-{event['event_id']}", "type": "sale", "payload": event}


def override_item(product_id: str, base_version: int, **values: Any) -> dict[str, Any]:
    return {
        "mutation_id": f"m-{uuid.uuid4().hex}",
        "type": "product_override",
        "base_version": base_version,
        "edited_at": datetime.now(UTC).isoformat(),
        "payload": {"product_id": product_id, **values},
    }


def upload(client, key: str, items: list[dict[str, Any]], **overrides: Any):  # type: ignore[no-untyped-def]
    return client.post("/api/sync/upload", json=envelope(items, **overrides), headers={"X-API-Key": key})


def download_all(client, key: str, cursor: str | None = None, limit: int = 1000):  # type: ignore[no-untyped-def]
    records: list[dict[str, Any]] = []
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        resp = client.get("/api/sync/download", params=params, headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        records.extend(body["records"])
        cursor = body["next_cursor"]
        pages += 1
        if not body["has_more"]:
            return records, cursor, pages
        assert pages < 100


def test_upload_answers_item_by_item_and_replay_changes_nothing(client, engine, device_keys, catalog) -> None:
    key = device_keys["S001"]
    good = sale_item()
    bad = sale_item(lines=[{"product_id": "P001", "quantity": "3", "unit_price_cents": 10}])
    unknown = sale_item(coupon="FREE")
    other_store = sale_item(store_id="S002")
    move = {"mutation_id": "m-move-1", "type": "inventory", "payload": inventory_event()}
    items = [good, bad, unknown, other_store, move]
    first = upload(client, key, items, batch_id="B-replay-1")
    assert first.status_code == 200, first.text
    body = first.json()
    assert [r["status"] for r in body["results"]] == [
        "applied",
        "rejected",
        "rejected",
        "rejected",
        "applied",
    ]
    assert body["results"][1]["errors"][0]["field"] == "payload.lines.0.quantity"
    assert body["results"][2]["errors"][0]["field"] == "payload.coupon"
    assert body["results"][3]["errors"][0]["field"] == "payload.store_id"
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(event_inbox)).scalar_one()

    again = upload(client, key, items, batch_id="B-replay-1").json()
    assert [r["status"] for r in again["results"]] == [
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "duplicate",
    ]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event_inbox)).scalar_one() == stored

    # The rejected items are in the dead-letter list, which does not block later uploads.
    later = upload(client, key, [sale_item()]).json()
    assert later["applied"] == 1
    status = client.get("/api/sync/status", headers={"X-API-Key": key}).json()
    (me,) = status["devices"]
    assert me["device_id"] == "POS-01" and me["rejected"] == 3
    assert {d["mutation_id"] for d in me["dead_letters"]} == {
        bad["mutation_id"],
        unknown["mutation_id"],
        other_store["mutation_id"],
    }
    assert status["poll_interval_seconds"] == 300


def test_sale_already_ingested_elsewhere_is_a_duplicate(client, device_keys, catalog) -> None:
    event = sale_event()
    assert (
        client.post("/api/events/sales", json=event, headers={"X-API-Key": device_keys["S001"]}).status_code
        == 201
    )
    body = upload(
        client, device_keys["S001"], [{"mutation_id": "m-x", "type": "sale", "payload": event}]
    ).json()
    assert body["results"][0]["status"] == "duplicate"


def test_envelope_errors_and_limits(client, device_keys, settings: Settings) -> None:
    key = {"X-API-Key": device_keys["S001"]}
    assert client.post("/api/sync/upload", content=b"{not json", headers=key).status_code == 400
    resp = client.post("/api/sync/upload", json={"items": [], "batch_id": "b"}, headers=key)
    assert resp.status_code == 422
    resp = client.post("/api/sync/upload", json=envelope([sale_item()], extra=1), headers=key)
    assert resp.status_code == 422 and any(e["field"] == "extra" for e in resp.json()["errors"])
    resp = client.post(
        "/api/sync/upload", json=envelope([sale_item()], sent_at="2026-11-27T10:00:00"), headers=key
    )
    assert resp.status_code == 422  # a device clock without a timezone is refused
    too_many = [sale_item() for _ in range(settings.ingest_batch_limit + 1)]
    assert client.post("/api/sync/upload", json=envelope(too_many), headers=key).status_code == 413
    huge = envelope([sale_item()], batch_id="B-huge")
    huge["items"][0]["payload"]["cashier_id"] = "x" * (settings.max_body_bytes + 10)
    assert client.post("/api/sync/upload", json=huge, headers=key).status_code == 413


def test_skewed_clock_is_measured_and_accepted(client, engine, device_keys, catalog) -> None:
    key = device_keys["S001"]
    ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = upload(client, key, [sale_item()], sent_at=ahead).json()
    assert body["applied"] == 1
    assert 7190 <= body["clock_skew_seconds"] <= 7210 and "warning" in body
    (me,) = client.get("/api/sync/status", headers={"X-API-Key": key}).json()["devices"]
    assert 7190 <= me["clock_skew_seconds"] <= 7210
    with engine.connect() as conn:
        sessions = (
            conn.execute(select(event_inbox.c.payload).where(event_inbox.c.event_type == "sync"))
            .scalars()
            .all()
        )
    assert len(sessions) == 1 and '"clock_skew_seconds":72' in sessions[0]


def test_download_full_incremental_paged_with_tombstones(
    client, engine, device_keys, catalog, settings
) -> None:
    key = device_keys["S001"]
    publish_snapshot(
        settings.serving,
        {
            "fct_stock_levels": pl.DataFrame(
                {
                    "store_id": ["S001", "S001", "S002"],
                    "product_id": ["P001", "P002", "P001"],
                    "on_hand_units": [5, 7, 9],
                }
            ),
            "reorder_suggestions": pl.DataFrame(
                {
                    "store_id": ["S001", "S002"],
                    "product_id": ["P002", "P001"],
                    "reorder_quantity": [12.0, 3.0],
                    "days_of_cover": [float("inf"), 2.0],
                }
            ),
        },
    )
    records, cursor, pages = download_all(client, key, limit=2)
    assert pages >= 3
    products_seen = {r["key"]: r for r in records if r["entity"] == "product"}
    assert set(products_seen) == {p["product_id"] for p in PRODUCTS}
    assert "unit_cost_cents" not in products_seen["P001"]["data"]
    stock = {r["key"]: r["data"]["on_hand_units"] for r in records if r["entity"] == "stock_level"}
    assert stock == {"P001": 5, "P002": 7}
    (reorder,) = [r for r in records if r["entity"] == "reorder_suggestion"]
    assert reorder["key"] == "P002" and reorder["data"]["reorder_quantity"] == 12.0
    assert reorder["data"]["days_of_cover"] is None  # infinity is not JSON

    # Nothing changed: an empty page.
    again, cursor2, _ = download_all(client, key, cursor)
    assert again == []

    # A price change and a deletion arrive as an upsert and a tombstone, nothing else.
    upsert_products(engine, [{**PRODUCTS[0], "price_cents": 999}, {**PRODUCTS[1], "is_active": False}])
    with engine.begin() as conn:
        conn.execute(products.delete().where(products.c.product_id == "P003"))
    changes, cursor3, _ = download_all(client, key, cursor2)
    by_key = {r["key"]: r for r in changes}
    assert by_key["P001"]["op"] == "upsert" and by_key["P001"]["data"]["price_cents"] == 999
    assert by_key["P002"]["op"] == "delete" and by_key["P003"]["op"] == "delete"
    assert len(changes) == 3
    # A full download after the deletion does not bring deleted products back.
    full, _, _ = download_all(client, key)
    assert {r["key"] for r in full if r["entity"] == "product"} == {"P001", "P004", "P005"}

    # A new snapshot resends the store's stock behind a reset marker.
    publish_snapshot(
        settings.serving,
        {
            "fct_stock_levels": pl.DataFrame(
                {"store_id": ["S001"], "product_id": ["P001"], "on_hand_units": [1]}
            )
        },
    )
    fresh, _, _ = download_all(client, key, cursor3)
    assert [r["op"] for r in fresh] == ["reset", "upsert"]


def test_cursor_errors(client, engine, device_keys, catalog) -> None:
    key = {"X-API-Key": device_keys["S001"]}
    assert (
        client.get("/api/sync/download", params={"cursor": "%%%not-a-cursor"}, headers=key).status_code == 400
    )
    _, cursor, _ = download_all(client, device_keys["S001"])
    upsert_products(engine, [{**PRODUCTS[0], "price_cents": 1}, {**PRODUCTS[0], "price_cents": 2}])
    upsert_products(engine, [{**PRODUCTS[0], "price_cents": 3}])
    with engine.connect() as conn:
        from chainsync.ops_store.tables import sync_changes

        last = conn.execute(select(func.max(sync_changes.c.seq))).scalar_one()
    prune_changes(engine, through_seq=last)
    resp = client.get("/api/sync/download", params={"cursor": cursor}, headers=key)
    assert resp.status_code == 410 and "full snapshot" in resp.json()["detail"]


def test_override_conflicts_queue_and_resolution_is_audited(
    client, engine, device_keys, tokens, catalog
) -> None:
    key = device_keys["S001"]
    first = upload(client, key, [override_item("P001", 0, shelf_label="A-01")]).json()["results"][0]
    assert first["status"] == "applied" and first["version"] == 1
    # Another terminal still at version 0 edits the same product: queued.
    stale = override_item("P001", 0, shelf_label="B-07", reorder_point=12)
    second = upload(client, key, [stale]).json()["results"][0]
    assert second["status"] == "conflict" and second["server_value"]["shelf_label"] == "A-01"
    # Catalog edits from a terminal: server wins at once.
    price = {"mutation_id": "m-price", "type": "product", "payload": {"product_id": "P001", "price_cents": 1}}
    third = upload(client, key, [price]).json()["results"][0]
    assert third["status"] == "conflict" and third["resolution"] == "server_wins"
    assert (
        upload(client, key, [override_item("P001", 5, shelf_label="Z")]).json()["results"][0]["status"]
        == "rejected"
    )
    assert (
        upload(client, key, [override_item("NOPE", 0, shelf_label="Z")]).json()["results"][0]["status"]
        == "rejected"
    )

    manager = bearer(tokens["manager"])
    queue = client.get("/api/sync/conflicts", headers=manager).json()["conflicts"]
    assert [c["conflict_id"] for c in queue] == [second["conflict_id"]]
    (me,) = client.get("/api/sync/status", headers={"X-API-Key": key}).json()["devices"]
    assert me["open_conflicts"] == 1

    assert (
        client.post(
            "/api/sync/resolve-conflicts",
            json={"resolutions": [{"conflict_id": second["conflict_id"], "strategy": "value"}]},
            headers=manager,
        ).status_code
        == 422
    )
    # Ids past SQLite's 64-bit integers are refused as input, not left to overflow in the store.
    for bad_id in (10**22, 0, -1):
        huge = client.post(
            "/api/sync/resolve-conflicts",
            json={"resolutions": [{"conflict_id": bad_id, "strategy": "server_wins"}]},
            headers=manager,
        )
        assert huge.status_code == 422, (bad_id, huge.text)
    resp = client.post(
        "/api/sync/resolve-conflicts",
        json={
            "resolutions": [
                {"conflict_id": second["conflict_id"], "strategy": "client_wins"},
                {"conflict_id": 9999, "strategy": "server_wins"},
            ]
        },
        headers=manager,
    )
    assert resp.status_code == 200, resp.text
    done, missing = resp.json()["results"]
    assert done["status"] == "resolved" and done["resolved_value"] == {
        "shelf_label": "B-07",
        "reorder_point": 12,
    }
    assert done["resolved_by"] == "mona" and done["version"] == 2
    assert missing["status"] == "not_found"
    again = client.post(
        "/api/sync/resolve-conflicts",
        json={"resolutions": [{"conflict_id": second["conflict_id"], "strategy": "server_wins"}]},
        headers=manager,
    )
    assert again.json()["results"][0]["status"] == "already_resolved"
    with engine.connect() as conn:
        audit = conn.execute(select(sync_audit)).all()
    assert len(audit) == 1 and audit[0].actor == "mona" and "client_wins" in audit[0].detail

    # The resolution reaches the terminal's next download.
    records, _, _ = download_all(client, key)
    (override,) = [r for r in records if r["entity"] == "product_override"]
    assert override["version"] == 2 and override["data"]["shelf_label"] == "B-07"


def test_roles_and_store_scoping(client, device_keys, tokens, catalog) -> None:
    conflict = None
    upload(client, device_keys["S002"], [override_item("P002", 0, shelf_label="x")])
    conflict = upload(client, device_keys["S002"], [override_item("P002", 0, shelf_label="y")]).json()[
        "results"
    ][0]
    assert conflict["status"] == "conflict"
    manager = bearer(tokens["manager"])  # S001, S002
    assert client.get("/api/sync/status", headers=bearer(tokens["cashier"])).status_code == 403
    assert client.get("/api/sync/health", headers={"X-API-Key": device_keys["S001"]}).status_code == 403
    assert client.get("/api/sync/download", headers=manager).status_code == 403
    assert client.get("/api/sync/status", params={"store_id": "S003"}, headers=manager).status_code == 403
    devices = client.get("/api/sync/status", headers=manager).json()["devices"]
    assert {d["store_id"] for d in devices} == {"S002"}
    health = client.get("/api/sync/health", headers=bearer(tokens["admin"])).json()
    assert health["status"] in {"ok", "degraded"} and health["open_conflicts"] == 1
    assert health["oldest_unsynced_device"]["store_id"] == "S002"
    assert health["items"]["applied"] == 1 and health["items"]["conflict"] == 1


def test_sync_disabled_answers_503(settings, monkeypatch, device_keys) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    app = create_app(settings.model_copy(update={"offline_sync_enabled": False}))
    with TestClient(app) as c:
        resp = c.post(
            "/api/sync/upload", json=envelope([sale_item()]), headers={"X-API-Key": device_keys["S001"]}
        )
        assert resp.status_code == 503 and "OFFLINE_SYNC_ENABLED" in resp.json()["detail"]
        assert c.get("/api/sync/download").status_code == 503


def test_an_offline_upload_of_a_sale_dated_2099_is_refused_by_name(client, device_keys, engine) -> None:
    resp = upload(client, device_keys["S001"], [sale_item(), sale_item(occurred_at="2099-01-01T00:00:00Z")])
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert results[0]["status"] == "applied" and results[1]["status"] == "rejected"
    assert any(e["field"] == "payload.occurred_at" for e in results[1]["errors"])

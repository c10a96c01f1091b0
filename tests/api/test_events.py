"""POST /api/events/sales and /api/events/inventory: device keys, strict validation, per-item batch
results, idempotency and atomic writes, on a real SQLite ops store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from chainsync.ops_store import sale_rules
from chainsync.ops_store.events import append_in_transaction, count_events
from chainsync.ops_store.tables import event_inbox
from tests.api.conftest import TestClient, bearer, inventory_event, recent, sale_event

SALES = "/api/events/sales"
INVENTORY = "/api/events/inventory"


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def stored_ids(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return list(conn.execute(select(event_inbox.c.event_id).order_by(event_inbox.c.seq)).scalars())


def rows_with_id(engine, event_id: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(event_inbox).where(event_inbox.c.event_id == event_id)
        ).scalar_one()


# --- single events -------------------------------------------------------------------------------


def test_single_sale_is_applied_then_duplicate_and_stored_once(client, device_keys, engine) -> None:
    event = sale_event()
    first = client.post(SALES, json=event, headers=key_header(device_keys["S001"]))
    assert first.status_code == 201
    assert first.json() == {"event_id": event["event_id"], "status": "applied"}
    again = client.post(SALES, json=event, headers=key_header(device_keys["S001"]))
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert rows_with_id(engine, event["event_id"]) == 1


def test_bearer_device_key_works_too(client, device_keys, engine) -> None:
    resp = client.post(INVENTORY, json=inventory_event(), headers=bearer(device_keys["S001"]))
    assert resp.status_code == 201
    assert count_events(engine, "inventory") == 1


def test_stored_payload_is_the_validated_event_in_utc(client, device_keys, engine) -> None:
    local = recent(hours_ago=3, utc_offset_hours=1)  # e.g. 2026-11-27T10:15:00+01:00
    event = sale_event(occurred_at=local)
    client.post(SALES, json=event, headers=key_header(device_keys["S001"]))
    with engine.connect() as conn:
        payload = json.loads(conn.execute(select(event_inbox.c.payload)).scalar_one())
    in_utc = datetime.fromisoformat(local).astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    assert payload["occurred_at"].startswith(in_utc)
    assert payload["lines"] == event["lines"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"surprise": 1}, "surprise"),
        ({"lines": [{"product_id": "P1", "quantity": True, "unit_price_cents": 100}]}, "lines.0.quantity"),
        ({"lines": [{"product_id": "P1", "quantity": 1.0, "unit_price_cents": 100}]}, "lines.0.quantity"),
        ({"lines": [{"product_id": "P1", "quantity": "2", "unit_price_cents": 100}]}, "lines.0.quantity"),
        (
            {"lines": [{"product_id": "P1", "quantity": 1, "unit_price_cents": 10**30}]},
            "lines.0.unit_price_cents",
        ),
        ({"lines": [{"product_id": "P1", "quantity": 1, "unit_price_cents": 100, "x": 1}]}, "lines.0.x"),
        ({"occurred_at": "2026-11-27T10:15:00"}, "occurred_at"),
        ({"occurred_at": 1795842398}, "occurred_at"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"kind": "theft"}, "kind"),
        ({"lines": []}, "lines"),
    ],
)
def test_invalid_sale_gets_422_naming_the_field(client, device_keys, engine, overrides, field) -> None:
    resp = client.post(SALES, json=sale_event(**overrides), headers=key_header(device_keys["S001"]))
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert field in [e["field"] for e in body["errors"]], body
    assert field in body["detail"]
    assert all(e["message"] for e in body["errors"])
    assert count_events(engine) == 0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected_naming_the_field(client, device_keys, token) -> None:
    raw = json.dumps(sale_event()).replace('"quantity": 2', f'"quantity": {token}')
    resp = client.post(
        SALES, content=raw, headers={**key_header(device_keys["S001"]), "Content-Type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "lines.0.quantity"


def test_inventory_rules_are_enforced(client, device_keys) -> None:
    resp = client.post(
        INVENTORY,
        json=inventory_event(kind="shrinkage", quantity_delta=3),
        headers=key_header(device_keys["S001"]),
    )
    assert resp.status_code == 422
    assert "shrinkage" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"", 422),
        (b"[1, 2]", 422),
        (b'"an event"', 422),
        (b"42", 422),
        (b'{"events": [], "extra": 1}', 422),
        (b'{"events": {"a": 1}}', 422),
        (b'{"events": []}', 422),
    ],
)
def test_malformed_envelope_is_a_clear_4xx_never_500(client, device_keys, raw, status) -> None:
    resp = client.post(
        SALES, content=raw, headers={**key_header(device_keys["S001"]), "Content-Type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    assert resp.json()["detail"]
    assert resp.headers["X-Request-ID"]


# --- identity and roles ---------------------------------------------------------------------


def test_device_cannot_post_another_stores_event(client, device_keys, engine) -> None:
    resp = client.post(SALES, json=sale_event(store_id="S002"), headers=key_header(device_keys["S001"]))
    assert resp.status_code == 403
    assert resp.json()["errors"][0]["field"] == "store_id"
    assert count_events(engine) == 0


def test_user_tokens_even_admin_get_403(client, tokens, engine) -> None:
    for role in ("admin", "manager", "cashier"):
        resp = client.post(SALES, json=sale_event(), headers=bearer(tokens[role]))
        assert resp.status_code == 403, role
    assert count_events(engine, "sale") == 0
    assert count_events(engine, "security") == 3  # each denial is audited


def test_revoked_or_unknown_key_is_401(client, device_keys, engine) -> None:
    from chainsync.ops_store.users import revoke_device_key

    key = device_keys["S001"]
    revoke_device_key(engine, key[4:].split("_", 1)[0])
    assert client.post(SALES, json=sale_event(), headers=key_header(key)).status_code == 401
    assert client.post(SALES, json=sale_event(), headers=key_header(key[:-2] + "zz")).status_code == 401


# --- batches ---------------------------------------------------------------------------------


def test_batch_answers_per_item_and_writes_only_valid_items(client, device_keys, engine) -> None:
    good = [sale_event() for _ in range(3)]
    other_store = sale_event(store_id="S002")
    bad_type = sale_event(lines=[{"product_id": "P1", "quantity": False, "unit_price_cents": 1}])
    batch = [good[0], bad_type, good[1], other_store, good[2], good[0], "not an object"]
    resp = client.post(SALES, json={"events": batch}, headers=key_header(device_keys["S001"]))
    assert resp.status_code == 200
    body = resp.json()
    assert [r["status"] for r in body["results"]] == [
        "applied",
        "rejected",
        "applied",
        "rejected",
        "applied",
        "duplicate",
        "rejected",
    ]
    assert [r["index"] for r in body["results"]] == list(range(7))
    assert (body["applied"], body["duplicate"], body["rejected"]) == (3, 1, 3)
    assert body["results"][1]["errors"][0]["field"] == "lines.0.quantity"
    assert body["results"][1]["event_id"] == bad_type["event_id"]
    assert body["results"][3]["errors"][0]["field"] == "store_id"
    assert "S001" in body["results"][3]["errors"][0]["message"]
    assert body["results"][6]["event_id"] is None
    assert sorted(stored_ids(engine)) == sorted(e["event_id"] for e in good)


def test_batch_retry_is_idempotent(client, device_keys, engine) -> None:
    batch = {"events": [sale_event() for _ in range(5)]}
    first = client.post(SALES, json=batch, headers=key_header(device_keys["S001"])).json()
    second = client.post(SALES, json=batch, headers=key_header(device_keys["S001"])).json()
    assert first["applied"] == 5 and second["duplicate"] == 5 and second["applied"] == 0
    assert count_events(engine, "sale") == 5


def test_batch_over_the_limit_is_413(client, device_keys, settings, engine) -> None:
    batch = {"events": [sale_event() for _ in range(settings.ingest_batch_limit + 1)]}
    resp = client.post(SALES, json=batch, headers=key_header(device_keys["S001"]))
    assert resp.status_code == 413
    assert str(settings.ingest_batch_limit) in resp.json()["detail"]
    assert count_events(engine) == 0


def test_body_over_max_bytes_is_413_by_content_length_and_by_stream(
    client, device_keys, settings, engine
) -> None:
    big = json.dumps({"events": [sale_event(transaction_id="T" + "x" * 60)] * 20_000}).encode()
    assert len(big) > settings.max_body_bytes
    headers = {**key_header(device_keys["S001"]), "Content-Type": "application/json"}
    resp = client.post(SALES, content=big, headers=headers)
    assert resp.status_code == 413
    assert str(settings.max_body_bytes) in resp.json()["detail"]
    assert resp.json()["request_id"] == resp.headers["X-Request-ID"]

    def chunks():  # no Content-Length: the limit must hold on the streamed size
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    resp = client.post(SALES, content=chunks(), headers=headers)
    assert resp.status_code == 413
    assert resp.json()["request_id"] == resp.headers["X-Request-ID"]
    assert count_events(engine) == 0


def test_nothing_is_half_written_when_the_transaction_fails(client, device_keys, engine, monkeypatch) -> None:
    def failing_append(engine_, rows):  # type: ignore[no-untyped-def]
        with engine_.begin() as conn:
            append_in_transaction(conn, rows)  # rows are inserted inside the transaction ...
            raise RuntimeError("disk on fire")  # ... which then fails before COMMIT

    monkeypatch.setattr(sale_rules, "append_terminal", failing_append)
    resp = client.post(
        SALES, json={"events": [sale_event() for _ in range(4)]}, headers=key_header(device_keys["S001"])
    )
    assert resp.status_code == 500
    assert resp.json()["detail"] == "Internal server error"
    assert "disk on fire" not in resp.text and "Traceback" not in resp.text
    assert resp.json()["request_id"] == resp.headers["X-Request-ID"]
    assert count_events(engine) == 0


def test_ingested_events_are_counted_in_metrics(client, device_keys, tokens) -> None:
    batch = {"events": [sale_event(), sale_event(store_id="S002")]}
    client.post(SALES, json=batch, headers=key_header(device_keys["S001"]))
    text = client.get("/metrics", headers=bearer(tokens["admin"])).text
    assert 'chainsync_events_ingested_total{event_type="sale",status="applied"} 1.0' in text
    assert 'chainsync_events_ingested_total{event_type="sale",status="rejected"} 1.0' in text


def test_inventory_batch(client, device_keys, engine) -> None:
    batch = {
        "events": [inventory_event(), inventory_event(kind="count", quantity_delta=None, counted_level=7)]
    }
    body = client.post(INVENTORY, json=batch, headers=key_header(device_keys["S001"])).json()
    assert body["applied"] == 2
    assert count_events(engine, "inventory") == 2
    # A sale sent to the inventory endpoint is not an inventory event.
    resp = client.post(INVENTORY, json=sale_event(), headers=key_header(device_keys["S001"]))
    assert resp.status_code == 422


def test_non_string_event_id_in_batch_is_reported_without_id(client: TestClient, device_keys) -> None:
    resp = client.post(
        SALES, json={"events": [sale_event(event_id=123)]}, headers=key_header(device_keys["S001"])
    )
    result = resp.json()["results"][0]
    assert result["status"] == "rejected" and result["event_id"] is None
    assert result["errors"][0]["field"] == "event_id"


def test_concurrent_retries_store_each_event_exactly_once(client, device_keys, engine) -> None:
    """Eight terminals' requests in flight at once (grouped into shared commits by the inbox writer),
    all carrying the same 30 events plus 10 of their own: each event is applied exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    shared = [sale_event() for _ in range(30)]

    def post(_: int) -> dict:  # type: ignore[type-arg]
        own = [sale_event() for _ in range(10)]
        resp = client.post(SALES, json={"events": shared + own}, headers=key_header(device_keys["S001"]))
        assert resp.status_code == 200
        return resp.json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(post, range(8)))
    applied_shared = {r["event_id"] for b in bodies for r in b["results"][:30] if r["status"] == "applied"}
    assert applied_shared == {e["event_id"] for e in shared}
    assert sum(b["applied"] for b in bodies) == 30 + 8 * 10
    assert sum(b["duplicate"] for b in bodies) == 7 * 30
    assert count_events(engine, "sale") == 30 + 8 * 10
    with engine.connect() as conn:
        seqs = list(conn.execute(select(event_inbox.c.seq).order_by(event_inbox.c.seq)).scalars())
    assert seqs == list(range(1, 30 + 8 * 10 + 1))  # the watermark stays gap-free


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        ("2001-06-01T12:00:00+00:00", "in the past"),
        ("2099-06-01T12:00:00+00:00", "in the future"),
    ],
)
def test_sales_dated_outside_the_offline_window_are_refused(
    client, device_keys, engine, occurred_at, reason
) -> None:
    key = key_header(device_keys["S001"])
    single = client.post(SALES, json=sale_event(occurred_at=occurred_at), headers=key)
    assert single.status_code == 422
    assert (
        single.json()["errors"][0]["field"] == "occurred_at"
        and reason in single.json()["errors"][0]["message"]
    )
    batch = client.post(
        SALES, json={"events": [sale_event(), sale_event(occurred_at=occurred_at)]}, headers=key
    )
    assert batch.status_code == 200 and [r["status"] for r in batch.json()["results"]] == [
        "applied",
        "rejected",
    ]
    assert count_events(engine, "sale") == 1  # only the plausible one


def test_a_terminal_may_post_what_it_kept_offline_within_the_window(client, device_keys) -> None:
    key = key_header(device_keys["S001"])
    twenty_days_ago = recent(hours_ago=20 * 24)
    assert client.post(SALES, json=sale_event(occurred_at=twenty_days_ago), headers=key).status_code == 201
    slightly_ahead = recent(hours_ago=-0.02)  # about a minute ahead: within the clock-skew tolerance
    assert client.post(SALES, json=sale_event(occurred_at=slightly_ahead), headers=key).status_code == 201


def test_a_refund_of_100000_units_at_a_million_each_is_refused_by_line(client, device_keys, engine) -> None:
    key = key_header(device_keys["S001"])
    absurd = sale_event(
        kind="refund",
        lines=[
            {"product_id": "P001", "quantity": 2, "unit_price_cents": 399, "discount_cents": 0},
            {"product_id": "P002", "quantity": 100_000, "unit_price_cents": 100_000_000, "discount_cents": 0},
        ],
    )
    resp = client.post(SALES, json=absurd, headers=key)
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["errors"]} == {"lines.1.quantity", "lines.1.unit_price_cents"}
    ordinary = sale_event(
        lines=[{"product_id": "P001", "quantity": 12, "unit_price_cents": 129_999, "discount_cents": 0}]
    )
    assert client.post(SALES, json=ordinary, headers=key).status_code == 201
    assert count_events(engine, "sale") == 1

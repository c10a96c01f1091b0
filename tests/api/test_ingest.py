"""api/ingest.py: the whole-body fast path (the wire decoder) must accept only what the item-by-item path
accepts, store it byte for byte as the models would, and give the same results."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from api.ingest import fast_path, parse_envelope, validate_items
from api.plausibility import TimeWindow
from tests.api.conftest import inventory_event, recent, sale_event

ANY_TIME = TimeWindow(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))

LIMIT = 10

BAD_SALES = [
    {"surprise": 1},
    {"lines": [{"product_id": "P1", "quantity": True, "unit_price_cents": 100}]},
    {"lines": [{"product_id": "P1", "quantity": 1.0, "unit_price_cents": 100}]},
    {"lines": [{"product_id": "P1", "quantity": "2", "unit_price_cents": 100}]},
    {"lines": [{"product_id": "P1", "quantity": 1, "unit_price_cents": 10**30}]},
    {"lines": [{"product_id": "P1", "quantity": 2, "unit_price_cents": 100, "discount_cents": 201}]},
    {"occurred_at": "2026-11-27T10:15:00"},
    {"occurred_at": 1795842398},
    {"event_id": "not-a-uuid"},
    {"event_id": 12345},
    {"store_id": "bad id with spaces"},
    {"store_id": None},
    {"kind": "theft"},
    {"lines": []},
    {"event_type": "inventory"},
]


def fast(raw: bytes, event_type: str = "sale", window: TimeWindow = ANY_TIME):  # type: ignore[no-untyped-def]
    return fast_path(raw, event_type, LIMIT, store_id="S001", device_id="POS-01", window=window)


def both_paths(raw: bytes, event_type: str = "sale"):  # type: ignore[no-untyped-def]
    fast_result = fast(raw, event_type)
    items, _ = parse_envelope(raw, LIMIT)
    results, valid = validate_items(items, event_type, store_id="S001", device_id="POS-01", window=ANY_TIME)
    return fast_result, results, valid


@pytest.mark.parametrize("overrides", BAD_SALES)
@pytest.mark.parametrize("batched", [False, True])
def test_fast_path_refuses_whatever_the_item_path_rejects(overrides, batched) -> None:
    event = sale_event(**overrides)
    body = {"events": [sale_event(), event]} if batched else event
    fast_result, results, _ = both_paths(json.dumps(body).encode())
    assert fast_result is None
    assert any(r.status == "rejected" and r.errors for r in results)


@pytest.mark.parametrize("batched", [False, True])
def test_fast_path_accepts_what_the_item_path_accepts_with_the_same_events(batched) -> None:
    late = recent(utc_offset_hours=-5)  # with microseconds, in a zone west of UTC
    events = [sale_event(), sale_event(occurred_at=f"{late[:-6]}.123456{late[-6:]}")]
    raw = json.dumps({"events": events} if batched else events[0]).encode()
    fast_result, results, valid = both_paths(raw)
    assert fast_result is not None
    fast_results, rows, is_batch = fast_result
    assert is_batch is batched
    assert [r.payload for r in rows] == [e.payload_json() for _, e in valid]
    assert [r.occurred_at for r in rows] == [e.occurred_at for _, e in valid]
    assert [r.event_id for r in rows] == [str(e.event_id) for _, e in valid]
    assert fast_results == [r.as_dict() for r in results]
    assert all(not r.errors for r in results)


def test_fast_path_refuses_nan_oversize_and_odd_envelopes() -> None:
    good = json.dumps(sale_event())
    for raw in (
        good.replace('"quantity": 2', '"quantity": NaN'),
        json.dumps({"events": [sale_event() for _ in range(LIMIT + 1)]}),
        json.dumps({"events": []}),
        json.dumps({"events": [sale_event()], "extra": 1}),
        json.dumps([sale_event()]),
        "{not json",
    ):
        assert fast(raw.encode()) is None, raw[:60]


def test_fast_path_per_event_type() -> None:
    raw = json.dumps(inventory_event()).encode()
    assert fast(raw, "inventory") is not None
    assert fast(raw, "sale") is None

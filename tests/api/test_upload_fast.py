"""api/sync/upload.py: the upload fast path (the wire decoder) prepares exactly what the models' path does
for the uploads it takes, and leaves every other upload to the models."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.plausibility import TimeWindow
from api.sync.upload import fast_upload, parse_upload, prepare_items
from tests.api.conftest import inventory_event, recent, sale_event

WINDOW = TimeWindow(datetime(2000, 1, 1, tzinfo=UTC), datetime(2090, 1, 1, tzinfo=UTC))
LIMIT = 20


def _item(kind: str, payload: dict[str, Any], n: int, **extra: Any) -> dict[str, Any]:
    return {"mutation_id": f"m-{n}", "type": kind, "payload": payload, **extra}


def _upload(items: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"batch_id": "B-1", "sent_at": recent(0.1), "items": items, **extra}).encode()


def _both(raw: bytes):  # type: ignore[no-untyped-def]
    fast = fast_upload(raw, LIMIT, store_id="S001", device_id="POS-01", window=WINDOW)
    envelope = parse_upload(raw, LIMIT)
    slow = prepare_items(envelope.items, store_id="S001", device_id="POS-01", window=WINDOW)
    return fast, envelope, slow


def test_sales_and_inventory_prepare_as_the_models_prepare_them() -> None:
    items = [
        _item("sale", sale_event(), 1),
        _item("inventory", inventory_event(), 2, base_version=3, edited_at=recent(1)),
        _item("sale", sale_event(store_id="S002"), 3),  # another store's: refused by field
        _item("sale", sale_event(occurred_at="2099-01-01T00:00:00Z"), 4),
    ]
    fast, envelope, slow = _both(_upload(items, offline_since=recent(3), pending=7))
    assert fast is not None
    wire, prepared = fast
    assert (wire.batch_id, wire.sent_at, wire.offline_since, wire.pending) == (
        envelope.batch_id,
        envelope.sent_at,
        envelope.offline_since,
        envelope.pending,
    )
    assert [(p.index, p.mutation_id, p.item_type, p.errors) for p in prepared] == [
        (p.index, p.mutation_id, p.item_type, p.errors) for p in slow
    ]
    assert [p.row[:6] if p.row else None for p in prepared] == [p.row[:6] if p.row else None for p in slow]
    assert [bool(p.raw) for p in prepared] == [False, False, True, True]


@pytest.mark.parametrize(
    "items",
    [
        [
            {
                "mutation_id": "m-1",
                "type": "product_override",
                "base_version": 0,
                "payload": {"product_id": "P1", "reorder_point": 3},
            }
        ],
        [_item("sale", sale_event(kind="theft"), 1)],
        [_item("sale", sale_event(), 1, surprise=True)],
        [_item("refund", sale_event(), 1)],
        [_item("sale", sale_event(), n) for n in range(LIMIT + 1)],
    ],
    ids=["override", "invalid-kind", "unknown-field", "unknown-type", "too-many"],
)
def test_anything_else_takes_the_models_path(items: list[dict[str, Any]]) -> None:
    raw = _upload(items)
    assert fast_upload(raw, LIMIT, store_id="S001", device_id="POS-01", window=WINDOW) is None

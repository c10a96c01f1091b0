"""chainsync/schemas/wire.py: the fast decoder compiled from the event models accepts only what the models
accept, and stores what it accepts byte for byte as the models would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, model_validator

from chainsync.schemas.events import EventBase, InventoryEvent, SaleEvent
from chainsync.schemas.wire import WireError, compile_model, decode_body

LIMIT = 50


def _sale(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "3f2b8c1e-6d4a-4f7e-9a51-0c2d3e4f5a6b",
        "occurred_at": "2026-11-30T10:15:00+01:00",
        "store_id": "S001",
        "device_id": "POS-01",
        "transaction_id": "T-1",
        "kind": "sale",
        "cashier_id": "C01",
        "payment_type": "card",
        "lines": [{"product_id": "P001", "quantity": 2, "unit_price_cents": 399, "discount_cents": 0}],
    }
    event.update(overrides)
    return event


def _models_read(model: type[EventBase], raw: bytes) -> list[EventBase] | None:
    data = json.loads(raw)
    items = data["events"] if isinstance(data, dict) and "events" in data else [data]
    try:
        return [model.model_validate_json(json.dumps(item)) for item in items]
    except ValidationError:
        return None


def _agree(model: type[EventBase], raw: bytes) -> bool:
    """Assert the wire decoder's verdict is consistent with the models'; True when the wire accepted."""
    wire = decode_body(model, raw, LIMIT)
    if wire is None:
        return False
    models = _models_read(model, raw)
    assert models is not None, f"the wire decoder accepted what the models refuse: {raw!r}"
    events, _ = wire
    assert [e.payload for e in events] == [m.payload_json() for m in models]
    assert [e.event_id for e in events] == [str(m.event_id) for m in models]
    assert [e.occurred_at for e in events] == [m.occurred_at for m in models]
    assert [(e.store_id, e.device_id) for e in events] == [(m.store_id, m.device_id) for m in models]
    return True


ODD_SPELLINGS = [
    {"store_id": "S001\n"},
    {"store_id": ""},
    {"store_id": "S" * 65},
    {"store_id": "-S001"},
    {"cashier_id": "C01 "},
    {"event_id": "3F2B8C1E-6D4A-4F7E-9A51-0C2D3E4F5A6B"},
    {"event_id": "3f2b8c1e6d4a4f7e9a510c2d3e4f5a6b"},
    {"event_id": "{3f2b8c1e-6d4a-4f7e-9a51-0c2d3e4f5a6b}"},
    {"occurred_at": "2026-11-30 10:15:00+01:00"},
    {"occurred_at": "2026-11-30T10:15:00.1234567Z"},
    {"occurred_at": "2026-11-30T10:15:00+0100"},
    {"occurred_at": "2026-11-30t10:15:00z"},
    {"occurred_at": "2026-11-30T23:59:60Z"},
    {"occurred_at": "2026-11-30T24:00:00Z"},
    {"occurred_at": "0000-11-30T10:15:00Z"},
    {"occurred_at": "2026-02-30T10:15:00Z"},
    {"occurred_at": "2026-11-30T10:15:00-00:00"},
    {"occurred_at": "2026-11-30T10:15:00+25:00"},
    {"occurred_at": "2026-11-30T10:15:00"},
    {"occurred_at": "20261130T101500Z"},
    {"occurred_at": 1795842398},
    {"event_type": "sale"},
    {"kind": "refund", "refund_of": "T-0"},
    {"kind": "refund", "refund_of": None},
    {"kind": "refund", "refund_of": "bad id"},
    {"kind": "refund", "refund_of": 7},
    {"kind": "theft"},
    {"lines": []},
    {"lines": [{"product_id": "P1", "quantity": 2, "unit_price_cents": 100, "discount_cents": 201}]},
    {"lines": [{"product_id": "P1", "quantity": 2.0, "unit_price_cents": 100}]},
    {"lines": [{"product_id": "P1", "quantity": True, "unit_price_cents": 100}]},
    {"lines": [{"product_id": "P1", "quantity": 1, "unit_price_cents": 10**30}]},
    {"lines": [{"product_id": "P1\n", "quantity": 1, "unit_price_cents": 1}]},
]


@pytest.mark.parametrize("overrides", ODD_SPELLINGS, ids=lambda o: json.dumps(o)[:50])
def test_odd_spellings_are_judged_as_the_models_judge_them(overrides: dict[str, Any]) -> None:
    for body in (_sale(**overrides), {"events": [_sale(), _sale(**overrides)]}):
        _agree(SaleEvent, json.dumps(body).encode())


def test_the_common_form_takes_the_fast_path() -> None:
    assert _agree(
        SaleEvent, json.dumps({"events": [_sale(), _sale(occurred_at="2026-11-30T09:15:00Z")]}).encode()
    )
    assert _agree(SaleEvent, json.dumps(_sale(occurred_at="2026-11-30T10:15:00.5-05:00")).encode())
    assert _agree(SaleEvent, json.dumps(_sale(kind="refund", refund_of="T-0")).encode())
    inventory = {
        k: v for k, v in _sale().items() if k in ("event_id", "occurred_at", "store_id", "device_id")
    }
    assert _agree(
        InventoryEvent,
        json.dumps({**inventory, "product_id": "P1", "kind": "count", "counted_level": 3}).encode(),
    )
    # A model's cross-field rule holds on the fast path too (a receipt must add stock).
    assert not _agree(
        InventoryEvent,
        json.dumps({**inventory, "product_id": "P1", "kind": "receipt", "quantity_delta": -3}).encode(),
    )


def test_duplicate_keys_and_whitespace() -> None:
    raw = json.dumps(_sale()).replace('"store_id": "S001"', '"store_id": "S002", "store_id": "S001"')
    _agree(SaleEvent, raw.encode())
    _agree(SaleEvent, b'  { "events" : [' + json.dumps(_sale()).encode() + b"] }")


TEXT = st.one_of(
    st.sampled_from(
        ["S001", "POS-01", "a", "A.b:c_d-e", "x" * 64, "x" * 65, "", " S1", "S1\n", "é1", "S\u00001"]
    ),
    st.text(max_size=8),
)
TIMES = st.one_of(
    st.sampled_from(
        ["2026-11-30T10:15:00Z", "2026-11-30T10:15:00.000001+14:00", "2026-11-30T10:15:00-23:59"]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(alphabet="0123456789-:TZ+. tz", max_size=32),
)
INTS = st.one_of(st.integers(-5, 5), st.integers(-(2**70), 2**70), st.booleans(), st.floats(allow_nan=False))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    store=TEXT,
    product=TEXT,
    when=TIMES,
    quantity=INTS,
    price=INTS,
    discount=INTS,
    kind=st.sampled_from(["sale", "refund", "void", "Sale", ""]),
    event_id=st.one_of(
        st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.uuids().map(lambda u: u.hex)
    ),
)
def test_generated_events_are_judged_as_the_models_judge_them(**draw: Any) -> None:
    line = {
        "product_id": draw["product"],
        "quantity": draw["quantity"],
        "unit_price_cents": draw["price"],
        "discount_cents": draw["discount"],
    }
    body = _sale(
        store_id=draw["store"],
        occurred_at=draw["when"],
        kind=draw["kind"],
        event_id=draw["event_id"],
        lines=[line],
    )
    _agree(SaleEvent, json.dumps(body).encode())


def test_a_rule_the_compiler_cannot_reproduce_fails_loudly() -> None:
    class Odd(BaseModel):
        quantity: int

        @model_validator(mode="after")
        def _odd(self) -> Odd:
            return self

    with pytest.raises(WireError, match="CROSS_FIELD_RULES"):
        compile_model(Odd)

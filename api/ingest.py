"""Event ingest: parse the request envelope and validate each item on its own against the shared strict
models (:mod:`chainsync.schemas.events`), so a batch can answer item by item.

The envelope is one event object, or ``{"events": [...]}`` with at most ``ingest_batch_limit`` items.
Identity comes from the device key: an item whose ``store_id`` or ``device_id`` differs from the key's is
rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pydantic_core
from fastapi import Depends, Request
from pydantic import TypeAdapter, ValidationError

from api.errors import field_errors
from api.metrics import Metrics
from api.plausibility import TimeWindow
from api.writer import InboxWriter
from api.ws.hub import Hub
from chainsync.ops_store.events import InboxRow
from chainsync.schemas.events import EventBase, InventoryEvent, SaleEvent
from chainsync.schemas.wire import decode_body
from chainsync.settings import Settings

ItemOutcome = Literal["applied", "duplicate", "rejected"]

MODELS: dict[str, type[EventBase]] = {"sale": SaleEvent, "inventory": InventoryEvent}
ADAPTERS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(model) for name, model in MODELS.items()}


class EnvelopeError(Exception):
    """The body as a whole cannot be read as one event or a batch of events."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(slots=True)
class ItemResult:
    index: int
    event_id: str | None
    status: ItemOutcome = "rejected"
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "status": self.status, "errors": self.errors}


def fast_path(
    raw: bytes, event_type: str, batch_limit: int, *, store_id: str, device_id: str, window: TimeWindow
) -> tuple[list[dict[str, Any]], list[InboxRow], bool] | None:
    """Fast path for the common case, a body of well-formed events: decoded by the wire decoder compiled
    from the models (:mod:`chainsync.schemas.wire`), then the key's identity and the plausibility rules
    (:mod:`api.plausibility`). Returns every item's result (as :meth:`ItemResult.as_dict` writes it;
    the valid ones ``rejected`` with no errors until the writer says), the inbox rows of the valid ones in
    order, and whether it was a batch; or None when the body is not all well-formed, in which case the
    caller takes the item-by-item path (:func:`parse_envelope`, :func:`validate_items`) to say what and
    where."""
    decoded = decode_body(MODELS[event_type], raw, batch_limit, row=InboxRow)
    if decoded is None:
        return None
    events, is_batch = decoded
    results: list[dict[str, Any]] = []
    rows: list[InboxRow] = []
    earliest, latest = window.earliest, window.latest
    sale = event_type == "sale"
    max_quantity, max_price = window.max_line_quantity, window.max_unit_price_cents
    for index, event in enumerate(events):
        ok = event.store_id == store_id and event.device_id == device_id
        ok = ok and earliest <= event.occurred_at <= latest
        if ok and sale:
            for line in event.event.lines:
                if line.quantity > max_quantity or line.unit_price_cents > max_price:
                    ok = False
                    break
        if ok:
            results.append({"index": index, "event_id": event.event_id, "status": "rejected", "errors": []})
            rows.append(event)
        else:
            result = ItemResult(index, event.event_id)
            _identity_ok(result, event.event, store_id=store_id, device_id=device_id, window=window)
            results.append(result.as_dict())
    return results, rows, is_batch


def parse_envelope(raw: bytes, batch_limit: int) -> tuple[list[Any], bool]:
    """Return ``(items, is_batch)`` or raise :class:`EnvelopeError` (400 not JSON, 413 too many items,
    422 wrong shape)."""
    if not raw.strip():
        raise EnvelopeError(422, 'Request body is empty; send one event object or {"events": [...]}')
    try:
        # NaN/Infinity are let through here so the item's validation names the field they sit in.
        data = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        raise EnvelopeError(400, f"Request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError(
            422,
            f'Request body must be a JSON object (one event, or {{"events": [...]}}), not {_json_type(data)}',
        )
    if "events" not in data:
        return [data], False
    unknown = sorted(set(data) - {"events"})
    if unknown:
        raise EnvelopeError(
            422, f"Unknown top-level field(s) {', '.join(unknown)}; a batch holds only 'events'"
        )
    items = data["events"]
    if not isinstance(items, list):
        raise EnvelopeError(422, f"'events' must be a JSON array of event objects, not {_json_type(items)}")
    if not items:
        raise EnvelopeError(422, "'events' is empty; send at least one event")
    if len(items) > batch_limit:
        raise EnvelopeError(
            413, f"Batch holds {len(items)} events; at most {batch_limit} are accepted per request"
        )
    return items, True


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), "an object")


def validate_items(
    items: list[Any], event_type: str, *, store_id: str, device_id: str, window: TimeWindow
) -> tuple[list[ItemResult], list[tuple[ItemResult, EventBase]]]:
    """Validate every item; return all results (rejected ones filled in) and the valid events in order."""
    adapter = ADAPTERS[event_type]
    results: list[ItemResult] = []
    valid: list[tuple[ItemResult, EventBase]] = []
    for index, item in enumerate(items):
        raw_id = item.get("event_id") if isinstance(item, dict) else None
        result = ItemResult(index=index, event_id=raw_id if isinstance(raw_id, str) else None)
        results.append(result)
        if not isinstance(item, dict):
            result.errors = [
                {"field": "(event)", "message": f"must be a JSON object, not {_json_type(item)}"}
            ]
            continue
        try:
            event: EventBase = adapter.validate_python(item)
        except ValidationError as exc:
            result.errors = field_errors(list(exc.errors(include_url=False)))
            continue
        if _identity_ok(result, event, store_id=store_id, device_id=device_id, window=window):
            valid.append((result, event))
    return results, valid


def _identity_ok(
    result: ItemResult, event: Any, *, store_id: str, device_id: str, window: TimeWindow
) -> bool:
    """Reject (into ``result``) an event claiming another store or device than the key's, or a time the
    terminal cannot plausibly have sold at (:mod:`api.plausibility`)."""
    result.event_id = str(event.event_id)
    if event.store_id != store_id:
        result.errors.append(
            {
                "field": "store_id",
                "message": f"does not match the store this device key is bound to ({store_id})",
            }
        )
    if event.device_id != device_id:
        result.errors.append(
            {"field": "device_id", "message": f"does not match the device this key is bound to ({device_id})"}
        )
    result.errors.extend(window.errors(event))
    return not result.errors


@dataclass(frozen=True, slots=True)
class IngestServices:
    """What the ingest routes use besides the device and the body: settings, the group-commit writer,
    metrics and the WebSocket hub."""

    settings: Settings
    writer: InboxWriter
    metrics: Metrics
    hub: Hub


async def get_ingest_services(request: Request) -> IngestServices:
    # One dependency for the four (each dependency costs FastAPI a little on every request, and this is
    # the hottest path); ``async``, so it is not run on a worker thread.
    state = request.app.state
    return IngestServices(state.settings, state.writer, state.metrics, state.hub)


IngestServicesDep = Annotated[IngestServices, Depends(get_ingest_services)]

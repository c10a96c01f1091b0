"""Validate an upload: the envelope as a whole, then each item on its own against the shared models, so a
bad item is answered (and dead-lettered) without holding up the others."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Union

import msgspec
import pydantic_core
from pydantic import ValidationError

from api.errors import field_errors
from api.plausibility import TimeWindow
from chainsync.ops_store.events import InboxRow
from chainsync.ops_store.sync.uploads import PreparedItem
from chainsync.schemas.wire import Layout, check_and_finish, compile_model, event_row
from chainsync.sync.protocol import ITEM_ADAPTER, InventoryItem, SaleItem, UploadEnvelope


class EnvelopeError(Exception):
    def __init__(self, status_code: int, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []


def parse_upload(raw: bytes, item_limit: int) -> UploadEnvelope:
    """The envelope, or :class:`EnvelopeError` (400 not JSON, 413 too many items, 422 wrong shape)."""
    try:
        data = pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        raise EnvelopeError(400, f"Request body is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("items"), list) and len(data["items"]) > item_limit:
        raise EnvelopeError(
            413, f"Upload holds {len(data['items'])} items; at most {item_limit} are accepted per batch"
        )
    try:
        return UploadEnvelope.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(list(exc.errors(include_url=False)))
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise EnvelopeError(422, f"Invalid upload: {summary}", errors) from None


def prepare_items(
    items: list[Any], *, store_id: str, device_id: str, window: TimeWindow
) -> list[PreparedItem]:
    out: list[PreparedItem] = []
    for index, item in enumerate(items):
        mid = item.get("mutation_id") if isinstance(item, dict) else None
        kind = item.get("type") if isinstance(item, dict) else None
        prepared = PreparedItem(
            index=index,
            mutation_id=mid if isinstance(mid, str) and 0 < len(mid) <= 64 else None,
            item_type=kind if isinstance(kind, str) and len(kind) <= 32 else None,
        )
        out.append(prepared)
        try:
            parsed = ITEM_ADAPTER.validate_python(item)
        except ValidationError as exc:
            prepared.errors = [_untagged(e) for e in field_errors(list(exc.errors(include_url=False)))]
            prepared.raw = pydantic_core.to_json(item, fallback=str).decode()
            continue
        if isinstance(parsed, SaleItem | InventoryItem):
            prepared.errors.extend(_event_errors(parsed.payload, store_id, device_id, window))
            if not prepared.errors:
                prepared.row = InboxRow.from_event(parsed.payload)
        if prepared.errors:
            prepared.raw = parsed.model_dump_json()
            continue
        prepared.parsed = parsed
    return out


def _event_errors(event: Any, store_id: str, device_id: str, window: TimeWindow) -> list[dict[str, str]]:
    """The key's identity and the plausibility rules (:mod:`api.plausibility`) for an item's event."""
    errors = []
    if event.store_id != store_id:
        errors.append(
            {"field": "payload.store_id", "message": f"does not match this device key's store ({store_id})"}
        )
    if event.device_id != device_id:
        errors.append(
            {
                "field": "payload.device_id",
                "message": f"does not match this device key's device ({device_id})",
            }
        )
    errors.extend(window.errors(event, prefix="payload."))
    return errors


# --- the fast path: the wire decoder compiled from the same models (chainsync.schemas.wire) ---------

_WIRE_ITEMS = {model: compile_model(model, tag_field="type") for model in (SaleItem, InventoryItem)}
_WIRE_ITEM_TYPES = {layout.struct: layout for layout in _WIRE_ITEMS.values()}
_EVENT_TYPE = {_WIRE_ITEMS[SaleItem].struct: "sale", _WIRE_ITEMS[InventoryItem].struct: "inventory"}


@lru_cache(maxsize=4)
def _upload_decoder(item_limit: int) -> tuple[Layout, msgspec.json.Decoder[Any]]:
    union: Any = Union[tuple(_WIRE_ITEM_TYPES)]  # noqa: UP007
    items: Any = Annotated[list[union], msgspec.Meta(min_length=1, max_length=item_limit)]
    layout = compile_model(UploadEnvelope, overrides={"items": (items, _WIRE_ITEM_TYPES, True)})
    return layout, msgspec.json.Decoder(layout.struct)


def fast_upload(
    raw: bytes, item_limit: int, *, store_id: str, device_id: str, window: TimeWindow
) -> tuple[Any, list[PreparedItem]] | None:
    """The common upload, well-formed sale and inventory items only, decoded and checked without the
    models: the envelope (``batch_id``, ``sent_at``, ``offline_since``, ``pending`` as
    :class:`UploadEnvelope` has them) and the prepared items, as :func:`parse_upload` and
    :func:`prepare_items` would make them. None for anything else (other item types, any invalid item,
    spellings only the models read): then take those."""
    layout, decoder = _upload_decoder(item_limit)
    try:
        envelope = decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    if not check_and_finish(layout, [envelope]):
        return None
    out: list[PreparedItem] = []
    for index, item in enumerate(envelope.items):
        event_type = _EVENT_TYPE[type(item)]
        prepared = PreparedItem(index=index, mutation_id=item.mutation_id, item_type=event_type)
        out.append(prepared)
        errors = _event_errors(item.payload, store_id, device_id, window)
        if errors:
            prepared.errors = errors
            prepared.raw = _ENCODE(item).decode()
        else:
            prepared.row = event_row(item.payload, event_type, InboxRow)
    return envelope, out


_ENCODE = msgspec.json.Encoder().encode

_TAGS = ("sale.", "inventory.", "product_override.", "product.")


def _untagged(error: dict[str, str]) -> dict[str, str]:
    """``sale.payload.lines.0.quantity`` -> ``payload.lines.0.quantity`` (the union's tag is noise)."""
    name = error["field"]
    for tag in _TAGS:
        if name.startswith(tag):
            return {**error, "field": name[len(tag) :]}
    return error

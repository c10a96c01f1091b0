"""Validate an upload: the envelope as a whole, then each item on its own against the shared models, so a
bad item is answered (and dead-lettered) without holding up the others."""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import ValidationError

from api.errors import field_errors
from api.plausibility import TimeWindow
from chainsync.ops_store.sync import PreparedItem
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
            event = parsed.payload
            if event.store_id != store_id:
                prepared.errors.append(
                    {
                        "field": "payload.store_id",
                        "message": f"does not match this device key's store ({store_id})",
                    }
                )
            if event.device_id != device_id:
                prepared.errors.append(
                    {
                        "field": "payload.device_id",
                        "message": f"does not match this device key's device ({device_id})",
                    }
                )
            prepared.errors.extend(window.errors(event, prefix="payload."))
        if prepared.errors:
            prepared.raw = parsed.model_dump_json()
            continue
        prepared.parsed = parsed
    return out


_TAGS = ("sale.", "inventory.", "product_override.", "product.")


def _untagged(error: dict[str, str]) -> dict[str, str]:
    """``sale.payload.lines.0.quantity`` -> ``payload.lines.0.quantity`` (the union's tag is noise)."""
    name = error["field"]
    for tag in _TAGS:
        if name.startswith(tag):
            return {**error, "field": name[len(tag) :]}
    return error

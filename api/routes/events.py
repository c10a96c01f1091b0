"""Event ingest for POS terminals (device API key only): sales and inventory, one event or a batch.

A batch answers item by item (applied, duplicate, rejected with reasons); all valid items go into the
ops store in one transaction, and the response is sent only after it has committed. ``event_id`` is the
idempotency key: a retried event answers ``duplicate`` and is stored once.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic_core
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.errors import request_id
from api.ingest import (
    EnvelopeError,
    IngestServices,
    IngestServicesDep,
    fast_path,
    parse_envelope,
    validate_items,
)
from api.models import FieldError
from api.plausibility import TimeWindow
from api.security.principals import DeviceAuth, Principal
from api.ws.feeds import publish_ingested
from chainsync.ops_store.events import InboxRow

router = APIRouter(prefix="/events", tags=["events"])

_BODY_DOC = (
    'Body: one event object, or `{"events": [...]}` with at most `ingest_batch_limit` events. '
    "Single event: 201 applied, 200 duplicate, 422 invalid (field and reason), 403 for another store. "
    'Batch: 200 with `{"results": [{"index", "event_id", "status", "errors"}], "applied", "duplicate", '
    '"rejected"}`.'
)


# The answers' shapes, for the OpenAPI schema only: the handlers write their bytes themselves (hot path).
class IngestedEvent(BaseModel):
    """A single event's answer: 201 ``applied``, 200 ``duplicate`` (stored before, stored once)."""

    event_id: str
    status: Literal["applied", "duplicate"]


class IngestItemResult(BaseModel):
    index: int  # position in ``events``
    event_id: str | None  # null when the item has none readable
    status: Literal["applied", "duplicate", "rejected"]
    errors: list[FieldError]  # empty unless rejected


class IngestedBatch(BaseModel):
    """A batch's answer (200), item by item, with the counts."""

    results: list[IngestItemResult]
    applied: int
    duplicate: int
    rejected: int


INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestedBatch | IngestedEvent, "description": "A batch, or a single duplicate event"},
    201: {"model": IngestedEvent, "description": "A single event, stored"},
}


def _json(body: Any, status_code: int) -> Response:
    # pydantic-core's serializer: several times faster than json.dumps on a batch's 100 results.
    return Response(pydantic_core.to_json(body), status_code=status_code, media_type="application/json")


async def _ingest(
    request: Request, event_type: Literal["sale", "inventory"], device: Principal, deps: IngestServices
) -> Response:
    rid = request_id(request)
    raw = await request.body()
    store_id, device_id = device.device_store, device.device_id or ""
    limit = deps.settings.ingest_batch_limit
    window = TimeWindow.now(deps.settings)
    fast = fast_path(raw, event_type, limit, store_id=store_id, device_id=device_id, window=window)
    if fast is not None:
        results, rows, is_batch = fast
        valid = [r for r in results if not r["errors"]]
    else:
        try:
            items, is_batch = parse_envelope(raw, limit)
        except EnvelopeError as exc:
            return _json({"detail": exc.detail, "request_id": rid}, exc.status_code)
        checked, window_ok = validate_items(
            items, event_type, store_id=store_id, device_id=device_id, window=window
        )
        results = [r.as_dict() for r in checked]
        valid = [results[r.index] for r, _ in window_ok]
        rows = [InboxRow.from_event(event) for _, event in window_ok]
    if rows:
        # Group commit with other requests in flight (api.writer); returns after COMMIT.
        outcomes = await deps.writer.append(rows)
        for result, (outcome, errors) in zip(valid, outcomes, strict=True):
            result["status"] = outcome
            if errors:  # refused by the store's own records (catalog, the sale a refund returns)
                result["errors"] = errors

    counts = {"applied": 0, "duplicate": 0, "rejected": 0}
    for result in results:
        counts[result["status"]] += 1
    for counted, n in counts.items():
        if n:
            deps.metrics.observe_ingest(event_type, counted, n)
    if counts["applied"] and event_type == "sale":
        publish_ingested(
            deps.hub, [row.event for row, r in zip(rows, valid, strict=True) if r["status"] == "applied"]
        )

    if is_batch:
        return _json({"results": results, **counts}, 200)
    return _single_response(results[0], event_type, rid)


def _single_response(result: dict[str, Any], event_type: str, rid: str | None) -> Response:
    body: dict[str, Any] = {"event_id": result["event_id"], "status": result["status"]}
    if result["status"] == "applied":
        return _json(body, status.HTTP_201_CREATED)
    if result["status"] == "duplicate":
        return _json(body, status.HTTP_200_OK)
    errors: list[dict[str, str]] = result["errors"]
    identity = {e["field"] for e in errors} <= {"store_id", "device_id"}
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return JSONResponse(
        {**body, "detail": f"Invalid {event_type} event: {summary}", "errors": errors, "request_id": rid},
        status_code=status.HTTP_403_FORBIDDEN if identity else status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post("/sales", summary="Ingest sale events", description=_BODY_DOC, responses=INGEST_RESPONSES)
async def ingest_sales(request: Request, device: DeviceAuth, deps: IngestServicesDep) -> Response:
    return await _ingest(request, "sale", device, deps)


@router.post(
    "/inventory", summary="Ingest inventory events", description=_BODY_DOC, responses=INGEST_RESPONSES
)
async def ingest_inventory(request: Request, device: DeviceAuth, deps: IngestServicesDep) -> Response:
    return await _ingest(request, "inventory", device, deps)

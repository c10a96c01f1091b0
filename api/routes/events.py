"""Event ingest for POS terminals (device API key only): sales and inventory, one event or a batch.

A batch answers item by item (applied, duplicate, rejected with reasons); all valid items go into the
ops store in one transaction, and the response is sent only after it has committed. ``event_id`` is the
idempotency key: a retried event answers ``duplicate`` and is stored once.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from api.deps import DeviceAuth, SettingsDep
from api.errors import request_id
from api.ingest import (
    EnvelopeError,
    ItemResult,
    check_identities,
    parse_envelope,
    validate_items,
    validate_whole_body,
)
from api.ws.feeds import publish_ingested
from chainsync.ops_store.events import InboxRow

router = APIRouter(prefix="/events", tags=["events"])

_BODY_DOC = (
    'Body: one event object, or `{"events": [...]}` with at most `ingest_batch_limit` events. '
    "Single event: 201 applied, 200 duplicate, 422 invalid (field and reason), 403 for another store. "
    'Batch: 200 with `{"results": [{"index", "event_id", "status", "errors"}], "applied", "duplicate", '
    '"rejected"}`.'
)


async def _ingest(
    request: Request,
    event_type: Literal["sale", "inventory"],
    device: DeviceAuth,
    settings: SettingsDep,
) -> JSONResponse:
    rid = request_id(request)
    raw = await request.body()
    store_id, device_id = device.device_store, device.device_id or ""
    fast = validate_whole_body(raw, event_type, settings.ingest_batch_limit)
    if fast is not None:
        events, is_batch = fast
        results, valid = check_identities(events, store_id=store_id, device_id=device_id)
    else:
        try:
            items, is_batch = parse_envelope(raw, settings.ingest_batch_limit)
        except EnvelopeError as exc:
            return JSONResponse({"detail": exc.detail, "request_id": rid}, status_code=exc.status_code)
        results, valid = validate_items(items, event_type, store_id=store_id, device_id=device_id)
    if valid:
        rows = [InboxRow.from_event(event) for _, event in valid]
        # Group commit with other requests in flight (api.writer); returns after COMMIT.
        statuses = await request.app.state.writer.append(rows)
        for (result, _), outcome in zip(valid, statuses, strict=True):
            result.status = outcome

    counts = {"applied": 0, "duplicate": 0, "rejected": 0}
    for result in results:
        counts[result.status] += 1
    metrics = request.app.state.metrics
    for outcome, n in counts.items():
        if n:
            metrics.observe_ingest(event_type, outcome, n)
    if counts["applied"]:
        publish_ingested(request.app.state.hub, (e for r, e in valid if r.status == "applied"))

    if is_batch:
        return JSONResponse({"results": [r.as_dict() for r in results], **counts}, status_code=200)
    return _single_response(results[0], event_type, rid)


def _single_response(result: ItemResult, event_type: str, rid: str | None) -> JSONResponse:
    body: dict[str, Any] = {"event_id": result.event_id, "status": result.status}
    if result.status == "applied":
        return JSONResponse(body, status_code=status.HTTP_201_CREATED)
    if result.status == "duplicate":
        return JSONResponse(body, status_code=status.HTTP_200_OK)
    identity = {e["field"] for e in result.errors} <= {"store_id", "device_id"}
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in result.errors[:5])
    return JSONResponse(
        {
            **body,
            "detail": f"Invalid {event_type} event: {summary}",
            "errors": result.errors,
            "request_id": rid,
        },
        status_code=status.HTTP_403_FORBIDDEN if identity else status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post("/sales", summary="Ingest sale events", description=_BODY_DOC)
async def ingest_sales(request: Request, device: DeviceAuth, settings: SettingsDep) -> JSONResponse:
    return await _ingest(request, "sale", device, settings)


@router.post("/inventory", summary="Ingest inventory events", description=_BODY_DOC)
async def ingest_inventory(request: Request, device: DeviceAuth, settings: SettingsDep) -> JSONResponse:
    return await _ingest(request, "inventory", device, settings)

"""Offline sync for POS terminals (issue 5): upload a batch made offline, download what the store needs
offline, see sync status and health, resolve edit conflicts.

* ``POST /api/sync/upload`` (device): one transaction per batch; each item answers ``applied``,
  ``duplicate``, ``rejected`` (field and reason; dead-lettered) or ``conflict``. Replaying a batch changes
  nothing. More than ``CHAINSYNC_INGEST_BATCH_LIMIT`` items, or a body over ``CHAINSYNC_MAX_BODY_BYTES``,
  answers 413.
* ``GET /api/sync/download?cursor=&limit=`` (device): catalog with prices, the store's overrides, stock
  levels and reorder suggestions, changed since the cursor; tombstones for deleted products. No cursor:
  a full snapshot. Malformed cursor 400, stale or unknown cursor 410.
* ``GET /api/sync/status`` (a device sees itself; manager+ their stores' devices).
* ``GET /api/sync/conflicts``, ``POST /api/sync/resolve-conflicts``, ``GET /api/sync/health`` (manager+).

``OFFLINE_SYNC_ENABLED=false`` answers 503 on every sync endpoint; ``OFFLINE_SYNC_INTERVAL`` is sent to
terminals as ``poll_interval_seconds``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import Field, StrictInt, model_validator
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, HubDep, MetricsDep, OptionalStoreIdQuery, SettingsDep, UploadWriterDep
from api.errors import request_id
from api.plausibility import TimeWindow
from api.security.principals import AccessDenied, DeviceAuth, ManagerPrincipal, Principal, RequireRole
from api.sync.download import download_page
from api.sync.snapshot import current_or_none
from api.sync.upload import EnvelopeError, fast_upload, parse_upload, prepare_items
from api.ws.feeds import publish_ingested
from chainsync.ops_store.sync import conflicts as conflict_store
from chainsync.ops_store.sync import devices as device_store
from chainsync.ops_store.sync import uploads as upload_store
from chainsync.schemas.events import StrictModel
from chainsync.sync.protocol import SCHEMA_VERSION, Cursor, CursorError, OverrideValues, StaleCursor

SKEW_WARNING_SECONDS = 300


async def require_sync_enabled(settings: SettingsDep) -> None:
    if not settings.offline_sync_enabled:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Offline sync is disabled on this server (OFFLINE_SYNC_ENABLED=false); "
            "keep the queue and retry later",
            headers={"Retry-After": str(settings.offline_sync_interval)},
        )


router = APIRouter(prefix="/sync", tags=["sync"], dependencies=[Depends(require_sync_enabled)])

require_device_or_manager = RequireRole("device", "manager", "admin")
DeviceOrManager = Annotated[Principal, Depends(require_device_or_manager)]


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("/upload", summary="Upload a batch of offline mutations")
async def upload(
    request: Request,
    device: DeviceAuth,
    settings: SettingsDep,
    writer: UploadWriterDep,
    metrics: MetricsDep,
    hub: HubDep,
) -> JSONResponse:
    started = time.perf_counter()
    raw = await request.body()
    store_id, device_id = device.device_store, device.device_id or ""
    window = TimeWindow.now(settings)
    limit = settings.ingest_batch_limit
    fast = fast_upload(raw, limit, store_id=store_id, device_id=device_id, window=window)
    if fast is not None:
        envelope, items = fast
    else:
        try:
            envelope = parse_upload(raw, limit)
        except EnvelopeError as exc:
            body: dict[str, Any] = {"detail": exc.detail, "request_id": request_id(request)}
            if exc.errors:
                body["errors"] = exc.errors
            return JSONResponse(body, status_code=exc.status_code)
        items = prepare_items(envelope.items, store_id=store_id, device_id=device_id, window=window)
    meta = upload_store.BatchMeta(
        store_id=store_id,
        device_id=device_id,
        batch_id=envelope.batch_id,
        sent_at=envelope.sent_at,
        offline_since=envelope.offline_since,
        pending=envelope.pending,
        actor=device.subject,
    )
    job = upload_store.UploadJob(meta, items, received_at=_now(), started=started)
    outcome = await writer.apply(job)  # group commit (api/writer.py); returns after COMMIT
    for name, n in outcome.counts.items():
        if n:
            metrics.events.labels("sync_item", name).inc(n)
    # Sales a terminal kept while offline reach the live ticker like any other newly stored sale.
    publish_ingested(
        hub,
        (
            item.row.event
            for item, result in zip(items, outcome.results, strict=True)
            if result.get("status") == "applied" and item.row is not None and item.row.event_type == "sale"
        ),
    )
    response: dict[str, Any] = {
        "batch_id": envelope.batch_id,
        "results": outcome.results,
        **outcome.counts,
        "clock_skew_seconds": outcome.clock_skew_seconds,
        "server_time": _now().isoformat(),
        "poll_interval_seconds": settings.offline_sync_interval,
    }
    if abs(outcome.clock_skew_seconds) > SKEW_WARNING_SECONDS:
        response["warning"] = (
            f"device clock is {outcome.clock_skew_seconds:+d} s off the server's; items were accepted with "
            "their device times, and the skew is recorded"
        )
    return JSONResponse(response)


@router.get("/download", summary="Download what the store needs offline")
async def download(
    request: Request,
    device: DeviceAuth,
    settings: SettingsDep,
    engine: EngineDep,
    cursor: Annotated[str | None, Query(max_length=1024, description="next_cursor of the last page")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="records per page")] = 1000,
) -> dict[str, Any]:
    try:
        position = Cursor.decode(cursor) if cursor else None
    except CursorError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Invalid cursor: {exc}") from None
    except StaleCursor as exc:
        raise HTTPException(status.HTTP_410_GONE, f"Stale cursor: {exc}") from None
    store_id = device.device_store
    snapshot = current_or_none(settings.serving)
    try:
        records, next_cursor, has_more = await run_in_threadpool(
            download_page, engine, snapshot, store_id, position, limit
        )
    except StaleCursor as exc:
        raise HTTPException(status.HTTP_410_GONE, f"Stale cursor: {exc}") from None
    now = _now()
    if not has_more:  # the device is up to date: that is its checkpoint
        await run_in_threadpool(
            device_store.record_download, engine, store_id, device.device_id or "", next_cursor.seq, now
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "store_id": store_id,
        "full": position is None,
        "records": records,
        "next_cursor": next_cursor.encode(),
        "has_more": has_more,
        "snapshot_version": snapshot.version if snapshot else None,
        "poll_interval_seconds": settings.offline_sync_interval,
        "server_time": now.isoformat(),
    }


def _visible_stores(principal: Principal, store_id: str | None) -> frozenset[str] | None:
    if store_id is not None:
        principal.require_store(store_id)
        return frozenset({store_id})
    return principal.stores


@router.get("/status", summary="Sync status per device")
async def sync_status(
    principal: DeviceOrManager,
    settings: SettingsDep,
    engine: EngineDep,
    store_id: OptionalStoreIdQuery = None,
) -> dict[str, Any]:
    now = _now()
    if principal.role == "device":
        devices = await run_in_threadpool(
            partial(
                device_store.device_status,
                engine,
                stores=[principal.device_store],
                device_id=principal.device_id,
                now=now,
            )
        )
    else:
        devices = await run_in_threadpool(
            partial(device_store.device_status, engine, stores=_visible_stores(principal, store_id), now=now)
        )
    return {
        "sync_enabled": settings.offline_sync_enabled,
        "poll_interval_seconds": settings.offline_sync_interval,
        "server_time": now.isoformat(),
        "devices": devices,
    }


@router.get("/conflicts", summary="The conflict queue of your stores")
async def conflicts(
    principal: ManagerPrincipal,
    engine: EngineDep,
    store_id: OptionalStoreIdQuery = None,
    state: Annotated[Literal["open", "resolved", "all"], Query(alias="status")] = "open",
) -> dict[str, Any]:
    rows = await run_in_threadpool(
        partial(
            conflict_store.list_conflicts,
            engine,
            stores=_visible_stores(principal, store_id),
            status=None if state == "all" else state,
        )
    )
    return {"conflicts": rows}


class Resolution(StrictModel):
    conflict_id: Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]
    strategy: Literal["server_wins", "client_wins", "last_writer_wins", "value"]
    value: OverrideValues | None = None

    @model_validator(mode="after")
    def _value_iff_given(self) -> Resolution:
        if (self.strategy == "value") != (self.value is not None):
            raise ValueError("'value' is given with strategy 'value', and only then")
        return self


class ResolveRequest(StrictModel):
    resolutions: Annotated[list[Resolution], Field(min_length=1, max_length=500)]


@router.post("/resolve-conflicts", summary="Resolve queued edit conflicts (audited)")
async def resolve_conflicts(
    body: ResolveRequest, principal: ManagerPrincipal, engine: EngineDep
) -> dict[str, Any]:
    # Every conflict must be in the caller's stores before anything is written.
    stores: dict[int, str | None] = {}
    for res in body.resolutions:
        stores[res.conflict_id] = await run_in_threadpool(
            conflict_store.conflict_store, engine, res.conflict_id
        )
        owner = stores[res.conflict_id]
        if owner is not None and not principal.can_see(owner):
            raise AccessDenied(
                f"Conflict {res.conflict_id} belongs to a store not assigned to you",
                subject=principal.subject,
                role=principal.role,
            )
    results: list[dict[str, Any]] = []
    for res in body.resolutions:
        if stores[res.conflict_id] is None:
            results.append({"conflict_id": res.conflict_id, "status": "not_found"})
            continue
        value = res.value.values() if res.value is not None else None
        try:
            resolved = await run_in_threadpool(
                partial(
                    conflict_store.resolve_conflict,
                    engine,
                    res.conflict_id,
                    res.strategy,
                    actor=principal.subject,
                    now=_now(),
                    value=value,
                )
            )
        except conflict_store.ConflictClosed as exc:
            results.append({"conflict_id": res.conflict_id, "status": "already_resolved", "detail": str(exc)})
            continue
        results.append({"status": "resolved", **resolved})
    return {"results": results}


@router.get("/health", summary="Sync service health")
async def sync_health(
    principal: ManagerPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    window: Annotated[int, Query(ge=60, le=7 * 24 * 3600, description="seconds")] = 3600,
) -> dict[str, Any]:
    now = _now()
    try:
        figures = await run_in_threadpool(
            partial(device_store.health_figures, engine, stores=principal.stores, now=now, window_s=window)
        )
        database = "ok"
    except Exception:  # noqa: BLE001 - health must answer, not fail
        figures, database = {}, "unavailable"
    oldest = figures.get("oldest_unsynced_device")
    overdue = oldest is not None and oldest["lag_seconds"] > 10 * settings.offline_sync_interval
    degraded = database != "ok" or figures.get("error_rate", 0) > 0.2 or overdue
    snapshot = current_or_none(settings.serving)
    return {
        "status": "degraded" if degraded else "ok",
        "sync_enabled": settings.offline_sync_enabled,
        "poll_interval_seconds": settings.offline_sync_interval,
        "database": database,
        "snapshot_version": snapshot.version if snapshot else None,
        "schema_version": SCHEMA_VERSION,
        "server_time": now.isoformat(),
        **figures,
    }

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
from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    model_serializer,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, HubDep, MetricsDep, OptionalStoreIdQuery, SettingsDep, UploadWriterDep
from api.errors import request_id
from api.models import FieldError, IsoTime, omitted_when_none
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


# --- response models ---------------------------------------------------------------------------------


class UploadItemResult(BaseModel):
    """One item's answer, in the batch's order. Which keys appear depends on ``status`` and the item's type:
    ``event_id`` for a sale or inventory item, ``errors`` when rejected, ``version`` when an override was
    applied, ``conflict_id``/``resolution``/``server_value`` (and ``server_version`` for an override) on a
    conflict, ``replayed`` when a retried mutation is answered with its first answer."""

    index: int
    mutation_id: str | None = None
    type: str | None = None  # sale, inventory, product_override, product
    status: Literal["applied", "duplicate", "rejected", "conflict"]
    event_id: str | None = omitted_when_none()
    errors: list[FieldError] | None = omitted_when_none()
    version: int | None = omitted_when_none()  # the override's version after the item
    conflict_id: int | None = omitted_when_none()
    resolution: str | None = None  # null: queued for a manager; server_wins: closed at once (catalog)
    server_version: int | None = omitted_when_none()
    server_value: dict[str, Any] | None = omitted_when_none()
    replayed: bool | None = omitted_when_none()


class UploadResult(BaseModel):
    """The answer to an upload (documentation: the handler writes it itself)."""

    batch_id: str
    results: list[UploadItemResult]
    applied: int
    duplicate: int
    rejected: int
    conflict: int
    clock_skew_seconds: int  # device clock minus server clock, in seconds
    server_time: IsoTime
    poll_interval_seconds: int
    warning: str | None = omitted_when_none("Only when the device clock is more than 5 minutes off")


class ProductData(BaseModel):
    product_id: str
    name: str
    category: str
    price_cents: int
    lead_time_days: int


class OverrideData(BaseModel):
    product_id: str
    shelf_label: str | None
    reorder_point: int | None


class ProductRecord(BaseModel):
    entity: Literal["product"]
    key: str  # the product_id
    op: Literal["upsert"]
    data: ProductData


class ProductTombstone(BaseModel):
    entity: Literal["product"]
    key: str
    op: Literal["delete"]  # deleted from the catalog: drop it


class OverrideRecord(BaseModel):
    entity: Literal["product_override"]
    key: str
    op: Literal["upsert"]
    version: int  # send it back as base_version when editing the override
    data: OverrideData


class SnapshotReset(BaseModel):
    entity: Literal["snapshot"]
    key: str  # the snapshot version
    op: Literal["reset"]  # drop the stock levels and reorder suggestions held; new ones follow


class SnapshotRecord(BaseModel):
    entity: Literal["stock_level", "reorder_suggestion"]
    key: str  # the product_id
    op: Literal["upsert"]
    data: dict[str, Any]  # the snapshot row's columns (fct_stock_levels, reorder_suggestions) but store_id


SyncRecord = ProductRecord | ProductTombstone | OverrideRecord | SnapshotReset | SnapshotRecord


class DownloadPage(BaseModel):
    schema_version: int
    store_id: str
    full: bool  # true: a full snapshot (no cursor sent)
    records: list[SyncRecord]
    next_cursor: str
    has_more: bool
    snapshot_version: str | None
    poll_interval_seconds: int
    server_time: IsoTime


class Checkpoint(BaseModel):
    upload_at: IsoTime | None
    batch_id: str | None
    download_at: IsoTime | None
    cursor_seq: int | None


class DeadLetter(BaseModel):
    mutation_id: str
    type: str
    errors: list[FieldError]
    at: IsoTime


class DeviceSyncStatus(BaseModel):
    store_id: str
    device_id: str
    last_checkpoint: Checkpoint
    pending: int  # items the device reported still queued
    rejected: int  # dead-lettered items
    dead_letters: list[DeadLetter]  # the 10 latest
    lag_seconds: int | None  # since the last upload
    clock_skew_seconds: int
    offline_since: IsoTime | None
    open_conflicts: int
    items_applied: int


class SyncStatus(BaseModel):
    sync_enabled: bool
    poll_interval_seconds: int
    server_time: IsoTime
    devices: list[DeviceSyncStatus]


class Conflict(BaseModel):
    conflict_id: int
    store_id: str
    device_id: str
    mutation_id: str
    entity: str  # product_override, product
    key: str  # the product_id
    base_version: int | None
    server_version: int | None
    client_value: dict[str, Any]
    server_value: dict[str, Any]
    client_edited_at: IsoTime | None  # skew-corrected
    status: str  # open, resolved
    resolution: str | None
    resolved_value: dict[str, Any] | None
    resolved_by: str | None
    resolved_at: IsoTime | None
    created_at: IsoTime


class Conflicts(BaseModel):
    conflicts: list[Conflict]


class ConflictResolved(Conflict):
    status: Literal["resolved"]
    version: int  # the override's version after the resolution


class ConflictNotResolved(BaseModel):
    conflict_id: int
    status: Literal["not_found", "already_resolved"]
    detail: str | None = omitted_when_none()  # why, when already resolved


class Resolutions(BaseModel):
    results: list[ConflictResolved | ConflictNotResolved]  # in the order of the request


class SyncItemCounts(BaseModel):
    applied: int
    duplicate: int
    rejected: int
    conflict: int


class OldestDevice(BaseModel):
    store_id: str
    device_id: str
    last_upload_at: IsoTime
    lag_seconds: int


_HEALTH_FIGURES = (
    "window_seconds",
    "items",
    "throughput_items_per_s",
    "error_rate",
    "open_conflicts",
    "dead_letters",
    "devices",
    "oldest_unsynced_device",
)


class SyncHealth(BaseModel):
    """The figures (from ``window_seconds`` on) are present when the database answered (``database``
    ``ok``), and left out when it did not."""

    status: Literal["ok", "degraded"]
    sync_enabled: bool
    poll_interval_seconds: int
    database: Literal["ok", "unavailable"]
    snapshot_version: str | None
    schema_version: int
    server_time: IsoTime
    window_seconds: int | None = None
    items: SyncItemCounts | None = None  # over the window
    throughput_items_per_s: float | None = None
    error_rate: float | None = None  # rejected share of the window's items
    open_conflicts: int | None = None
    dead_letters: int | None = None
    devices: int | None = None
    oldest_unsynced_device: OldestDevice | None = None  # the device longest without an upload

    @model_serializer(mode="wrap")
    def _figures_when_read(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # No return annotation: the serialization schema stays the model's own.
        data = handler(self)
        if self.database != "ok":
            for name in _HEALTH_FIGURES:
                data.pop(name, None)
        return data


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


@router.post(
    "/upload", summary="Upload a batch of offline mutations", responses={200: {"model": UploadResult}}
)
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
) -> DownloadPage:
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
    return DownloadPage.model_validate(
        {
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
    )


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
) -> SyncStatus:
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
    return SyncStatus.model_validate(
        {
            "sync_enabled": settings.offline_sync_enabled,
            "poll_interval_seconds": settings.offline_sync_interval,
            "server_time": now.isoformat(),
            "devices": devices,
        }
    )


@router.get("/conflicts", summary="The conflict queue of your stores")
async def conflicts(
    principal: ManagerPrincipal,
    engine: EngineDep,
    store_id: OptionalStoreIdQuery = None,
    state: Annotated[Literal["open", "resolved", "all"], Query(alias="status")] = "open",
) -> Conflicts:
    rows = await run_in_threadpool(
        partial(
            conflict_store.list_conflicts,
            engine,
            stores=_visible_stores(principal, store_id),
            status=None if state == "all" else state,
        )
    )
    return Conflicts.model_validate({"conflicts": rows})


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
) -> Resolutions:
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
    return Resolutions.model_validate({"results": results})


@router.get("/health", summary="Sync service health")
async def sync_health(
    principal: ManagerPrincipal,
    settings: SettingsDep,
    engine: EngineDep,
    window: Annotated[int, Query(ge=60, le=7 * 24 * 3600, description="seconds")] = 3600,
) -> SyncHealth:
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
    return SyncHealth.model_validate(
        {
            "status": "degraded" if degraded else "ok",
            "sync_enabled": settings.offline_sync_enabled,
            "poll_interval_seconds": settings.offline_sync_interval,
            "database": database,
            "snapshot_version": snapshot.version if snapshot else None,
            "schema_version": SCHEMA_VERSION,
            "server_time": now.isoformat(),
            **figures,
        }
    )

"""Applying a terminal's upload batch: every item in one transaction (sales and inventory through the
sale rules into the inbox, shelf-label overrides and catalog edits through the conflict policy), idempotent
by mutation id, many batches per group commit (:class:`api.writer.UploadWriter`).

Times are stored as naive UTC (as everywhere in the ops store) and returned timezone-aware.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chainsync.ops_store import cursor_locks
from chainsync.ops_store.events import InboxRow, append_in_transaction
from chainsync.ops_store.sale_rules import append_terminal_events
from chainsync.ops_store.tables import (
    products,
    store_product_overrides,
    sync_changes,
    sync_conflicts,
    sync_dead_letters,
    sync_devices,
    sync_mutations,
)
from chainsync.ops_store.times import naive as _naive
from chainsync.schemas.events import SyncEvent
from chainsync.sync.policy import decide_override
from chainsync.sync.protocol import CatalogItem, InventoryItem, OverrideItem, SaleItem

SYNC_NAMESPACE = uuid.UUID("6f0c9d0e-5d1a-4f7e-9a59-3c1f4f9b2a10")
OVERRIDE_FIELDS = ("shelf_label", "reorder_point")
MAX_DEAD_LETTER_PAYLOAD = 8_000
MAX_SKEW_SECONDS = 10**7

ParsedItem = SaleItem | InventoryItem | OverrideItem | CatalogItem


@dataclass(slots=True)
class PreparedItem:
    """One upload item after validation: ``errors`` when invalid; else the inbox ``row`` of a sale or
    inventory item, or the ``parsed`` override or catalog edit."""

    index: int
    mutation_id: str | None
    item_type: str | None
    parsed: ParsedItem | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    raw: str = ""
    row: InboxRow | None = None


@dataclass(frozen=True, slots=True)
class BatchMeta:
    store_id: str
    device_id: str
    batch_id: str
    sent_at: datetime
    offline_since: datetime | None
    pending: int
    actor: str


@dataclass(slots=True)
class UploadOutcome:
    results: list[dict[str, Any]]
    counts: dict[str, int]
    clock_skew_seconds: int
    session_event_id: str


def clock_skew_seconds(sent_at: datetime, now: datetime) -> int:
    """Device clock minus server clock, in whole seconds (positive: the device runs ahead)."""
    skew = round((sent_at - now).total_seconds())
    return max(-MAX_SKEW_SECONDS, min(MAX_SKEW_SECONDS, skew))


def override_row(conn: Connection, store_id: str, product_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(store_product_overrides).where(
            store_product_overrides.c.store_id == store_id,
            store_product_overrides.c.product_id == product_id,
        )
    ).first()
    return dict(row._mapping) if row is not None else None


def override_values(row: dict[str, Any] | None) -> dict[str, Any]:
    return {k: (row or {}).get(k) for k in OVERRIDE_FIELDS}


def _product_row(conn: Connection, product_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(products).where(products.c.product_id == product_id)).first()
    return dict(row._mapping) if row is not None else None


def write_override(
    conn: Connection, store_id: str, product_id: str, values: dict[str, Any], *, actor: str, now: datetime
) -> int:
    """Set a store's override of ``product_id`` (version + 1), log the change; returns the new version."""
    current = override_row(conn, store_id, product_id)
    merged = {**override_values(current), **{k: values.get(k) for k in OVERRIDE_FIELDS if k in values}}
    version = (current["version"] if current else 0) + 1
    row = {**merged, "version": version, "updated_at": _naive(now), "updated_by": actor[:160]}
    if current is None:
        conn.execute(insert(store_product_overrides).values(store_id=store_id, product_id=product_id, **row))
    else:
        conn.execute(
            update(store_product_overrides)
            .where(
                store_product_overrides.c.store_id == store_id,
                store_product_overrides.c.product_id == product_id,
            )
            .values(**row)
        )
    conn.execute(
        insert(sync_changes).values(
            store_id=store_id,
            entity="product_override",
            entity_key=product_id,
            op="upsert",
            changed_at=_naive(now),
        )
    )
    return version


def _catalog_values(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {"name": row["name"], "price_cents": row["price_cents"], "is_active": bool(row["is_active"])}


@dataclass(frozen=True, slots=True)
class UploadJob:
    meta: BatchMeta
    items: Sequence[PreparedItem]
    received_at: datetime
    started: float  # time.perf_counter() when the request arrived


def apply_upload(
    engine: Engine, meta: BatchMeta, items: Sequence[PreparedItem], *, received_at: datetime, started: float
) -> UploadOutcome:
    """Apply one upload in one transaction (committed when this returns) and answer item by item.

    A mutation id already stored for the device answers as it did the first time (``applied`` becomes
    ``duplicate``), so replaying a batch changes nothing. Rejected items go to the dead-letter table and
    never stop the items after them. One :class:`SyncEvent` per batch is appended to the inbox (its
    ``event_id`` derives from the batch id, so a replayed batch does not count twice)."""
    return apply_uploads(engine, [UploadJob(meta, items, received_at, started)])[0]


def apply_uploads(engine: Engine, jobs: Sequence[UploadJob]) -> list[UploadOutcome]:
    """Apply several uploads in order in one transaction (group commit): each batch is still all or
    nothing, and a later batch sees the earlier ones' mutation ids.

    The group's work is done in bulk, one statement per table rather than per batch: every batch is
    staged in order (mutation-id lookups, overrides and catalog edits, which must see each other), then
    the events of all batches go into the inbox in one append (received at the group's first arrival),
    then the dead letters, the mutation log and the batches' sync events, one insert each."""
    with engine.begin() as conn:
        if any(isinstance(it.parsed, OverrideItem) for job in jobs for it in job.items):
            # Lock order (cursor_locks): the change log before the inbox, which every upload takes.
            cursor_locks.hold(conn, cursor_locks.CHANGE_LOG)
        in_group: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        known = _known_mutations(conn, jobs)
        staged = [_stage(conn, job, known, in_group) for job in jobs]
        received = min(job.received_at for job in jobs)
        rows = [row for stage in staged for _, row in stage.events]
        outcomes_ = append_terminal_events(conn, rows, received_at=received) if rows else []
        at = 0
        for stage in staged:
            for i, row in stage.events:
                status, errors = outcomes_[at]
                stage.results[i]["status"] = status
                if errors:  # refused by the store's own records: dead-lettered with its reasons
                    stage.results[i]["errors"] = errors
                    stage.job.items[i].raw = row.payload
                at += 1
        dead: list[dict[str, Any]] = []
        log_rows: list[dict[str, Any]] = []
        sessions: list[InboxRow] = []
        outcomes = [_finish(stage, dead, log_rows, sessions) for stage in staged]
        _touch_devices(conn, staged, outcomes)
        if dead:
            conn.execute(insert(sync_dead_letters), dead)
        if log_rows:
            conn.execute(insert(sync_mutations), log_rows)
        append_in_transaction(conn, sessions, received_at=received)
        return outcomes


@dataclass(slots=True)
class _Stage:
    """One batch between staging and finishing: its answers so far, the inbox rows of its events (by item
    position), its first-time items, and repeats of an earlier batch's items in the same group (answered
    once that batch's outcome is known)."""

    job: UploadJob
    skew: int
    results: list[dict[str, Any]]
    events: list[tuple[int, InboxRow]]
    fresh: list[int]
    repeats: list[tuple[int, dict[str, Any]]]


def _known_mutations(
    conn: Connection, jobs: Sequence[UploadJob]
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The stored first answers of the group's mutation ids, by (store, device, mutation id): one query
    for the whole group (ids are the terminals' own, so a few may belong to another device: filtered)."""
    wanted = {
        (job.meta.store_id, job.meta.device_id, it.mutation_id)
        for job in jobs
        for it in job.items
        if it.mutation_id
    }
    ids = sorted({mid for _, _, mid in wanted})
    stores = sorted({job.meta.store_id for job in jobs})
    known: dict[tuple[str, str, str], dict[str, Any]] = {}
    t = sync_mutations
    for start in range(0, len(ids), 5_000):
        for store, device, mid, result in conn.execute(
            select(t.c.store_id, t.c.device_id, t.c.mutation_id, t.c.result).where(
                t.c.store_id.in_(stores), t.c.mutation_id.in_(ids[start : start + 5_000])
            )
        ):
            key = (str(store), str(device), str(mid))
            if key in wanted:
                known[key] = json.loads(str(result))
    return known


def _stage(
    conn: Connection,
    job: UploadJob,
    stored: dict[tuple[str, str, str], dict[str, Any]],
    in_group: dict[tuple[str, str], dict[str, dict[str, Any]]],
) -> _Stage:
    meta, items, now = job.meta, job.items, job.received_at
    skew = clock_skew_seconds(meta.sent_at, now)
    results: list[dict[str, Any]] = [{} for _ in items]
    known = {
        mid: first
        for it in items
        if (mid := it.mutation_id) and (first := stored.get((meta.store_id, meta.device_id, mid))) is not None
    }
    earlier = in_group.setdefault((meta.store_id, meta.device_id), {})

    seen: set[str] = set()
    stage = _Stage(job, skew, results, [], [], [])
    for i, item in enumerate(items):
        base = {"index": item.index, "mutation_id": item.mutation_id, "type": item.item_type}
        mid = item.mutation_id
        if mid is not None and mid in earlier:
            stage.repeats.append((i, earlier[mid]))  # an earlier batch of this group: answered at the end
            continue
        if mid is not None and (mid in known or mid in seen):
            first = known.get(mid)
            if first is None or first["status"] == "applied":
                results[i] = {**(first or base), "index": item.index, "status": "duplicate"}
            else:
                results[i] = {**first, "index": item.index, "replayed": True}
            continue
        if mid is not None:
            seen.add(mid)
        parsed = item.parsed
        if item.row is not None:
            stage.events.append((i, item.row))
            results[i] = {**base, "event_id": item.row.event_id}
        elif item.errors or parsed is None or isinstance(parsed, SaleItem | InventoryItem):
            results[i] = {**base, "status": "rejected", "errors": item.errors}
        elif isinstance(parsed, OverrideItem):
            results[i] = {**base, **_apply_override(conn, meta, parsed, skew=skew, now=now)}
        else:
            results[i] = {**base, **_catalog_edit(conn, meta, parsed, skew=skew, now=now)}
        stage.fresh.append(i)
    for i in stage.fresh:
        mid = items[i].mutation_id
        if mid is not None:
            earlier[mid] = results[i]  # the same dict: its status is filled in before repeats read it
    return stage


def _finish(
    stage: _Stage,
    dead: list[dict[str, Any]],
    log_rows: list[dict[str, Any]],
    sessions: list[InboxRow],
) -> UploadOutcome:
    job, results, skew = stage.job, stage.results, stage.skew
    meta, items, now = job.meta, job.items, job.received_at
    for i, first in stage.repeats:
        index = items[i].index
        if first["status"] == "applied":
            results[i] = {**first, "index": index, "status": "duplicate"}
        else:
            results[i] = {**first, "index": index, "replayed": True}
    dead.extend(
        {
            "store_id": meta.store_id,
            "device_id": meta.device_id,
            "mutation_id": items[i].mutation_id or "",
            "item_type": items[i].item_type or "",
            "errors": json.dumps(results[i].get("errors", [])),
            "payload": items[i].raw[:MAX_DEAD_LETTER_PAYLOAD],
            "created_at": _naive(now),
        }
        for i in stage.fresh
        if results[i]["status"] == "rejected"
    )
    log_rows.extend(
        {
            "store_id": meta.store_id,
            "device_id": meta.device_id,
            "mutation_id": items[i].mutation_id,
            "item_type": items[i].item_type or "",
            "status": results[i]["status"],
            "event_id": results[i].get("event_id"),
            "conflict_id": results[i].get("conflict_id"),
            "result": json.dumps(results[i]),
            "batch_id": meta.batch_id,
            "received_at": _naive(now),
        }
        for i in stage.fresh
        if items[i].mutation_id is not None
    )

    counts = {s: 0 for s in ("applied", "duplicate", "rejected", "conflict")}
    for r in results:
        counts[r["status"]] += 1
    session_id = str(uuid.uuid5(SYNC_NAMESPACE, f"{meta.store_id}/{meta.device_id}/{meta.batch_id}"))
    session = SyncEvent(
        event_id=uuid.UUID(session_id),
        occurred_at=meta.sent_at,
        store_id=meta.store_id,
        device_id=meta.device_id,
        session_id=meta.batch_id,
        offline_since=meta.offline_since,
        items_received=len(items),
        items_applied=counts["applied"],
        items_duplicate=counts["duplicate"],
        items_rejected=counts["rejected"],
        items_conflict=counts["conflict"],
        duration_ms=max(0, int((time.perf_counter() - job.started) * 1000)),
        clock_skew_seconds=skew,
    )
    sessions.append(InboxRow.from_event(session))
    return UploadOutcome(results=results, counts=counts, clock_skew_seconds=skew, session_event_id=session_id)


def _apply_override(
    conn: Connection, meta: BatchMeta, item: OverrideItem, *, skew: int, now: datetime
) -> dict[str, Any]:
    payload = item.payload
    product = _product_row(conn, payload.product_id)
    if product is None or not product["is_active"]:
        why = "is not in the catalog" if product is None else "was deleted from the catalog"
        return {
            "status": "rejected",
            "errors": [{"field": "payload.product_id", "message": f"product {why}"}],
        }
    current = override_row(conn, meta.store_id, payload.product_id)
    server_version = current["version"] if current else 0
    client = payload.values()
    server = override_values(current)
    assert item.base_version is not None
    decision = decide_override(item.base_version, server_version, client, server)
    if decision == "reject":
        return {
            "status": "rejected",
            "errors": [
                {
                    "field": "base_version",
                    "message": f"version {item.base_version} was never issued "
                    f"(the server is at {server_version})",
                },
            ],
        }
    if decision == "noop":
        return {"status": "applied", "version": server_version}
    if decision == "apply":
        version = write_override(conn, meta.store_id, payload.product_id, client, actor=meta.actor, now=now)
        return {"status": "applied", "version": version}
    edited = item.edited_at - timedelta(seconds=skew) if item.edited_at else None
    conflict_id = conn.execute(
        insert(sync_conflicts).values(
            store_id=meta.store_id,
            device_id=meta.device_id,
            mutation_id=item.mutation_id,
            entity="product_override",
            entity_key=payload.product_id,
            base_version=item.base_version,
            server_version=server_version,
            client_value=json.dumps(client),
            server_value=json.dumps(server),
            client_edited_at=_naive(edited) if edited else None,
            status="open",
            created_at=_naive(now),
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    return {
        "status": "conflict",
        "conflict_id": conflict_id,
        "resolution": None,
        "server_version": server_version,
        "server_value": server,
    }


def _catalog_edit(
    conn: Connection, meta: BatchMeta, item: CatalogItem, *, skew: int, now: datetime
) -> dict[str, Any]:
    product = _product_row(conn, item.payload.product_id)
    if product is None:
        return {
            "status": "rejected",
            "errors": [{"field": "payload.product_id", "message": "product is not in the catalog"}],
        }
    server = _catalog_values(product)
    client = item.payload.model_dump(exclude={"product_id"}, exclude_none=True)
    edited = item.edited_at - timedelta(seconds=skew) if item.edited_at else None
    conflict_id = conn.execute(
        insert(sync_conflicts).values(
            store_id=meta.store_id,
            device_id=meta.device_id,
            mutation_id=item.mutation_id,
            entity="product",
            entity_key=item.payload.product_id,
            base_version=item.base_version,
            server_version=None,
            client_value=json.dumps(client),
            server_value=json.dumps(server),
            client_edited_at=_naive(edited) if edited else None,
            status="resolved",
            resolution="server_wins",
            resolved_by="policy",
            resolved_at=_naive(now),
            created_at=_naive(now),
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    return {
        "status": "conflict",
        "conflict_id": conflict_id,
        "resolution": "server_wins",
        "server_value": server,
    }


def _touch_devices(conn: Connection, staged: Sequence[_Stage], outcomes: Sequence[UploadOutcome]) -> None:
    """Each uploading device's sync state, in one upsert for the group (a device with several batches in
    it: their counts add up, the last batch's checkpoint stays)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for stage, outcome in zip(staged, outcomes, strict=True):
        meta = stage.job.meta
        previous = rows.get((meta.store_id, meta.device_id))
        rows[(meta.store_id, meta.device_id)] = {
            "store_id": meta.store_id,
            "device_id": meta.device_id,
            "last_upload_at": _naive(stage.job.received_at),
            "last_batch_id": meta.batch_id,
            "pending_reported": meta.pending,
            "clock_skew_seconds": stage.skew,
            "offline_since": _naive(meta.offline_since) if meta.offline_since else None,
            "items_applied": outcome.counts["applied"] + (previous["items_applied"] if previous else 0),
            "items_rejected": outcome.counts["rejected"] + (previous["items_rejected"] if previous else 0),
        }
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(sync_devices)
    added = ("items_applied", "items_rejected")
    replaced = ("last_upload_at", "last_batch_id", "pending_reported", "clock_skew_seconds", "offline_since")
    stmt = stmt.on_conflict_do_update(
        index_elements=["store_id", "device_id"],
        set_={
            **{c: stmt.excluded[c] for c in replaced},
            **{c: sync_devices.c[c] + stmt.excluded[c] for c in added},
        },
    )
    conn.execute(stmt, list(rows.values()))

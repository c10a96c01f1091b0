"""Terminals as the sync tier sees them: last upload and download, cursor, clock skew, and the health
figures derived from them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from chainsync.ops_store.tables import (
    sync_conflicts,
    sync_dead_letters,
    sync_devices,
    sync_mutations,
)
from chainsync.ops_store.times import aware as _aware
from chainsync.ops_store.times import iso
from chainsync.ops_store.times import naive as _naive


def record_download(engine: Engine, store_id: str, device_id: str, seq: int, now: datetime) -> None:
    with engine.begin() as conn:
        key = (sync_devices.c.store_id == store_id) & (sync_devices.c.device_id == device_id)
        values = {"last_download_at": _naive(now), "last_cursor_seq": seq}
        if not conn.execute(update(sync_devices).where(key).values(**values)).rowcount:
            conn.execute(insert(sync_devices).values(store_id=store_id, device_id=device_id, **values))


# --- status, health, conflicts ----------------------------------------------------------------------


def device_status(
    engine: Engine, *, stores: Iterable[str] | None, device_id: str | None = None, now: datetime
) -> list[dict[str, Any]]:
    """Per device: last checkpoint (upload and download), pending and dead-letter counts, lag and clock
    skew, open conflicts. ``stores`` None means every store."""
    d = sync_devices
    stmt = select(d).order_by(d.c.store_id, d.c.device_id)
    if stores is not None:
        stmt = stmt.where(d.c.store_id.in_(list(stores)))
    if device_id is not None:
        stmt = stmt.where(d.c.device_id == device_id)
    with engine.connect() as conn:
        devices = [dict(r._mapping) for r in conn.execute(stmt)]
        dead = {
            (r.store_id, r.device_id): r.n
            for r in conn.execute(
                select(
                    sync_dead_letters.c.store_id, sync_dead_letters.c.device_id, func.count().label("n")
                ).group_by(sync_dead_letters.c.store_id, sync_dead_letters.c.device_id)
            )
        }
        open_conf = {
            (r.store_id, r.device_id): r.n
            for r in conn.execute(
                select(sync_conflicts.c.store_id, sync_conflicts.c.device_id, func.count().label("n"))
                .where(sync_conflicts.c.status == "open")
                .group_by(sync_conflicts.c.store_id, sync_conflicts.c.device_id)
            )
        }
        recent_dead: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for dev in devices:
            key = (dev["store_id"], dev["device_id"])
            if dead.get(key):
                rows = conn.execute(
                    select(sync_dead_letters)
                    .where(sync_dead_letters.c.store_id == key[0], sync_dead_letters.c.device_id == key[1])
                    .order_by(sync_dead_letters.c.id.desc())
                    .limit(10)
                )
                recent_dead[key] = [
                    {
                        "mutation_id": r.mutation_id,
                        "type": r.item_type,
                        "errors": json.loads(r.errors),
                        "at": iso(r.created_at),
                    }
                    for r in rows
                ]
    out = []
    for dev in devices:
        key = (dev["store_id"], dev["device_id"])
        last = _aware(dev["last_upload_at"])
        out.append(
            {
                "store_id": dev["store_id"],
                "device_id": dev["device_id"],
                "last_checkpoint": {
                    "upload_at": iso(dev["last_upload_at"]),
                    "batch_id": dev["last_batch_id"],
                    "download_at": iso(dev["last_download_at"]),
                    "cursor_seq": dev["last_cursor_seq"],
                },
                "pending": dev["pending_reported"],
                "rejected": dead.get(key, 0),
                "dead_letters": recent_dead.get(key, []),
                "lag_seconds": round((now - last).total_seconds()) if last else None,
                "clock_skew_seconds": dev["clock_skew_seconds"],
                "offline_since": iso(dev["offline_since"]),
                "open_conflicts": open_conf.get(key, 0),
                "items_applied": dev["items_applied"],
            }
        )
    return out


def health_figures(
    engine: Engine, *, stores: Iterable[str] | None, now: datetime, window_s: int
) -> dict[str, Any]:
    """Throughput and error rate over the last ``window_s`` seconds, open conflicts, dead letters and
    the device that has gone longest without an upload."""
    since = _naive(now - timedelta(seconds=window_s))
    store_list = list(stores) if stores is not None else None
    m = sync_mutations

    def scoped(stmt, table):  # type: ignore[no-untyped-def]
        return stmt.where(table.c.store_id.in_(store_list)) if store_list is not None else stmt

    with engine.connect() as conn:
        by_status = dict(
            conn.execute(
                scoped(
                    select(m.c.status, func.count()).where(m.c.received_at >= since).group_by(m.c.status), m
                )
            ).all()
        )
        open_conflicts: int = conn.execute(
            scoped(
                select(func.count()).select_from(sync_conflicts).where(sync_conflicts.c.status == "open"),
                sync_conflicts,
            )
        ).scalar_one()
        dead: int = conn.execute(
            scoped(select(func.count()).select_from(sync_dead_letters), sync_dead_letters)
        ).scalar_one()
        oldest = conn.execute(
            scoped(
                select(sync_devices.c.store_id, sync_devices.c.device_id, sync_devices.c.last_upload_at)
                .where(sync_devices.c.last_upload_at.is_not(None))
                .order_by(sync_devices.c.last_upload_at)
                .limit(1),
                sync_devices,
            )
        ).first()
        devices: int = conn.execute(
            scoped(select(func.count()).select_from(sync_devices), sync_devices)
        ).scalar_one()
    total = sum(by_status.values())
    return {
        "window_seconds": window_s,
        "items": {k: int(by_status.get(k, 0)) for k in ("applied", "duplicate", "rejected", "conflict")},
        "throughput_items_per_s": round(total / window_s, 3),
        "error_rate": round(by_status.get("rejected", 0) / total, 4) if total else 0.0,
        "open_conflicts": int(open_conflicts),
        "dead_letters": int(dead),
        "devices": int(devices),
        "oldest_unsynced_device": None
        if oldest is None
        else {
            "store_id": oldest.store_id,
            "device_id": oldest.device_id,
            "last_upload_at": iso(oldest.last_upload_at),
            "lag_seconds": round((now - _aware(oldest.last_upload_at)).total_seconds()),  # type: ignore[operator]
        },
    }

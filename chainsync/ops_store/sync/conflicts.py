"""The conflict queue: edits the policy could not merge, listed per store and resolved by a manager; and
the sync audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update

from chainsync.ops_store.sync.uploads import override_row, override_values, write_override
from chainsync.ops_store.tables import (
    sync_audit,
    sync_conflicts,
)
from chainsync.ops_store.times import aware as _aware
from chainsync.ops_store.times import iso
from chainsync.ops_store.times import naive as _naive
from chainsync.sync.policy import Strategy, resolve


def _conflict_dict(r: Any) -> dict[str, Any]:
    return {
        "conflict_id": r.id,
        "store_id": r.store_id,
        "device_id": r.device_id,
        "mutation_id": r.mutation_id,
        "entity": r.entity,
        "key": r.entity_key,
        "base_version": r.base_version,
        "server_version": r.server_version,
        "client_value": json.loads(r.client_value),
        "server_value": json.loads(r.server_value),
        "client_edited_at": iso(r.client_edited_at),
        "status": r.status,
        "resolution": r.resolution,
        "resolved_value": json.loads(r.resolved_value) if r.resolved_value else None,
        "resolved_by": r.resolved_by,
        "resolved_at": iso(r.resolved_at),
        "created_at": iso(r.created_at),
    }


def list_conflicts(
    engine: Engine, *, stores: Iterable[str] | None, status: str | None = "open", limit: int = 200
) -> list[dict[str, Any]]:
    c = sync_conflicts
    stmt = select(c).order_by(c.c.id).limit(limit)
    if stores is not None:
        stmt = stmt.where(c.c.store_id.in_(list(stores)))
    if status is not None:
        stmt = stmt.where(c.c.status == status)
    with engine.connect() as conn:
        return [_conflict_dict(r) for r in conn.execute(stmt)]


def conflict_store(engine: Engine, conflict_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(sync_conflicts.c.store_id).where(sync_conflicts.c.id == conflict_id)
        ).scalar()


class ConflictClosed(Exception):
    """The conflict was resolved already."""


def resolve_conflict(
    engine: Engine,
    conflict_id: int,
    strategy: Strategy,
    *,
    actor: str,
    now: datetime,
    value: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve one open override conflict, write the winning values (as a new version, logged for
    download) and an audit row, in one transaction. Raises :class:`ConflictClosed` or KeyError."""
    with engine.begin() as conn:
        r = conn.execute(select(sync_conflicts).where(sync_conflicts.c.id == conflict_id)).first()
        if r is None:
            raise KeyError(conflict_id)
        if r.status != "open":
            raise ConflictClosed(f"conflict {conflict_id} was resolved already ({r.resolution})")
        current = override_row(conn, r.store_id, r.entity_key)
        server = override_values(current)
        winner = resolve(
            strategy,
            client=json.loads(r.client_value),
            server=server,
            client_edited_at=_aware(r.client_edited_at),
            server_updated_at=_aware(current["updated_at"]) if current else None,
            value=value,
        )
        version = current["version"] if current else 0
        if winner is not None and winner != server:
            version = write_override(conn, r.store_id, r.entity_key, winner, actor=actor, now=now)
        final = winner if winner is not None else server
        conn.execute(
            update(sync_conflicts)
            .where(and_(sync_conflicts.c.id == conflict_id, sync_conflicts.c.status == "open"))
            .values(
                status="resolved",
                resolution=strategy,
                resolved_value=json.dumps(final),
                resolved_by=actor[:160],
                resolved_at=_naive(now),
            )
        )
        conn.execute(
            insert(sync_audit).values(
                at=_naive(now),
                actor=actor[:160],
                action="resolve_conflict",
                store_id=r.store_id,
                conflict_id=conflict_id,
                detail=json.dumps(
                    {
                        "strategy": strategy,
                        "entity": r.entity,
                        "key": r.entity_key,
                        "value": final,
                        "version": version,
                    }
                ),
            )
        )
        row = conn.execute(select(sync_conflicts).where(sync_conflicts.c.id == conflict_id)).one()
    return {**_conflict_dict(row), "version": version}


def audit_trail(engine: Engine, *, stores: Iterable[str] | None, limit: int = 100) -> list[dict[str, Any]]:
    stmt = select(sync_audit).order_by(sync_audit.c.id.desc()).limit(limit)
    if stores is not None:
        stmt = stmt.where(sync_audit.c.store_id.in_(list(stores)))
    with engine.connect() as conn:
        return [
            {
                "at": iso(r.at),
                "actor": r.actor,
                "action": r.action,
                "store_id": r.store_id,
                "conflict_id": r.conflict_id,
                "detail": json.loads(r.detail),
            }
            for r in conn.execute(stmt)
        ]

"""The change log terminals download: catalog pages, the changes after a cursor, and pruning of what
every device has seen."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select

from chainsync.ops_store.sync.uploads import override_values
from chainsync.ops_store.tables import (
    products,
    store_product_overrides,
    sync_changes,
)

# --- download ---------------------------------------------------------------------------------------


def product_record(row: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """A catalog entry as a terminal sees it (prices included, unit cost never), or its tombstone."""
    if row is None or not row["is_active"]:
        return {"entity": "product", "key": key, "op": "delete"}
    return {
        "entity": "product",
        "key": key,
        "op": "upsert",
        "data": {
            "product_id": row["product_id"],
            "name": row["name"],
            "category": row["category"],
            "price_cents": row["price_cents"],
            "lead_time_days": row["lead_time_days"],
        },
    }


def override_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "entity": "product_override",
        "key": row["product_id"],
        "op": "upsert",
        "version": row["version"],
        "data": {"product_id": row["product_id"], **override_values(row)},
    }


def change_log_bounds(engine: Engine) -> tuple[int, int]:
    """(first retained seq, last seq) of the change log; (0, 0) when empty."""
    with engine.connect() as conn:
        lo, hi = conn.execute(select(func.min(sync_changes.c.seq), func.max(sync_changes.c.seq))).one()
        if hi is None:
            # Empty log: the last seq ever issued (AUTOINCREMENT keeps it in sqlite_sequence).
            hi = _last_issued_seq(conn)
            return hi + 1, hi
        return int(lo), int(hi)  # type: ignore[call-overload]


def _last_issued_seq(conn: Connection) -> int:
    if conn.dialect.name == "postgresql":
        value = conn.exec_driver_sql(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('sync_changes', 'seq'))"
        ).scalar()
    else:
        value = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'sync_changes'").scalar()
    return int(value or 0)


def catalog_page(
    engine: Engine, store_id: str, *, after_key: str | None, overrides: bool, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` current rows for a full download: active products by key, or (``overrides``) the
    store's overrides by product key."""
    with engine.connect() as conn:
        if not overrides:
            stmt = select(products).where(products.c.is_active.is_(True)).order_by(products.c.product_id)
            if after_key is not None:
                stmt = stmt.where(products.c.product_id > after_key)
            return [product_record(dict(r._mapping), r.product_id) for r in conn.execute(stmt.limit(limit))]
        t = store_product_overrides
        stmt = select(t).where(t.c.store_id == store_id).order_by(t.c.product_id)
        if after_key is not None:
            stmt = stmt.where(t.c.product_id > after_key)
        return [override_record(dict(r._mapping)) for r in conn.execute(stmt.limit(limit))]


def changes_after(
    engine: Engine, store_id: str, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int, bool]:
    """Changes visible to ``store_id`` after ``after_seq``, as records of the entities' current state:
    ``(records, last seq read, more remain)``. Several changes of one entity in a page give one record."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                sync_changes.c.seq, sync_changes.c.store_id, sync_changes.c.entity, sync_changes.c.entity_key
            )
            .where(
                sync_changes.c.seq > after_seq,
                or_(sync_changes.c.store_id.is_(None), sync_changes.c.store_id == store_id),
            )
            .order_by(sync_changes.c.seq)
            .limit(limit + 1)
        ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        if not rows:
            return [], after_seq, False
        latest: dict[tuple[str, str], int] = {}
        for r in rows:
            latest[(r.entity, r.entity_key)] = r.seq
        keys_p = [k for (e, k) in latest if e == "product"]
        keys_o = [k for (e, k) in latest if e == "product_override"]
        prod = (
            {
                r.product_id: dict(r._mapping)
                for r in conn.execute(select(products).where(products.c.product_id.in_(keys_p)))
            }
            if keys_p
            else {}
        )
        over = (
            {
                r.product_id: dict(r._mapping)
                for r in conn.execute(
                    select(store_product_overrides).where(
                        store_product_overrides.c.store_id == store_id,
                        store_product_overrides.c.product_id.in_(keys_o),
                    )
                )
            }
            if keys_o
            else {}
        )
    records: list[dict[str, Any]] = []
    for (entity, key), _seq in sorted(latest.items(), key=lambda kv: kv[1]):
        if entity == "product":
            records.append(product_record(prod.get(key), key))
        elif key in over:
            records.append(override_record(over[key]))
    return records, int(rows[-1].seq), more


def prune_changes(engine: Engine, *, through_seq: int) -> int:
    """Drop change-log entries up to ``through_seq``; cursors before it become stale (410)."""
    with engine.begin() as conn:
        return conn.execute(sync_changes.delete().where(sync_changes.c.seq <= through_seq)).rowcount

"""Stores and products (the catalog), upserted in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chainsync.ops_store.tables import products, stores


def _upsert(engine: Engine, table: Table, key: str, rows: Sequence[dict[str, Any]]) -> int:
    if not rows:
        return 0
    now = datetime.now(UTC).replace(tzinfo=None)
    values = [{**r, "updated_at": now} for r in rows]
    dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key], set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
    )
    with engine.begin() as conn:
        for start in range(0, len(values), 2_000):
            conn.execute(stmt, values[start : start + 2_000])
    return len(values)


def upsert_stores(engine: Engine, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or update stores (keys: store_id, name, region, city, opened_on, timezone)."""
    return _upsert(engine, stores, "store_id", rows)


def upsert_products(engine: Engine, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or update products (keys: product_id, name, category, unit_cost_cents, price_cents,
    lead_time_days, is_active)."""
    return _upsert(engine, products, "product_id", rows)


def store_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(stores.c.store_id).order_by(stores.c.store_id)).scalars())


def count_rows(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

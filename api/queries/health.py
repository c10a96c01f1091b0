"""Ops store reachability for the health endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from chainsync.ops_store import schema_version


@dataclass(frozen=True, slots=True)
class OpsStoreStatus:
    reachable: bool
    schema_version: str | None


def ops_store_status(engine: Engine) -> OpsStoreStatus:
    """Run a real ``SELECT 1`` and read the Alembic revision; unreachable on any database error."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
        return OpsStoreStatus(reachable=True, schema_version=schema_version(engine))
    except SQLAlchemyError:
        return OpsStoreStatus(reachable=False, schema_version=None)

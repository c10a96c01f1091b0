"""The ops store: SQLite (WAL) by default, any SQLAlchemy URL (PostgreSQL) by configuration.

Owned by the API; the pipeline reads it read-only, by watermark."""

from chainsync.ops_store.engine import get_engine, make_engine, migrate, schema_version

__all__ = ["get_engine", "make_engine", "migrate", "schema_version"]

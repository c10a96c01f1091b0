"""The migrations and ``tables.py`` describe the same schema: every table, column and index."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from chainsync.ops_store import get_engine, schema_version
from chainsync.ops_store.tables import metadata
from chainsync.settings import Settings


def test_migrated_store_matches_the_table_definitions(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        tables = set(inspect(conn).get_table_names())
    assert set(metadata.tables) <= tables  # every table compared exists (none silently missing)
    assert schema_version(engine) == "0010"

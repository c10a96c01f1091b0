"""The event inbox on a real SQLite file and a real PostgreSQL database: migrations, exactly-once append,
watermark reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from alembic.script import ScriptDirectory
from sqlalchemy import text

from chainsync.ops_store import get_engine, make_engine, migrate, schema_version
from chainsync.ops_store.engine import alembic_config
from chainsync.ops_store.events import InboxRow, append_events, count_events, iter_events_after, max_seq
from chainsync.settings import Settings


def _row(event_type: str = "sale") -> InboxRow:
    return InboxRow(str(uuid.uuid4()), event_type, "S001", "S001-T01", datetime.now(UTC), "{}")


def test_schema_is_migrated_and_durable(settings: Settings, ops_backend: str) -> None:
    engine = get_engine(settings.ops_store)
    assert engine.dialect.name == ops_backend
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert schema_version(engine) == head
    with engine.connect() as conn:
        if ops_backend == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        else:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
    migrate(engine)  # idempotent
    assert schema_version(engine) == head


def test_append_is_idempotent_by_event_id(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    a, b = _row(), _row()
    assert append_events(engine, [a, b, a]) == ["applied", "applied", "duplicate"]
    assert append_events(engine, [b, _row()]) == ["duplicate", "applied"]
    assert count_events(engine) == 3


def test_seq_is_gap_free_and_watermark_reads_only_newer(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    append_events(engine, [_row("sale") for _ in range(5)] + [_row("inventory") for _ in range(2)])
    with engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(text("SELECT seq FROM event_inbox ORDER BY seq"))]
    assert seqs == list(range(1, 8))
    mark = max_seq(engine, "sale")
    new = [_row("sale") for _ in range(3)]
    append_events(engine, new)
    got = [r[0] for chunk in iter_events_after(engine, "sale", mark, chunk_size=2) for r in chunk]
    assert got == [r.event_id for r in new]


def test_acknowledged_events_survive_a_new_process_view(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    rows = [_row() for _ in range(100)]
    append_events(engine, rows)
    engine.dispose()
    reader = make_engine(settings.ops_store, read_only=True)  # a fresh engine: nothing cached
    with reader.connect() as conn:
        stored = set(conn.execute(text("SELECT event_id FROM event_inbox")).scalars())
    assert stored == {r.event_id for r in rows}

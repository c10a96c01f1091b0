"""Engine construction and schema migration for the ops store.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` transactions, so writers queue on the database lock at
the start of a transaction instead of failing half-way, and readers (the pipeline) never block writers.
The same code runs on PostgreSQL by URL.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """Build an engine for ``url``. SQLite files get WAL, ``synchronous=FULL`` (an acknowledged event
    survives a power cut, not only a process crash), a busy timeout and immediate transactions."""
    if not url.startswith("sqlite"):
        # UTC sessions: raw SQL that reads timestamptz (outside UtcDateTime) sees UTC, as on SQLite.
        return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"})

    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connect_args: dict[str, object] = {"check_same_thread": False, "timeout": 30}
    if read_only:
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when a transaction starts (see "begin" below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not read_only:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest version (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def schema_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One migrated engine per URL and process."""
    engine = make_engine(url)
    migrate(engine)
    return engine

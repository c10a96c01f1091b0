"""The real servers the suite runs against (PostgreSQL, Redis): where they are, a loud check that they
answer, and throwaway PostgreSQL databases.

Point the suite elsewhere with ``CHAINSYNC_TEST_PG_URL`` (a SQLAlchemy URL of a database the test user may
``CREATE DATABASE`` from, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and
``CHAINSYNC_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

PG_URL_VAR = "CHAINSYNC_TEST_PG_URL"
REDIS_URL_VAR = "CHAINSYNC_TEST_REDIS_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT_S = 3

# Fixtures that need a server; a collected test using one makes the session check that server first.
# (Add Redis fixtures here as they come.)
FIXTURE_SERVICES: dict[str, str] = {"pg_template": "postgresql", "redis_target": "redis"}


def pg_url() -> str:
    return os.environ.get(PG_URL_VAR, DEFAULT_PG_URL)


def redis_url() -> str:
    return os.environ.get(REDIS_URL_VAR, DEFAULT_REDIS_URL)


def _libpq(url: str, database: str | None = None) -> str:
    """A SQLAlchemy URL as a libpq URI psycopg accepts, optionally for another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def check_postgresql() -> str | None:
    """None when PostgreSQL answers at :func:`pg_url`, else what is wrong."""
    try:
        with psycopg.connect(_libpq(pg_url()), connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable", reported whole
        return (
            f"PostgreSQL is not reachable at {make_url(pg_url())!r} ({exc.__class__.__name__}: {exc})".strip()
        )
    return None


def check_redis() -> str | None:
    """None when Redis answers PING at :func:`redis_url`, else what is wrong."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url(), socket_connect_timeout=CONNECT_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001
        return f"Redis is not reachable at {redis_url()} ({exc.__class__.__name__}: {exc})"
    return None


CHECKS = {"postgresql": check_postgresql, "redis": check_redis}
HOW_TO = {
    "postgresql": f"start PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres) or set {PG_URL_VAR}",
    "redis": f"start Redis on 127.0.0.1:6379 or set {REDIS_URL_VAR}",
}


def missing(services: Iterable[str]) -> str | None:
    """One message naming every server in ``services`` that does not answer and how to point at it."""
    problems = [(name, CHECKS[name]()) for name in sorted(set(services))]
    lines = [f"  - {why}; {HOW_TO[name]}" for name, why in problems if why]
    if not lines:
        return None
    return "These tests run on real servers, and some are missing:\n" + "\n".join(lines)


class PostgresDatabases:
    """Throwaway databases for one test session, all named ``chainsync_test_<pid>_<random>_…``: a template
    migrated once, then one copy per test (``CREATE DATABASE … TEMPLATE``), each dropped after its test."""

    def __init__(self) -> None:
        self.prefix = f"chainsync_test_{os.getpid()}_{secrets.token_hex(3)}"
        self._count = 0
        self._admin = psycopg.connect(_libpq(pg_url()), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL (psycopg 3) of ``database`` on the test server."""
        return (
            make_url(pg_url())
            .set(drivername="postgresql+psycopg", database=database)
            .render_as_string(hide_password=False)
        )

    def create(self, template: str | None = None) -> str:
        """A new empty (or ``template``-copied) database; returns its name."""
        self._count += 1
        name = f"{self.prefix}_{self._count}"
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        self._admin.execute(stmt)
        return name

    def drop(self, name: str) -> None:
        """Drop ``name``, ending any connection still open to it."""
        self._admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def close(self) -> None:
        """Drop every database of this session (also those a failed test left) and disconnect."""
        names = self._admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (self.prefix.replace("_", r"\_") + "%",)
        ).fetchall()
        for (name,) in names:
            self.drop(name)
        self._admin.close()

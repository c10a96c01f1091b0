"""Shared fixtures: every test gets its own data directory and settings pointing at it, and its own ops
store: a SQLite file there, or, for the modules in :data:`BOTH_ENGINES`, also a PostgreSQL database of its
own (``ops_backend`` ids ``sqlite`` and ``postgresql``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")

from chainsync.ops_store import make_engine, migrate  # noqa: E402
from chainsync.settings import Settings, get_settings  # noqa: E402
from tests import services  # noqa: E402

# Test modules (paths from the repository root, or folders) whose ops-store tests run on both engines:
# the ops store itself, ingest, sync, security, WebSockets, the live figures and the landing.
BOTH_ENGINES = (
    "tests/ops_store/",
    "tests/sync/",
    "tests/api/test_auth.py",
    "tests/api/test_events.py",
    "tests/api/test_ingest.py",
    "tests/api/test_sales.py",
    "tests/api/test_security.py",
    "tests/api/test_security_auth.py",
    "tests/api/test_sync.py",
    "tests/api/test_ws.py",
    "tests/pipelines/test_ingest.py",
    "tests/test_importer.py",
)
ROOT = Path(__file__).resolve().parents[1]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ops_backend" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if mark.args and mark.args[0] == "ops_backend":
            return  # the test names its engine(s) itself
    where = metafunc.definition.path.resolve().relative_to(ROOT).as_posix()
    if any(where == p or (p.endswith("/") and where.startswith(p)) for p in BOTH_ENGINES):
        metafunc.parametrize("ops_backend", ["sqlite", "postgresql"], indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fail the whole run, before any test, when a server the collected tests need does not answer."""
    needed: set[str] = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("ops_backend") == "postgresql":
            needed.add("postgresql")
        needed.update(
            services.FIXTURE_SERVICES[f]
            for f in getattr(item, "fixturenames", ())
            if f in services.FIXTURE_SERVICES
        )
    problem = services.missing(needed)
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[tuple[services.PostgresDatabases, str]]:
    """This session's PostgreSQL databases and the name of a template migrated to the newest schema."""
    dbs = services.PostgresDatabases()
    try:
        name = dbs.create()
        engine = make_engine(dbs.url(name))
        migrate(engine)
        engine.dispose()  # a template must have no connections when it is copied
        yield dbs, name
    finally:
        dbs.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ops store file migrated once per session: a test's copy skips the migrations (~0.4 s each)."""
    path = tmp_path_factory.mktemp("ops-template") / "ops.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def ops_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless the module runs on both engines (then parametrised)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def ops_store_url(ops_backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file in the data directory, else a fresh migrated PostgreSQL
    database for this test alone (dropped afterwards)."""
    if ops_backend != "postgresql":
        yield None
        return
    dbs, template = request.getfixturevalue("pg_template")
    name = dbs.create(template=template)
    try:
        yield dbs.url(name)
    finally:
        dbs.drop(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(
    data_dir: Path, ops_store_url: str | None, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings for an isolated data directory and ops store (a migrated copy in ``data_dir``, or a
    PostgreSQL database of its own), also returned by ``get_settings()`` and seen by child processes
    during the test."""
    monkeypatch.setenv("CHAINSYNC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CHAINSYNC_JWT_SECRET", "test-secret-" + "x" * 40)
    monkeypatch.delenv("CHAINSYNC_DEMO_MODE", raising=False)
    if ops_store_url is None:
        monkeypatch.delenv("CHAINSYNC_OPS_STORE_URL", raising=False)
        shutil.copyfile(sqlite_template, data_dir / "ops.sqlite")
    else:
        monkeypatch.setenv("CHAINSYNC_OPS_STORE_URL", ops_store_url)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


# --- Redis (shared state across API processes) -----------------------------------------------------
# Fixtures ``redis_target`` / ``redis_prefix``: a database number and key prefix per test session.
pytest_plugins = ["tests.redis_fixtures"]

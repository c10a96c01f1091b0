"""Shared fixtures: every test gets its own data directory and settings pointing at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")

from chainsync.settings import Settings, get_settings  # noqa: E402


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for an isolated data directory, also returned by ``get_settings()`` during the test."""
    monkeypatch.setenv("CHAINSYNC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CHAINSYNC_JWT_SECRET", "test-secret-" + "x" * 40)
    monkeypatch.delenv("CHAINSYNC_DEMO_MODE", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


# --- Redis (shared state across API processes) -----------------------------------------------------
# Fixtures ``redis_target`` / ``redis_prefix``: a database number and key prefix per test session.
pytest_plugins = ["tests.redis_fixtures"]

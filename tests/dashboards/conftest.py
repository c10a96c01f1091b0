"""Fixtures for the dashboard tests: settings with an API that does not answer, and a published snapshot."""

from __future__ import annotations

import polars as pl
import pytest

from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings, get_settings
from tests.dashboards.snapshot import DEAD_API, snapshot_tables


@pytest.fixture
def dashboard_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", DEAD_API)
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def tables() -> dict[str, pl.DataFrame]:
    return snapshot_tables()


@pytest.fixture
def published(dashboard_settings: Settings, tables: dict[str, pl.DataFrame]) -> Snapshot:
    import streamlit as st

    # Each test publishes its own snapshot; cached tables are keyed by version, but clear anyway.
    st.cache_data.clear()
    st.cache_resource.clear()
    return publish_snapshot(
        dashboard_settings.serving, tables, run_id="test-run", extra={"pipeline": {"events_seq": 1234}}
    )

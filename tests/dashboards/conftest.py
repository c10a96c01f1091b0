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


@pytest.fixture(autouse=True)
def _navigation_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the app as the server does. A ``pages/`` folder beside the entry point makes Streamlit guess the
    legacy multipage mode until ``st.navigation`` runs and turns it off for the process; AppTest resets that
    guess before every run, so its later runs would execute the page alone, without the entry point's
    sidebar. Keep the guess off, as it is in the server after the first run."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class NavigationPagesManager(PagesManager):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", NavigationPagesManager)

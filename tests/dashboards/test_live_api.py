"""Live figures from a real API: ``chainsync api`` under uvicorn on loopback, the analyst logged in to it (a
manager, then an administrator with two-factor authentication); what the pages show is what the API
answers for them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import polars as pl
import pytest

from chainsync.ops_store.users import create_device_key
from chainsync.serving import publish_snapshot
from chainsync.settings import Settings, get_settings
from dashboards import ui
from dashboards.auth import Session
from tests.api.conftest import sale_event
from tests.dashboards.conftest import ADMIN, MANAGER, LoginApi, api_login, start_login_api
from tests.dashboards.snapshot import LAST, infos, metrics, open_page, snapshot_tables
from tests.live_api import stop_api

pytestmark = pytest.mark.slow


def _ai_tables() -> dict[str, pl.DataFrame]:
    """The page tables plus what /api/ai/dashboard reads (store totals, accuracy, reorder suggestions)."""
    tables = snapshot_tables()
    fc = tables["demand_forecast"]
    tables["demand_forecast_totals"] = (
        fc.group_by("store_id", "ds", "horizon_day")
        .agg(pl.col("yhat", "lo_80", "hi_80", "lo_95", "hi_95").sum(), pl.len().alias("n_series"))
        .select(pl.lit("store").alias("level"), pl.col("store_id").alias("key"), pl.exclude("store_id"))
    )
    tables["forecast_accuracy"] = pl.DataFrame(
        {
            "level": ["store", "store"],
            "store_id": ["S001", "S002"],
            "product_id": [None, None],
            "category": [None, None],
            "n_series": [3, 3],
            "mase": [0.8, 0.9],
            "wape": [0.2, 0.3],
            "bias": [0.0, 0.1],
            "coverage_80": [0.8, 0.75],
            "coverage_95": [0.95, 0.9],
        },
        schema_overrides={"product_id": pl.String, "category": pl.String},
    )
    tables["reorder_suggestions"] = pl.DataFrame(
        {
            "store_id": ["S001", "S002"],
            "product_id": ["P0002", "P0002"],
            "needs_reorder": [True, True],
            "stockout_risk": [True, False],
            "reorder_quantity": [40.0, 25.0],
        }
    )
    tables["business_insights"] = pl.DataFrame(
        {
            "insight_id": ["I0001"],
            "category": ["inventory"],
            "store_id": ["S001"],
            "subject": ["P0002"],
            "title": ["Reorder tea at S001"],
            "evidence": ['{"on_hand_units": 0}'],
            "action": ["Order 40 units"],
            "impact_cents": [10000.0],
            "impact": [0.5],
            "confidence": [0.9],
            "urgency": [1.0],
            "priority": [0.45],
            "as_of": [LAST],
        }
    )
    return tables


@pytest.fixture
def live_api(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoginApi]:
    """An API on the test's own data directory (it reads the same snapshot), with the test users."""
    publish_snapshot(settings.serving, _ai_tables(), run_id="live-test")
    api, proc = start_login_api(settings.data_dir)
    try:
        monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", api.base)
        get_settings.cache_clear()
        import streamlit as st

        st.cache_data.clear()
        st.cache_resource.clear()
        yield api
    finally:
        stop_api(proc)  # type: ignore[arg-type]
        api.engine.dispose()


def _get(api: LoginApi, session: Session, path: str) -> dict:  # type: ignore[type-arg]
    resp = httpx.get(f"{api.base}{path}", headers={"Authorization": f"Bearer {session.access_token}"})
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def test_pages_show_what_the_api_answers(live_api: LoginApi, settings: Settings) -> None:
    manager = api_login(live_api, MANAGER)
    # A sale made today, before any page is opened (live figures are cached for a few seconds).
    sold = sale_event(occurred_at=datetime.now(UTC).isoformat(), transaction_id="T-LIVE-1")
    key = create_device_key(live_api.engine, "S001", "POS-01")
    posted = httpx.post(f"{live_api.base}/api/events/sales", json=sold, headers={"X-API-Key": key})
    assert posted.status_code == 201, posted.text
    today = _get(live_api, manager, "/api/sales/today")["total"]
    assert today["transactions"] == 1 and today["net_revenue_cents"] == 2 * 399

    sync = _get(live_api, manager, "/api/sync/health")
    at = open_page("sync", manager)
    shown = metrics(at)
    assert shown["Sync service"] == sync["status"].upper()
    assert shown["Open conflicts"] == f"{sync['open_conflicts']:,}"
    assert shown["Dead letters"] == f"{sync['dead_letters']:,}"
    assert not any("not shown" in i for i in infos(at))

    health = httpx.get(f"{live_api.base}/api/observability/health").json()
    board = _get(live_api, manager, "/api/ai/dashboard")
    at = open_page("overview", manager)
    assert metrics(at)["Transactions today (live)"] == "1"
    assert metrics(at)["Net sales today (live)"] == ui.money(today["net_revenue_cents"])
    # The snapshot's forecast starts after its last day of data (March), so nothing covers today.
    assert any("No forecast in this snapshot covers today" in c.value for c in at.caption)
    stores = at.dataframe[0].value
    assert stores["store_id"].tolist() == [s["store_id"] for s in board["stores"]] == ["S001", "S002"]
    assert stores["anomalies_7d"].tolist() == [s["anomalies_7d"] for s in board["stores"]]
    assert metrics(at)["API (live)"] == health["status"].upper()
    assert metrics(at)["Sync service (live)"] == sync["status"].upper()


def test_admin_pages_show_what_the_api_answers(live_api: LoginApi) -> None:
    admin = api_login(live_api, ADMIN, live_api.code(ADMIN, steps_ahead=1))
    health = httpx.get(f"{live_api.base}/api/observability/health").json()
    at = open_page("system", admin)
    shown = metrics(at)
    assert shown["Status"] == health["status"].upper()
    assert shown["Version"] == health["version"]
    assert shown["Ops store"] == "reachable"
    checks = at.dataframe[0].value
    assert set(checks["check"]) == set(health["checks"])
    assert not any("not shown" in i for i in infos(at))  # health and performance both answered

    status = _get(live_api, admin, "/api/admin/security/status")
    at = open_page("security", admin)
    assert metrics(at)["Threat level (live)"] == status["threat_level"].upper()
    assert not any("Live blocks not shown" in i for i in infos(at))

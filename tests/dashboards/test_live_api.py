"""Live figures from a real API: ``chainsync api`` under uvicorn on loopback, the dashboards logging in as a
manager with the username and password from the settings; what the pages show is what the API answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import polars as pl
import pytest

from chainsync.ops_store import get_engine
from chainsync.ops_store.users import create_device_key, upsert_user
from chainsync.serving import publish_snapshot
from chainsync.settings import Settings, get_settings
from dashboards import ui
from tests.api.conftest import sale_event
from tests.dashboards.snapshot import LAST, infos, metrics, open_page, snapshot_tables
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy

pytestmark = pytest.mark.slow

PASSWORD = "correct-horse-battery"


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
def live_api(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    engine = get_engine(settings.ops_store)
    upsert_user(engine, "mona", PASSWORD, "manager", ["S001", "S002"])
    publish_snapshot(settings.serving, _ai_tables(), run_id="live-test")
    port = free_port()
    proc = start_api(
        port,
        api_env(settings.data_dir, settings.jwt_secret.get_secret_value()),  # type: ignore[union-attr]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", base)
        monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_USERNAME", "mona")
        monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_PASSWORD", PASSWORD)
        get_settings.cache_clear()
        import streamlit as st

        st.cache_data.clear()
        st.cache_resource.clear()
        yield base
    finally:
        stop_api(proc)


def _manager_get(base: str, path: str) -> dict:  # type: ignore[type-arg]
    token = httpx.post(f"{base}/api/auth/token", data={"username": "mona", "password": PASSWORD}).json()
    resp = httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {token['access_token']}"})
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def test_pages_show_what_the_api_answers(live_api: str, settings: Settings) -> None:
    # A sale made today, before any page is opened (live figures are cached for a few seconds).
    sold = sale_event(occurred_at=datetime.now(UTC).isoformat(), transaction_id="T-LIVE-1")
    key = create_device_key(get_engine(settings.ops_store), "S001", "POS-01")
    posted = httpx.post(f"{live_api}/api/events/sales", json=sold, headers={"X-API-Key": key})
    assert posted.status_code == 201, posted.text
    today = _manager_get(live_api, "/api/sales/today")["total"]
    assert today["transactions"] == 1 and today["net_revenue_cents"] == 2 * 399

    health = httpx.get(f"{live_api}/api/observability/health").json()
    at = open_page("system")
    shown = metrics(at)
    assert shown["Status"] == health["status"].upper()
    assert shown["Version"] == health["version"]
    assert shown["Ops store"] == "reachable"
    checks = at.dataframe[0].value
    assert set(checks["check"]) == set(health["checks"])
    assert not any("not shown" in i.value for i in at.info)  # health and performance both answered

    sync = _manager_get(live_api, "/api/sync/health")
    at = open_page("sync")
    shown = metrics(at)
    assert shown["Sync service"] == sync["status"].upper()
    assert shown["Open conflicts"] == f"{sync['open_conflicts']:,}"
    assert shown["Dead letters"] == f"{sync['dead_letters']:,}"
    assert not any("not shown" in i.value for i in at.info)

    board = _manager_get(live_api, "/api/ai/dashboard")
    at = open_page("overview")
    assert metrics(at)["Transactions today (live)"] == "1"
    assert metrics(at)["Net sales today (live)"] == ui.money(today["net_revenue_cents"])
    # The snapshot's forecast starts after its last day of data (March), so nothing covers today.
    assert any("No forecast in this snapshot covers today" in c.value for c in at.caption)
    stores = at.dataframe[0].value
    assert stores["store_id"].tolist() == [s["store_id"] for s in board["stores"]] == ["S001", "S002"]
    assert stores["anomalies_7d"].tolist() == [s["anomalies_7d"] for s in board["stores"]]
    assert metrics(at)["API (live)"] == health["status"].upper()
    assert metrics(at)["Sync service (live)"] == sync["status"].upper()


def test_wrong_password_is_a_notice_not_a_traceback(live_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_PASSWORD", "wrong")
    get_settings.cache_clear()
    at = open_page("sync")
    assert any("API login refused (401)" in i.value for i in at.info)
    # The public health endpoint still answers.
    at = open_page("system")
    assert "Status" in metrics(at)


def test_security_page_shows_the_apis_threat_level_and_blocks(
    live_api: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.security import ALL_STORES, create_access_token

    admin = create_access_token(settings, subject="alice", role="admin", stores=[ALL_STORES]).token
    upsert_user(get_engine(settings.ops_store), "alice", PASSWORD, "admin")
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_TOKEN", admin)
    get_settings.cache_clear()
    status = httpx.get(
        f"{live_api}/api/admin/security/status", headers={"Authorization": f"Bearer {admin}"}
    ).json()
    at = open_page("security")
    assert metrics(at)["Threat level (live)"] == status["threat_level"].upper()
    assert not any("Live blocks not shown" in i for i in infos(at))


def test_security_page_without_admin_rights_says_so(live_api: str) -> None:
    at = open_page("security")  # the dashboards log in as a manager here
    assert "Threat level (live)" not in metrics(at)
    assert any("Live blocks not shown" in i for i in infos(at))

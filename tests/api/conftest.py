"""API fixtures: an app built by ``create_app`` on the test's own data directory (a real SQLite ops
store), users and device keys made with the ops store functions, and a small real serving snapshot."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import polars as pl
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

with warnings.catch_warnings():
    # starlette.testclient warns that it runs on httpx rather than httpx2; the tests do not care.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api.main import create_app
from api.security.risk import RiskEngine
from api.security.tokens import ALL_STORES, create_access_token
from chainsync.ops_store import get_engine
from chainsync.ops_store.users import create_device_key, upsert_user
from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings

PASSWORD = "correct-horse-battery"
MANAGER_STORES = ("S001", "S002")
SNAPSHOT_STORES = ("S001", "S002", "S003")
SNAPSHOT_PRODUCTS = ("P001", "P002", "P003")


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return get_engine(settings.ops_store)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI, engine: Engine) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def users(engine: Engine) -> dict[str, str]:
    """admin (all stores), manager (S001, S002), cashier (S001); password :data:`PASSWORD`."""
    upsert_user(engine, "alice", PASSWORD, "admin")
    upsert_user(engine, "mona", PASSWORD, "manager", MANAGER_STORES)
    upsert_user(engine, "carl", PASSWORD, "cashier", ["S001"])
    return {"admin": "alice", "manager": "mona", "cashier": "carl"}


def risk_of(client: TestClient) -> RiskEngine:
    """The started app's risk engine (what ``api.deps.RiskDep`` resolves to): the one the firewall and the
    routes share, so a test moves its clocks rather than replacing it."""
    app = client.app
    assert isinstance(app, FastAPI)
    return app.state.risk


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def tokens(settings: Settings, users: dict[str, str]) -> dict[str, str]:
    """Signed tokens per role, made directly (the login flow itself is tested in test_auth.py)."""
    return {
        "admin": create_access_token(settings, subject="alice", role="admin", stores=[ALL_STORES]).token,
        "manager": create_access_token(settings, subject="mona", role="manager", stores=MANAGER_STORES).token,
        "cashier": create_access_token(settings, subject="carl", role="cashier", stores=["S001"]).token,
    }


@pytest.fixture
def device_keys(engine: Engine) -> dict[str, str]:
    """API keys of terminal POS-01 at S001 and of POS-01 at S002."""
    return {
        "S001": create_device_key(engine, "S001", "POS-01"),
        "S002": create_device_key(engine, "S002", "POS-01"),
    }


def recent(hours_ago: float = 2.0, utc_offset_hours: int = 1) -> str:
    """An ISO timestamp ``hours_ago`` before now in a fixed UTC offset: inside the window terminals may
    post in (api.plausibility) on any day the suite runs."""
    zone = timezone(timedelta(hours=utc_offset_hours))
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).astimezone(zone).isoformat(timespec="seconds")


def sale_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": recent(),
        "store_id": "S001",
        "device_id": "POS-01",
        "transaction_id": f"T-{uuid.uuid4().hex[:10]}",
        "kind": "sale",
        "cashier_id": "C01",
        "payment_type": "card",
        "lines": [{"product_id": "P001", "quantity": 2, "unit_price_cents": 399, "discount_cents": 0}],
    }
    event.update(overrides)
    return event


def inventory_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": recent(hours_ago=5, utc_offset_hours=0),
        "store_id": "S001",
        "device_id": "POS-01",
        "product_id": "P001",
        "kind": "receipt",
        "quantity_delta": 24,
    }
    event.update(overrides)
    return event


def forecast_frame() -> pl.DataFrame:
    """90 days of forecast per store and product; interval widths grow with the horizon day."""
    cutoff = date(2026, 11, 27)
    rows = []
    for s, store in enumerate(SNAPSHOT_STORES):
        for p, product in enumerate(SNAPSHOT_PRODUCTS):
            for h in range(1, 91):
                yhat = 10.0 + s + p + h / 10
                rows.append(
                    {
                        "store_id": store,
                        "product_id": product,
                        "ds": cutoff + timedelta(days=h),
                        "horizon_day": h,
                        "yhat": yhat,
                        "lo_80": yhat - 1 - h / 50,
                        "hi_80": yhat + 1 + h / 50,
                        "lo_95": yhat - 2 - h / 25,
                        "hi_95": yhat + 2 + h / 25,
                        "model": "AutoETS" if p % 2 == 0 else "AutoARIMA",
                        "cutoff": cutoff,
                    }
                )
    return pl.DataFrame(rows)


def anomaly_frame() -> pl.DataFrame:
    """14 scored store-days per store; every fifth day is flagged."""
    rows = []
    for store in SNAPSHOT_STORES:
        for d in range(14):
            flagged = d % 5 == 0
            rows.append(
                {
                    "store_id": store,
                    "sale_date": date(2026, 11, 13) + timedelta(days=d),
                    "anomaly_score": 0.9 + d / 100 if flagged else 0.1,
                    "threshold": 0.8,
                    "is_anomaly": flagged,
                    "severity": ("high" if d == 10 else "medium") if flagged else "low",
                    "drivers": "refund_rate,void_rate" if flagged else None,  # as the pipeline writes it
                    "net_revenue_cents": 100_000 + d,
                    "transactions": 50 + d,
                    "avg_basket_cents": 2000.0 + d,
                    "refund_rate": 0.01,
                    "void_rate": 0.02,
                    "discount_rate": 0.03,
                }
            )
    return pl.DataFrame(rows)


@pytest.fixture
def snapshot(settings: Settings) -> Snapshot:
    return publish_snapshot(
        settings.serving,
        {"demand_forecast": forecast_frame(), "sales_anomalies": anomaly_frame()},
        run_id="run-test-0001",
    )


def utc_now() -> datetime:
    return datetime.now(UTC)

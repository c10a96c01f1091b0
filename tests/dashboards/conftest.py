"""Fixtures for the dashboard tests: one real API (uvicorn on loopback, its own SQLite ops store) that the
analysts log in to, their logged-in sessions, settings whose live API does not answer, and a published
snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pyotp
import pytest
from sqlalchemy import Engine

from chainsync.ops_store import get_engine
from chainsync.ops_store.audit_log import query_audit
from chainsync.ops_store.users import upsert_user
from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings, get_settings
from dashboards.auth import Session, session_of
from tests.dashboards.snapshot import DEAD_API, snapshot_tables
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy

PASSWORD = "correct-horse-battery"
MANAGER = "mona"  # manager of S001 and S002
MANAGER_STORES = ("S001", "S002")
ADMIN = "adam"  # administrator, two-factor enrolled (required outside demo mode)
CASHIER = "carl"
JWT_SECRET = "dashboard-login-tests-" + "k" * 40


@dataclass
class LoginApi:
    """A running API: its address, its ops store, its own settings (for minting test tokens) and the TOTP
    secrets of the users enrolled in two-factor authentication."""

    base: str
    engine: Engine
    settings: Settings
    totp: dict[str, str]

    def logins(self, username: str) -> int:
        """Successful logins of ``username`` the API has audited."""
        return len(query_audit(self.engine, action="login_success", actor=username, limit=1000))

    def refreshes(self, username: str) -> int:
        return len(query_audit(self.engine, action="token_refresh", actor=username, limit=1000))

    def code(self, username: str, steps_ahead: int = 0) -> str:
        """The TOTP code of ``username`` ``steps_ahead`` 30-second steps from now (the API takes one step
        either side, and never the same step twice)."""
        totp = pyotp.TOTP(self.totp[username])
        return totp.at(datetime.now(UTC) + timedelta(seconds=steps_ahead * totp.interval))


def enrol_totp(base: str, username: str) -> str:
    """Turn on two-factor authentication for ``username`` through the API; its TOTP secret."""
    form = {"username": username, "password": PASSWORD}
    enrolled = httpx.post(f"{base}/api/auth/2fa/enroll", data=form)
    enrolled.raise_for_status()
    secret = str(enrolled.json()["secret"])
    confirmed = httpx.post(f"{base}/api/auth/2fa/confirm", data={**form, "otp": pyotp.TOTP(secret).now()})
    confirmed.raise_for_status()
    return secret


def start_login_api(data_dir: Path, *, enrol: bool = True, **extra: str) -> tuple[LoginApi, object]:
    """Start an API on ``data_dir`` with the test users (``extra``: more environment; ``enrol``: turn on
    the administrator's two-factor authentication, which costs two login attempts); (api, process)."""
    env = api_env(data_dir, JWT_SECRET, **extra)
    settings = Settings(data_dir=data_dir, jwt_secret=JWT_SECRET)  # type: ignore[arg-type]
    engine = get_engine(settings.ops_store)
    upsert_user(engine, MANAGER, PASSWORD, "manager", MANAGER_STORES)
    upsert_user(engine, ADMIN, PASSWORD, "admin")
    upsert_user(engine, CASHIER, PASSWORD, "cashier", ["S001"])
    port = free_port()
    proc = start_api(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        totp = {ADMIN: enrol_totp(base, ADMIN)} if enrol else {}
        api = LoginApi(base=base, engine=engine, settings=settings, totp=totp)
    except BaseException:
        stop_api(proc)
        raise
    return api, proc


@pytest.fixture(scope="session")
def login_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoginApi]:
    """One API for the whole session: tokens valid two hours, login rate limit and IP blocking out of the
    way (every test logs in from 127.0.0.1)."""
    api, proc = start_login_api(
        tmp_path_factory.mktemp("login-api"),
        CHAINSYNC_ACCESS_TOKEN_MINUTES="120",
        CHAINSYNC_RATE_LIMIT_LOGIN="1000/minute",
        CHAINSYNC_IP_ALLOWLIST="127.0.0.1/32",
    )
    try:
        yield api
    finally:
        stop_api(proc)  # type: ignore[arg-type]
        api.engine.dispose()


def api_login(api: LoginApi, username: str, otp: str | None = None) -> Session:
    """A session from a real login at the API (as the login page makes it)."""
    form = {"username": username, "password": PASSWORD, **({"otp": otp} if otp else {})}
    resp = httpx.post(f"{api.base}/api/auth/token", data=form)
    resp.raise_for_status()
    return session_of(resp.json())


@pytest.fixture(scope="session")
def admin(login_api: LoginApi) -> Session:
    """The administrator, logged in once for the session (password and the next TOTP step's code)."""
    return api_login(login_api, ADMIN, login_api.code(ADMIN, steps_ahead=1))


@pytest.fixture(scope="session")
def manager(login_api: LoginApi) -> Session:
    """The manager of S001 and S002, logged in once for the session."""
    return api_login(login_api, MANAGER)


@pytest.fixture
def dashboard_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # The analysts' tokens come from the login API; the live figures' API is down (the pages must say so).
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

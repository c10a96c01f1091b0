"""The login (dashboards/login.py, dashboards/auth.py) against a real API on loopback: the form, the
two-factor step, the API's refusals shown as such, one login per session with the token reused, the
refresh when it expires, and the logout that ends the login at the API."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from chainsync.ops_store.users import upsert_user
from chainsync.serving import publish_snapshot
from chainsync.settings import Settings, get_settings
from dashboards import auth
from tests.dashboards.conftest import (
    CASHIER,
    MANAGER,
    PASSWORD,
    LoginApi,
    enrol_totp,
    start_login_api,
)
from tests.dashboards.snapshot import DEAD_API, app, infos, metrics, snapshot_tables
from tests.live_api import stop_api

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboards(
    settings: Settings, login_api: LoginApi, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LoginApi]:
    """Dashboards that log in to (and read live figures from) the session's API, over a published
    snapshot."""
    import streamlit as st

    publish_snapshot(settings.serving, snapshot_tables(), run_id="login-test")
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", login_api.base)
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    yield login_api


def submit(at: AppTest, username: str, password: str, otp: str | None = None) -> AppTest:
    """Fill the login form and press "Log in"."""
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    if otp is not None:
        at.text_input(key="login_otp").input(otp)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def session_of(at: AppTest) -> auth.Session | None:
    value = at.session_state[auth.SESSION_KEY] if auth.SESSION_KEY in at.session_state else None  # noqa: SIM401
    return value if isinstance(value, auth.Session) else None


def test_logged_out_every_address_shows_the_login_form(dashboards: LoginApi) -> None:
    at = app(None)
    assert at.title[0].value == "ChainSync Analytics"
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.metric and not at.dataframe  # nothing of the snapshot before the login
    with pytest.raises(ValueError, match="navigation"):
        at.switch_page("views/sync.py")  # no page but the login is registered


def test_one_login_per_session_reused_across_pages_and_reruns(dashboards: LoginApi) -> None:
    logins, refreshes = dashboards.logins(MANAGER), dashboards.refreshes(MANAGER)
    at = submit(app(None), MANAGER, PASSWORD)
    session = session_of(at)
    assert session is not None and session.role == "manager" and session.stores == ("S001", "S002")
    assert at.title[0].value == "Overview"
    for page in ("sync", "forecast", "overview", "anomalies", "sync", "inventory", "insights"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, page
    at.run().run()
    # Live figures came from the API with the manager's token (the sync page's two sections answered).
    at.switch_page("views/sync.py").run()
    assert metrics(at)["Sync service"] in {"OK", "DEGRADED", "CRITICAL"}
    assert not any("not shown" in i for i in infos(at))
    assert dashboards.logins(MANAGER) == logins + 1
    assert dashboards.refreshes(MANAGER) == refreshes
    assert session_of(at) == session  # the same token all along


def test_wrong_password_is_the_apis_answer(dashboards: LoginApi) -> None:
    at = submit(app(None), MANAGER, "not-the-password")
    assert errors(at) == ["Incorrect username or password."]
    assert session_of(at) is None
    at = submit(app(None), "", "")
    assert errors(at) == ["Username: required. Password: required."]


def test_administrator_answers_the_two_factor_step(dashboards: LoginApi) -> None:
    upsert_user(dashboards.engine, "ada", PASSWORD, "admin")
    dashboards.totp["ada"] = enrol_totp(dashboards.base, "ada")  # used the current step
    at = submit(app(None), "ada", PASSWORD)
    assert session_of(at) is None
    assert [t.label for t in at.text_input] == ["Username", "Password", "Two-factor code"]
    assert any("Two-factor authentication is on for ada" in c.value for c in at.caption)
    stale = dashboards.code("ada", steps_ahead=-5)
    at.text_input(key="login_otp").input(stale)
    at.button[0].click().run()
    assert errors(at) == ["Invalid two-factor code."]
    at.text_input(key="login_otp").input("12ab")
    at.button[0].click().run()
    assert errors(at) == ["Two-factor code: 6 to 8 digits."]
    at.text_input(key="login_otp").input(dashboards.code("ada", steps_ahead=1))
    at.button[0].click().run()
    assert not at.exception
    session = session_of(at)
    assert session is not None and session.is_admin and session.stores is None
    at.switch_page("views/security.py").run()  # administrators have the security page
    assert at.title[0].value == "Security" and not at.error


def test_cashier_is_refused_and_left_without_a_token(dashboards: LoginApi) -> None:
    at = submit(app(None), CASHIER, PASSWORD)
    assert errors(at) == ["The dashboards are for managers and administrators."]
    assert session_of(at) is None


def test_api_down_is_said_at_the_login(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", DEAD_API)
    monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    at = submit(app(None), MANAGER, PASSWORD)
    assert errors(at) == [f"The API at {DEAD_API} is not answering (ConnectError)."]


def test_too_many_attempts_is_the_apis_429(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict, proc = start_login_api(
        tmp_path_factory.mktemp("strict-api"), enrol=False, CHAINSYNC_RATE_LIMIT_LOGIN="2/minute"
    )
    try:
        monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", strict.base)
        get_settings.cache_clear()
        shown = [errors(submit(app(None), MANAGER, "wrong-password")) for _ in range(3)]
        assert shown[:2] == [["Incorrect username or password."]] * 2
        assert len(shown[2]) == 1 and shown[2][0].startswith("Too many login attempts: try again in ")
    finally:
        stop_api(proc)  # type: ignore[arg-type]
        strict.engine.dispose()


def test_an_expiring_token_is_refreshed_once(dashboards: LoginApi) -> None:
    at = submit(app(None), MANAGER, PASSWORD)
    logins, refreshes = dashboards.logins(MANAGER), dashboards.refreshes(MANAGER)
    first = session_of(at)
    assert first is not None
    # The token's lifetime is over (as the dashboards see it): the next API call refreshes first.
    at.session_state[auth.SESSION_KEY] = dataclasses.replace(first, expires_at=time.time() - 1)
    at.switch_page("views/sync.py").run()
    second = session_of(at)
    assert second is not None and second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token  # rotated
    assert second.expires_at > time.time() + 60
    assert not any("not shown" in i for i in infos(at))
    at.switch_page("views/overview.py").run()
    assert session_of(at) == second  # refreshed once, then reused
    assert dashboards.refreshes(MANAGER) == refreshes + 1
    assert dashboards.logins(MANAGER) == logins


def test_a_token_the_api_finds_expired_is_refreshed_and_the_call_retried(dashboards: LoginApi) -> None:
    from api.security.tokens import create_access_token

    at = submit(app(None), MANAGER, PASSWORD)
    session = session_of(at)
    assert session is not None
    refreshes = dashboards.refreshes(MANAGER)
    # A token that really expired (signed by the API's key, an hour ago) while the dashboards' clock
    # still thought it good: the API answers 401, the dashboards refresh and retry once.
    expired = create_access_token(
        dashboards.settings,
        subject=MANAGER,
        role="manager",
        stores=["S001", "S002"],
        now=datetime.now(UTC) - timedelta(hours=3),
    ).token
    at.session_state[auth.SESSION_KEY] = dataclasses.replace(session, access_token=expired)
    at.switch_page("views/sync.py").run()
    assert not any("not shown" in i for i in infos(at))
    assert dashboards.refreshes(MANAGER) == refreshes + 1
    assert session_of(at) is not None and session_of(at).access_token != expired  # type: ignore[union-attr]


def test_logout_ends_the_login_at_the_api(dashboards: LoginApi) -> None:
    at = submit(app(None), MANAGER, PASSWORD)
    session = session_of(at)
    assert session is not None
    at.sidebar.button(key="logout").click().run()
    assert not at.exception
    assert session_of(at) is None
    assert at.title[0].value == "ChainSync Analytics"
    assert "You have logged out." in infos(at)
    # Both tokens are dead at the API, not only forgotten here.
    headers = {"Authorization": f"Bearer {session.access_token}"}
    assert httpx.get(f"{dashboards.base}/api/sync/health", headers=headers).status_code == 401
    refreshed = httpx.post(
        f"{dashboards.base}/api/auth/refresh", json={"refresh_token": session.refresh_token}
    )
    assert refreshed.status_code == 401


def test_a_login_ended_elsewhere_returns_to_the_login_page(dashboards: LoginApi) -> None:
    at = submit(app(None), MANAGER, PASSWORD)
    session = session_of(at)
    assert session is not None
    ended = httpx.post(
        f"{dashboards.base}/api/auth/logout", headers={"Authorization": f"Bearer {session.access_token}"}
    )
    assert ended.status_code == 204
    import streamlit as st

    st.cache_data.clear()  # the live answers cached a moment ago would hide the revocation for 5 s
    at.switch_page("views/sync.py").run()
    assert not at.exception
    assert session_of(at) is None
    assert "Your session has ended: log in again." in infos(at)
    assert [t.label for t in at.text_input] == ["Username", "Password"]


def test_admin_pages_are_neither_listed_nor_reachable_for_a_manager(dashboards: LoginApi) -> None:
    at = submit(app(None), MANAGER, PASSWORD)
    for page in ("security", "system"):
        with pytest.raises(ValueError, match="navigation"):
            at.switch_page(f"views/{page}.py")
    # What their addresses show (a refusal, none of the page) is checked in the browser test.


def test_a_short_lived_token_is_refreshed_before_it_runs_out(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens of one minute (CHAINSYNC_ACCESS_TOKEN_MINUTES=1, the shortest): a session kept busy for longer
    logs in once and refreshes within the last EXPIRY_MARGIN_SECONDS, never showing a refused call."""
    short, proc = start_login_api(
        tmp_path_factory.mktemp("short-api"), enrol=False, CHAINSYNC_ACCESS_TOKEN_MINUTES="1"
    )
    try:
        import streamlit as st

        publish_snapshot(settings.serving, snapshot_tables(), run_id="short-token-test")
        monkeypatch.setenv("CHAINSYNC_DASHBOARD_API_URL", short.base)
        get_settings.cache_clear()
        st.cache_data.clear()
        at = submit(app(None), MANAGER, PASSWORD)
        first = session_of(at)
        assert first is not None and first.expires_at - time.time() <= 60
        at.switch_page("views/sync.py")
        deadline = time.monotonic() + 90  # the refresh is due 40 s after the login
        while time.monotonic() < deadline:
            st.cache_data.clear()  # every rerun calls the API, as an analyst's page would over time
            at.run()
            assert not at.exception and not any("not shown" in i for i in infos(at))
            now = session_of(at)
            assert now is not None
            if now.access_token != first.access_token:
                break
            time.sleep(1)
        renewed = session_of(at)
        assert renewed is not None and renewed.access_token != first.access_token, "no refresh in 90 s"
        assert first.expires_at - auth.EXPIRY_MARGIN_SECONDS - 5 <= time.time() <= first.expires_at
        assert short.logins(MANAGER) == 1 and short.refreshes(MANAGER) == 1
    finally:
        stop_api(proc)  # type: ignore[arg-type]
        short.engine.dispose()

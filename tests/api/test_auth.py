"""POST /api/auth/token and the authentication every protected route demands."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pyotp
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from api.main import create_app
from api.security.tokens import create_access_token, decode_access_token
from chainsync.ops_store.events import count_events
from chainsync.ops_store.tables import event_inbox
from chainsync.ops_store.users import get_user, upsert_user
from chainsync.settings import get_settings
from tests.api.conftest import PASSWORD, TestClient, bearer

PUBLIC = {
    "/api/observability/health",
    "/api/auth/token",
    "/api/auth/refresh",
    "/api/auth/2fa/enroll",
    "/api/auth/2fa/confirm",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


def login(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/api/auth/token", data={"username": username, "password": password})


def test_token_flow_returns_a_bearer_token_with_role_and_stores(client, users, settings) -> None:
    resp = login(client, "mona", PASSWORD)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "bearer"
    assert body["role"] == "manager"
    assert body["expires_in"] == settings.access_token_minutes * 60
    claims = jwt.decode(body["access_token"], settings.jwt_key(), algorithms=[settings.jwt_algorithm])
    assert claims["sub"] == "mona"
    assert claims["role"] == "manager"
    assert claims["stores"] == ["S001", "S002"]
    assert {"iat", "exp", "jti"} <= claims.keys()
    # The token opens a manager route.
    assert client.get("/api/ai/anomalies", headers=bearer(body["access_token"])).status_code in (200, 503)


def test_admin_token_covers_all_stores(client, users, settings, engine) -> None:
    # Administrators need two-factor authentication outside demo mode (tests/api/test_security_auth.py).
    assert login(client, "alice", PASSWORD).status_code == 403
    secret = client.post("/api/auth/2fa/enroll", data={"username": "alice", "password": PASSWORD}).json()[
        "secret"
    ]
    code = pyotp.TOTP(secret).now()
    assert (
        client.post(
            "/api/auth/2fa/confirm", data={"username": "alice", "password": PASSWORD, "otp": code}
        ).status_code
        == 200
    )
    resp = client.post(
        "/api/auth/token",
        data={"username": "alice", "password": PASSWORD, "otp": pyotp.TOTP(secret).at(time.time() + 30)},
    )
    token = resp.json()["access_token"]
    assert decode_access_token(settings, token).stores == ("*",)


def test_wrong_password_and_unknown_user_get_the_same_401(client, users) -> None:
    wrong = login(client, "mona", "not-the-password")
    unknown = login(client, "nobody", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"] == "Incorrect username or password"
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_user_costs_about_as_much_as_a_wrong_password(client, users) -> None:
    def timed(username: str) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            login(client, username, "not-the-password")
            best = min(best, time.perf_counter() - start)
        return best

    wrong, unknown = timed("mona"), timed("nobody")
    # Both verify an argon2 hash; without the dummy hash the unknown user would answer many times faster.
    assert unknown > wrong * 0.5


def test_logins_are_audited_as_security_events_without_the_password(client, users, engine) -> None:
    login(client, "mona", PASSWORD)
    login(client, "mona", "wrong-password-123")
    with engine.connect() as conn:
        rows = conn.execute(
            select(event_inbox.c.store_id, event_inbox.c.device_id, event_inbox.c.payload)
            .where(event_inbox.c.event_type == "security")
            .order_by(event_inbox.c.seq)
        ).all()
    assert [r.store_id for r in rows] == ["HQ", "HQ"]
    assert [r.device_id for r in rows] == ["api", "api"]
    payloads = " ".join(r.payload for r in rows)
    assert '"kind":"login_success"' in payloads and '"kind":"login_failure"' in payloads
    assert '"username":"mona"' in payloads
    assert PASSWORD not in payloads and "wrong-password-123" not in payloads
    assert "access_token" not in payloads


def test_audit_switch_off_records_nothing(settings, users, engine, monkeypatch) -> None:
    monkeypatch.setenv("SECURITY_AUDIT_ENABLED", "false")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        assert login(c, "mona", PASSWORD).status_code == 200
        assert login(c, "mona", "nope-nope-nope").status_code == 401
    assert count_events(engine, "security") == 0


# --- every protected route refuses bad credentials --------------------------------------------


def _protected_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    out = []
    for ctx in iter_route_contexts(app.routes):
        if ctx.path in PUBLIC:
            continue
        for method in sorted(ctx.methods or ()):
            if method != "HEAD":
                out.append((method, ctx.path))
    return out


def _bad_tokens(settings) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    claims = {
        "sub": "alice",
        "role": "admin",
        "stores": ["*"],
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": "x",
    }
    expired = {**claims, "iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
    header, payload, _sig = jwt.encode(claims, settings.jwt_key(), algorithm="HS256").split(".")
    return {
        "no token": {},
        "garbage": bearer("not-a-jwt"),
        "garbage api key": {"X-API-Key": "csk_deadbeef_nope"},
        "empty bearer": {"Authorization": "Bearer "},
        "expired": bearer(jwt.encode(expired, settings.jwt_key(), algorithm="HS256")),
        "alg none": bearer(jwt.encode(claims, None, algorithm="none")),
        "wrong key": bearer(jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256")),
        "other algorithm": bearer(jwt.encode(claims, settings.jwt_key(), algorithm="HS512")),
        "signature stripped": bearer(f"{header}.{payload}."),
    }


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_every_protected_route_rejects_missing_or_bad_credentials(app, client, settings, users) -> None:
    routes = _protected_routes(app)
    assert ("POST", "/api/events/sales") in routes and ("GET", "/metrics") in routes
    assert ("GET", "/api/ai/forecast") in routes
    for name, headers in _bad_tokens(settings).items():
        for method, path in routes:
            resp = client.request(method, path, headers=headers)
            assert resp.status_code == 401, (name, method, path, resp.status_code, resp.text)
            assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_a_valid_token_passes_authentication(app, client, settings, users) -> None:
    token = create_access_token(settings, subject="alice", role="admin", stores=["*"]).token
    # Logout last: it revokes the token it is called with.
    for method, path in sorted(_protected_routes(app), key=lambda r: r[1] == "/api/auth/logout"):
        resp = client.request(method, path, headers=bearer(token))
        assert resp.status_code != 401, (method, path)


# --- demo users ----------------------------------------------------------------------------------


def test_no_demo_users_outside_demo_mode(client, engine) -> None:
    assert [get_user(engine, name) for name in ("admin", "manager", "cashier")] == [None, None, None]
    assert login(client, "admin", "demo").status_code == 401


def test_demo_mode_seeds_admin_manager_cashier(settings, engine, monkeypatch) -> None:
    monkeypatch.setenv("CHAINSYNC_DEMO_MODE", "true")
    monkeypatch.setenv("CHAINSYNC_DEMO_PASSWORD", "demo-pass-123")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        for name in ("admin", "manager", "cashier"):
            resp = login(c, name, "demo-pass-123")
            assert resp.status_code == 200 and resp.json()["role"] == name
    manager = get_user(engine, "manager")
    assert manager is not None and manager.store_ids == {"S001", "S002", "S003", "S004", "S005"}


def test_demo_manager_gets_first_half_of_the_catalog(settings, engine, monkeypatch) -> None:
    from chainsync.ops_store.catalog import upsert_stores

    upsert_stores(
        engine,
        [{"store_id": f"S{i:03d}", "name": f"Store {i}", "region": "N", "city": "X"} for i in range(1, 7)],
    )
    monkeypatch.setenv("CHAINSYNC_DEMO_MODE", "true")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())):
        pass
    manager = get_user(engine, "manager")
    assert manager is not None and manager.store_ids == {"S001", "S002", "S003"}


def test_demo_users_stop_working_when_the_demo_directory_is_served_in_production(
    settings, engine, monkeypatch
) -> None:
    monkeypatch.setenv("CHAINSYNC_DEMO_MODE", "true")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        assert login(c, "manager", "demo").status_code == 200
    # The cashier was given a password of its own meanwhile: it is a real account now.
    upsert_user(engine, "cashier", "a-real-Passw0rd", "cashier", ["S001"])
    monkeypatch.setenv("CHAINSYNC_DEMO_MODE", "false")
    monkeypatch.setenv("CHAINSYNC_ENVIRONMENT", "production")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        for name in ("admin", "manager"):
            assert login(c, name, "demo").status_code == 401
            user = get_user(engine, name)
            assert user is not None and not user.is_active
        assert login(c, "cashier", "a-real-Passw0rd").status_code == 200


def test_missing_secret_outside_demo_mode_fails_startup_clearly(settings, monkeypatch) -> None:
    monkeypatch.delenv("CHAINSYNC_JWT_SECRET")
    get_settings.cache_clear()
    app = create_app(get_settings())
    with pytest.raises(RuntimeError, match="CHAINSYNC_JWT_SECRET"), TestClient(app):
        pass


def test_authorization_denials_are_audited(client, tokens, device_keys, engine) -> None:
    client.get("/metrics", headers=bearer(tokens["manager"]))
    client.get("/api/ai/forecast", params={"store_id": "S003"}, headers=bearer(tokens["manager"]))
    client.post("/api/events/sales", json={}, headers=bearer(tokens["admin"]))
    client.get("/api/ai/anomalies", headers={"X-API-Key": device_keys["S001"]})
    with engine.connect() as conn:
        payloads = list(
            conn.execute(
                select(event_inbox.c.payload)
                .where(event_inbox.c.event_type == "security")
                .order_by(event_inbox.c.seq)
            ).scalars()
        )
    assert len(payloads) == 4, payloads
    assert all('"kind":"authorization_denied"' in p and '"outcome":"denied"' in p for p in payloads)
    assert '"username":"mona"' in payloads[0] and "GET /metrics" in payloads[0]
    assert "Store S003 is not assigned" in payloads[1]
    assert "POST /api/events/sales by alice" in payloads[2]
    assert "device:S001/POS-01" in payloads[3] and '"username"' not in payloads[3].replace(
        '"username":null', ""
    )
    assert all(tokens["manager"] not in p and tokens["admin"] not in p for p in payloads)

"""Authentication and administration: refresh-token rotation and reuse detection, logout (shared by every
API process on the ops store), TOTP two-factor, admin management of users and device keys, and
GET /api/observability/security/events."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import ValidationError
from sqlalchemy import func, select, update

from api.main import create_app
from api.security.tokens import RevokedTokens
from chainsync.ops_store import get_engine
from chainsync.ops_store.tables import revoked_tokens, user_totp
from chainsync.ops_store.tokens import active_revocations, revoke_access_token
from chainsync.ops_store.totp import TotpCipher
from chainsync.settings import Settings, get_settings
from tests.api.conftest import PASSWORD, TestClient, bearer


def login(c: TestClient, username: str, password: str = PASSWORD, **extra: str):  # type: ignore[no-untyped-def]
    return c.post("/api/auth/token", data={"username": username, "password": password, **extra})


def enrol(c: TestClient, username: str) -> str:
    secret = c.post("/api/auth/2fa/enroll", data={"username": username, "password": PASSWORD}).json()[
        "secret"
    ]
    confirm = c.post(
        "/api/auth/2fa/confirm",
        data={"username": username, "password": PASSWORD, "otp": pyotp.TOTP(secret).now()},
    )
    assert confirm.status_code == 200, confirm.text
    return secret


def next_code(secret: str) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30)


def test_refresh_rotates_and_a_reused_token_revokes_the_login(client, users, engine) -> None:
    first = login(client, "mona").json()
    assert first["refresh_token"].startswith("csr_") and first["refresh_expires_in"] == 14 * 86400
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200 and second.headers["Cache-Control"] == "no-store"
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"] and new["role"] == "manager"
    assert client.get("/api/sync/health", headers=bearer(new["access_token"])).status_code == 200
    # The spent token again: refused, and the whole family (the new token too) is revoked.
    assert client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": "csr_unknown-token"}).status_code == 401


def test_logout_ends_the_access_token_and_the_refresh_token(client, users) -> None:
    tokens = login(client, "mona").json()
    auth = bearer(tokens["access_token"])
    assert client.post("/api/auth/logout", headers=auth).status_code == 204
    assert client.get("/api/sync/health", headers=auth).status_code == 401
    assert (
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    )


def test_logout_on_one_api_process_ends_the_token_on_another(settings, users, monkeypatch) -> None:
    monkeypatch.setenv("CHAINSYNC_REVOCATION_CACHE_SECONDS", "0")  # re-read on every request
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as one, TestClient(create_app(get_settings())) as other:
        tokens = login(one, "mona").json()
        auth = bearer(tokens["access_token"])
        assert other.get("/api/sync/health", headers=auth).status_code == 200
        assert one.post("/api/auth/logout", headers=auth).status_code == 204
        refused = other.get("/api/sync/health", headers=auth)
        assert refused.status_code == 401 and refused.json()["detail"] == "Token has been revoked"
        assert one.get("/api/sync/health", headers=auth).status_code == 401
        # A fresh login is unaffected.
        again = bearer(login(one, "mona").json()["access_token"])
        assert other.get("/api/sync/health", headers=again).status_code == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revocation_elsewhere_is_seen_within_the_cache_bound(engine) -> None:
    clock = Clock()
    here, there = RevokedTokens(engine, 2.0, clock), RevokedTokens(engine, 2.0, clock)
    there.refresh()
    expires = datetime.now(UTC) + timedelta(minutes=15)
    here.revoke("jti-1", expires)
    assert "jti-1" in here  # at once in the process that revoked it
    clock.now += 1.9
    assert not there.stale() and "jti-1" not in there  # the cached set, under 2 s old
    clock.now += 0.1
    assert there.stale()
    there.refresh()
    assert "jti-1" in there and not there.stale()


class PausingExpiry(datetime):
    """An expiry time whose comparison (made while a refresh prunes expired ids) stops on ``reached``
    until ``resume`` is set, so another thread can act in the middle of the prune."""

    reached = threading.Event()
    resume = threading.Event()

    def _pause(self) -> None:
        type(self).reached.set()
        assert type(self).resume.wait(10), "the test never resumed the refresh"

    def __gt__(self, other: object) -> bool:
        self._pause()
        return super().__gt__(other)  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        self._pause()
        return super().__le__(other)  # type: ignore[operator]


def test_a_logout_during_a_refresh_is_kept(engine) -> None:
    tokens = RevokedTokens(engine, 2.0, Clock())
    later = datetime.now(UTC) + timedelta(minutes=15)
    tokens.revoke("jti-old", PausingExpiry.fromtimestamp(later.timestamp(), UTC))
    failures: list[BaseException] = []

    def refresh() -> None:
        try:
            tokens.refresh()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            failures.append(exc)

    worker = threading.Thread(target=refresh)
    worker.start()
    assert PausingExpiry.reached.wait(10)  # the refresh is pruning the ids revoked here
    tokens.revoke("jti-new", later)  # a logout on a request thread, meanwhile
    PausingExpiry.resume.set()
    worker.join()
    assert failures == []
    assert "jti-new" in tokens and "jti-old" in tokens
    assert set(active_revocations(engine)) == {"jti-old", "jti-new"}


def test_a_refresh_against_an_unreadable_store_keeps_the_last_set(tmp_path) -> None:
    path = tmp_path / "ops.sqlite"
    engine = get_engine(f"sqlite:///{path}")
    clock = Clock()
    here, there = RevokedTokens(engine, 2.0, clock), RevokedTokens(engine, 2.0, clock)
    here.revoke("jti-1", datetime.now(UTC) + timedelta(minutes=15))
    there.refresh()
    assert "jti-1" in there
    engine.dispose()
    path.unlink()  # the store is gone: the next connection opens an empty file without the table
    clock.now += 2.0
    here.refresh()  # neither raises ...
    there.refresh()
    assert "jti-1" in here and "jti-1" in there  # ... and the revoked token stays refused
    assert not there.stale()  # and the store is not queried again before the bound has passed


def test_expired_revocations_are_pruned(engine) -> None:
    now = datetime.now(UTC)
    revoke_access_token(engine, "old", now - timedelta(seconds=1), now=now - timedelta(minutes=20))
    assert active_revocations(engine) == {}  # expired: no longer listed ...
    revoke_access_token(engine, "new", now + timedelta(minutes=15))
    with engine.connect() as conn:  # ... and deleted by the next logout
        assert conn.execute(select(func.count()).select_from(revoked_tokens)).scalar() == 1
    assert set(active_revocations(engine)) == {"new"}
    revoke_access_token(engine, "new", now + timedelta(minutes=15))  # twice: still one row
    assert set(active_revocations(engine)) == {"new"}


def test_totp_login(client, users) -> None:
    secret = enrol(client, "mona")
    missing = login(client, "mona")
    assert missing.status_code == 401 and missing.headers["X-2FA-Required"] == "totp"
    assert login(client, "mona", otp="000000").status_code == 401
    code = next_code(secret)
    assert login(client, "mona", otp=code).status_code == 200
    assert login(client, "mona", otp=code).status_code == 401  # a code is good once
    # Enrolling again is refused once it is on; the password still has to be right.
    assert (
        client.post("/api/auth/2fa/enroll", data={"username": "mona", "password": PASSWORD}).status_code
        == 409
    )
    assert (
        client.post("/api/auth/2fa/enroll", data={"username": "mona", "password": "nope-nope"}).status_code
        == 401
    )


def _stored_totp(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return str(conn.execute(select(user_totp.c.secret)).scalar_one())


def test_totp_secret_is_encrypted_at_rest(client, users, engine) -> None:
    secret = enrol(client, "mona")
    stored = _stored_totp(engine)
    assert stored.startswith("fernet:") and secret not in stored
    assert login(client, "mona", otp=next_code(secret)).status_code == 200


def test_a_secret_stored_in_clear_still_verifies_and_is_encrypted_on_use(client, users, engine) -> None:
    secret = enrol(client, "mona")
    with engine.begin() as conn:  # as rows written before encryption look
        conn.execute(update(user_totp).values(secret=secret))
    assert login(client, "mona", otp=next_code(secret)).status_code == 200
    stored = _stored_totp(engine)
    assert stored.startswith("fernet:") and secret not in stored


def test_totp_keys_rotate(settings, users, engine, monkeypatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("CHAINSYNC_TOTP_ENCRYPTION_KEY", old)
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        secret = enrol(c, "mona")
    monkeypatch.setenv("CHAINSYNC_TOTP_ENCRYPTION_KEY", f"{new},{old}")  # new first: it encrypts
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        assert login(c, "mona", otp=next_code(secret)).status_code == 200
    # The login rewrote the secret under the new key: the old one can be dropped.
    assert TotpCipher([new.encode()]).decrypt(_stored_totp(engine)) == secret
    with pytest.raises(InvalidToken):
        TotpCipher([old.encode()]).decrypt(_stored_totp(engine))
    with pytest.raises(ValidationError, match="Fernet key"):
        Settings(totp_encryption_key="not-a-key")  # type: ignore[arg-type]


def test_a_secret_no_key_opens_means_enrolling_again(settings, users, engine, monkeypatch) -> None:
    monkeypatch.setenv("CHAINSYNC_TOTP_ENCRYPTION_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        enrol(c, "alice")
    # The key is replaced (not rotated): no configured key opens the stored secret.
    monkeypatch.setenv("CHAINSYNC_TOTP_ENCRYPTION_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        refused = login(c, "alice")
        assert refused.status_code == 403 and "enrol" in refused.json()["detail"]
        with engine.connect() as conn:  # the unreadable enrolment is gone
            assert conn.execute(select(func.count()).select_from(user_totp)).scalar() == 0
        secret = enrol(c, "alice")
        assert login(c, "alice").headers["X-2FA-Required"] == "totp"
        assert login(c, "alice", otp=next_code(secret)).status_code == 200


def test_admins_need_two_factor_outside_demo_mode(client, users, tokens) -> None:
    assert login(client, "alice").status_code == 403
    secret = enrol(client, "alice")
    assert login(client, "alice", otp=next_code(secret)).status_code == 200
    # An admin resets a lost second factor; the user enrols again.
    assert client.delete("/api/admin/users/alice/totp", headers=bearer(tokens["admin"])).status_code == 204
    assert login(client, "alice").status_code == 403


def test_admin_manages_users(client, users, tokens) -> None:
    admin = bearer(tokens["admin"])
    body = {"username": "nina", "password": "a-long-password-1", "role": "manager", "store_ids": ["S003"]}
    created = client.post("/api/admin/users", json=body, headers=admin)
    assert created.status_code == 201 and created.json()["store_ids"] == ["S003"]
    assert client.post("/api/admin/users", json=body, headers=admin).status_code == 409
    listed = client.get("/api/admin/users", headers=admin).json()
    assert {u["username"] for u in listed} >= {"alice", "mona", "carl", "nina"}
    assert "password_hash" not in str(listed) and "a-long-password-1" not in str(listed)
    nina = login(client, "nina", "a-long-password-1").json()
    off = client.patch("/api/admin/users/nina", json={"is_active": False}, headers=admin)
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert login(client, "nina", "a-long-password-1").status_code == 401
    assert client.post("/api/auth/refresh", json={"refresh_token": nina["refresh_token"]}).status_code == 401
    assert client.patch("/api/admin/users/ghost", json={"role": "cashier"}, headers=admin).status_code == 404
    assert client.patch("/api/admin/users/nina", json={"role": "root"}, headers=admin).status_code == 422


def test_admin_manages_device_keys(client, tokens) -> None:
    admin = bearer(tokens["admin"])
    issued = client.post(
        "/api/admin/device-keys", json={"store_id": "S004", "device_id": "POS-09"}, headers=admin
    )
    assert issued.status_code == 201
    key, prefix = issued.json()["api_key"], issued.json()["prefix"]
    assert key.startswith(f"csk_{prefix}_")
    assert client.get("/api/sync/status", headers={"X-API-Key": key}).status_code == 200
    listed = client.get("/api/admin/device-keys", params={"store_id": "S004"}, headers=admin).json()
    assert [k["prefix"] for k in listed] == [prefix] and key not in str(listed)
    assert client.delete(f"/api/admin/device-keys/{prefix}", headers=admin).status_code == 204
    assert client.get("/api/sync/status", headers={"X-API-Key": key}).status_code == 401
    assert client.delete(f"/api/admin/device-keys/{prefix}", headers=admin).status_code == 404


def test_security_events_endpoint_filters_and_pages(client, users, tokens) -> None:
    for i in range(5):
        login(client, "mona", f"wrong-{i}-password")
    login(client, "mona")
    admin = bearer(tokens["admin"])
    page = client.get(
        "/api/observability/security/events", params={"action": "login_failure", "limit": 2}, headers=admin
    )
    assert page.status_code == 200
    body = page.json()
    assert [r["action"] for r in body["items"]] == ["login_failure"] * 2
    assert body["items"][0]["seq"] > body["items"][1]["seq"]  # newest first
    assert body["threat_level"] in ("low", "elevated", "high", "critical")
    seen = [r["seq"] for r in body["items"]]
    while body["next_before_seq"] is not None:
        body = client.get(
            "/api/observability/security/events",
            params={"action": "login_failure", "limit": 2, "before_seq": body["next_before_seq"]},
            headers=admin,
        ).json()
        seen += [r["seq"] for r in body["items"]]
    assert len(seen) == len(set(seen)) == 5
    auth = client.get(
        "/api/observability/security/events",
        params={"category": "authentication", "outcome": "success", "verify": "true"},
        headers=admin,
    ).json()
    assert [r["action"] for r in auth["items"]] == ["login_success"]
    assert auth["chain"]["ok"] is True
    # The read itself is on record as data access.
    access = client.get(
        "/api/observability/security/events", params={"category": "data_access"}, headers=admin
    ).json()
    assert access["items"] and access["items"][0]["actor"] == "alice"
    assert (
        client.get("/api/observability/security/events", params={"limit": 0}, headers=admin).status_code
        == 422
    )
    assert (
        client.get("/api/observability/security/events", headers=bearer(tokens["manager"])).status_code == 403
    )

"""The request firewall and risk scoring: strict input, body cap, rate limits with Retry-After, trusted
proxies, IP allow/deny lists, brute force and credential stuffing, escalating blocks, allowlist and dry
run, reputation across restarts, blocks shared by two API processes on one ops store, the audit trail's
hash chain, and alerts to a loopback webhook."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import select, text

from api.main import create_app
from api.security.checks import address_refused
from api.security.ipfilter import IpFilter
from api.security.risk import RiskEngine
from api.security.sampling import InboxSampler
from api.security.scanner import find_attack, suspicious_body
from chainsync.ops_store.audit_log import AuditAnchor, verify_audit_chain
from chainsync.ops_store.reputation import Reputation, load_reputations, save_reputation
from chainsync.ops_store.tables import event_inbox, security_audit
from chainsync.settings import get_settings
from tests.api.conftest import PASSWORD, TestClient, bearer, risk_of, sale_event

ATTACKER = "203.0.113.7"


@pytest.fixture
def make_client(settings, monkeypatch) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """``make_client(ip, **env)``: a started app with extra settings, called from ``ip``."""
    clients: list[TestClient] = []

    def make(ip: str = ATTACKER, **env: str) -> TestClient:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        c = TestClient(create_app(get_settings()), client=(ip, 40000))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def login(c: TestClient, username: str, password: str, **extra: str):  # type: ignore[no-untyped-def]
    return c.post("/api/auth/token", data={"username": username, "password": password, **extra})


def audit_rows(engine, action: str | None = None) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    stmt = select(security_audit).order_by(security_audit.c.seq)
    if action:
        stmt = stmt.where(security_audit.c.action == action)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


# --- strict input, body cap, docs ----------------------------------------------------------------------


def test_extra_fields_are_422(client, device_keys, tokens) -> None:
    key = {"X-API-Key": device_keys["S001"]}
    assert client.post("/api/events/sales", json=sale_event(surprise=1), headers=key).status_code == 422
    body = {"username": "eve", "password": "x" * 16, "role": "cashier", "is_admin": True}
    assert client.post("/api/admin/users", json=body, headers=bearer(tokens["admin"])).status_code == 422
    assert client.post("/api/auth/refresh", json={"refresh_token": "x" * 20, "more": 1}).status_code == 422


@pytest.mark.parametrize("amount", ["true", "NaN", "Infinity", "1e400", str(10**30), "-5", '"399"', "3.99"])
def test_odd_amounts_are_refused(client, device_keys, amount) -> None:
    event = sale_event()
    raw = json.dumps(event).replace('"unit_price_cents": 399', f'"unit_price_cents": {amount}')
    assert amount in raw
    resp = client.post(
        "/api/events/sales",
        content=raw,
        headers={"X-API-Key": device_keys["S001"], "Content-Type": "application/json"},
    )
    assert 400 <= resp.status_code < 500, (amount, resp.status_code, resp.text)


def test_oversize_body_is_413(make_client, device_keys) -> None:
    c = make_client(CHAINSYNC_MAX_BODY_BYTES="2048")
    resp = c.post(
        "/api/events/sales",
        content=b"{" + b" " * 4096 + b"}",
        headers={"X-API-Key": device_keys["S001"], "Content-Type": "application/json"},
    )
    assert resp.status_code == 413


def test_docs_are_off_in_production(make_client) -> None:
    c = make_client(CHAINSYNC_ENVIRONMENT="production")
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert c.get(path).status_code == 404
    dev = make_client(CHAINSYNC_ENVIRONMENT="development")
    assert dev.get("/docs").status_code == 200


def test_errors_carry_no_stack_trace(client) -> None:
    resp = client.get("/api/observability/security/events", headers=bearer("nope"))
    assert resp.status_code == 401 and "Traceback" not in resp.text


# --- rate limits ---------------------------------------------------------------------------------------


def test_past_the_ip_limit_429_with_retry_after(make_client, engine) -> None:
    c = make_client(CHAINSYNC_RATE_LIMIT_IP="3/minute")
    codes = [c.get("/api/observability/health").status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    resp = c.get("/api/observability/health")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert "Rate limit" in resp.json()["detail"] and resp.json()["request_id"]
    [row] = audit_rows(engine, "rate_limited")  # one record per minute, not one per request
    assert row["source_ip"] == ATTACKER and row["category"] == "network" and row["outcome"] == "blocked"


def test_user_and_device_limits(make_client, tokens, device_keys) -> None:
    c = make_client(CHAINSYNC_RATE_LIMIT_USER="2/minute", CHAINSYNC_RATE_LIMIT_DEVICE="2/minute")
    user = [c.get("/api/sync/health", headers=bearer(tokens["manager"])).status_code for _ in range(3)]
    assert user == [200, 200, 429]
    # Another user from the same address is not held back by mona's limit.
    assert c.get("/api/observability/config", headers=bearer(tokens["admin"])).status_code == 200
    key = {"X-API-Key": device_keys["S001"]}
    dev = [c.get("/api/sync/status", headers=key) for _ in range(3)]
    assert [r.status_code for r in dev][:2] == [200, 200] and dev[2].status_code == 429
    assert int(dev[2].headers["Retry-After"]) >= 1


def test_login_attempts_are_limited_per_address(make_client, users) -> None:
    c = make_client(CHAINSYNC_RATE_LIMIT_LOGIN="2/minute", CHAINSYNC_IP_ALLOWLIST="203.0.113.0/24")
    codes = [login(c, "mona", PASSWORD).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


# --- client address, trusted proxies, IP lists ---------------------------------------------------------


def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(make_client) -> None:
    c = make_client(CHAINSYNC_IP_DENYLIST="203.0.113.0/24", CHAINSYNC_TRUSTED_PROXIES="10.0.0.0/8")
    assert c.get("/api/observability/health", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 403
    c2 = make_client(CHAINSYNC_IP_DENYLIST="", CHAINSYNC_RATE_LIMIT_IP="2/minute")
    spoofed = [
        c2.get("/api/observability/health", headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
        for i in range(3)
    ]
    assert spoofed == [200, 200, 429]  # a fresh header each time does not buy a fresh limit


def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_client) -> None:
    c = make_client(
        "10.0.0.5", CHAINSYNC_TRUSTED_PROXIES="10.0.0.0/8", CHAINSYNC_IP_DENYLIST="198.51.100.0/24"
    )
    # The right-most address that is not a trusted proxy is the client.
    assert (
        c.get("/api/observability/health", headers={"X-Forwarded-For": "198.51.100.9, 10.0.0.7"}).status_code
        == 403
    )
    # The client cannot hide behind a forged left-most entry.
    assert (
        c.get("/api/observability/health", headers={"X-Forwarded-For": "198.51.100.9, 192.0.2.4"}).status_code
        == 200
    )
    assert c.get("/api/observability/health").status_code == 200  # the proxy itself


def test_allowlist_only_mode(make_client) -> None:
    inside = make_client(
        "192.0.2.10", CHAINSYNC_IP_ALLOWLIST="192.0.2.0/24", CHAINSYNC_IP_ALLOWLIST_ONLY="true"
    )
    assert inside.get("/api/observability/health").status_code == 200
    outside = make_client(ATTACKER)
    assert outside.get("/api/observability/health").status_code == 403


def test_admin_ip_rules_deny_persist_and_lift(make_client, tokens, settings, engine) -> None:
    admin = make_client("192.0.2.10")
    rule = admin.post(
        "/api/admin/ip-rules",
        json={"cidr": "203.0.113.0/25", "action": "deny"},
        headers=bearer(tokens["admin"]),
    )
    assert rule.status_code == 201 and rule.json()["cidr"] == "203.0.113.0/25"
    assert (
        admin.post(
            "/api/admin/ip-rules",
            json={"cidr": "not-a-network", "action": "deny"},
            headers=bearer(tokens["admin"]),
        ).status_code
        == 422
    )
    # A restart reads the rule back from the ops store.
    attacker = make_client(ATTACKER)
    assert attacker.get("/api/observability/health").status_code == 403
    assert [r["action"] for r in audit_rows(engine, "ip_blocked")] == ["ip_blocked"]
    assert (
        admin.delete(f"/api/admin/ip-rules/{rule.json()['id']}", headers=bearer(tokens["admin"])).status_code
        == 204
    )
    attacker2 = make_client(ATTACKER)
    assert attacker2.get("/api/observability/health").status_code == 200
    assert {r["action"] for r in audit_rows(engine)} >= {"admin_ip_rule_added", "admin_ip_rule_removed"}


# --- risk scoring --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_brute_force_is_blocked_within_a_handful_and_escalates(make_client, users, engine) -> None:
    c = make_client()
    clock = Clock()
    risk_of(c).clock = clock
    codes = [login(c, "mona", f"wrong-{i}-password").status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 403, codes
    blocked = login(c, "mona", PASSWORD)  # even the right password: the address is blocked
    assert blocked.status_code == 403 and 3500 <= int(blocked.headers["Retry-After"]) <= 3600
    failures = audit_rows(engine, "login_failure")
    assert failures[-1]["risk_score"] >= 10 and failures[-1]["severity"] == "critical"
    assert "reached" in failures[-1]["detail"]
    assert all(PASSWORD not in (r["detail"] or "") for r in audit_rows(engine))
    # After the first block ends, the address comes back with a memory: the next block is a day.
    clock.now += timedelta(hours=1, minutes=1)
    codes = [login(c, "mona", f"again-{i}-password").status_code for i in range(6)]
    assert 403 in codes
    again = login(c, "mona", "whatever-password")
    assert again.status_code == 403 and int(again.headers["Retry-After"]) > 23 * 3600
    rep = risk_of(c).active_blocks()
    assert rep[0].ip == ATTACKER and rep[0].ban_count == 2
    status = risk_of(c).threat_level()
    assert status in ("high", "critical")


def test_block_survives_a_restart(make_client, users) -> None:
    c = make_client()
    for i in range(6):
        login(c, "mona", f"wrong-{i}-password")
    assert c.get("/api/observability/health").status_code == 403
    restarted = make_client()
    assert restarted.get("/api/observability/health").status_code == 403
    other = make_client("198.51.100.20")
    assert other.get("/api/observability/health").status_code == 200


def test_credential_stuffing_is_caught(make_client, users, engine) -> None:
    c = make_client(CHAINSYNC_CREDENTIAL_STUFFING_USERS="3")
    codes = [login(c, name, "Summer2026!!").status_code for name in ("ann", "bob", "cid")]
    assert codes == [401, 401, 401]
    assert login(c, "dan", "Summer2026!!").status_code == 403
    last = audit_rows(engine, "login_failure")[-1]
    assert "credential stuffing" in last["detail"] and last["severity"] == "critical"
    # Three failures for one user from another address do not block it.
    d = make_client("198.51.100.30", CHAINSYNC_CREDENTIAL_STUFFING_USERS="3")
    assert [login(d, "mona", f"typo-{i}-password").status_code for i in range(3)] == [401, 401, 401]
    assert login(d, "mona", PASSWORD).status_code == 200


def test_allowlisted_store_network_is_logged_but_never_blocked(make_client, users, engine) -> None:
    c = make_client(CHAINSYNC_IP_ALLOWLIST="203.0.113.0/24")
    codes = [login(c, "mona", f"wrong-{i}-password").status_code for i in range(8)]
    assert codes == [401] * 8
    assert login(c, "mona", PASSWORD).status_code == 200
    failures = audit_rows(engine, "login_failure")
    assert any("allowlisted, not blocked" in (r["detail"] or "") for r in failures)
    assert max(r["risk_score"] for r in failures) >= 10


def test_dry_run_logs_decisions_without_enforcing(make_client, users, engine) -> None:
    c = make_client(CHAINSYNC_SECURITY_DRY_RUN="true")
    assert [login(c, "mona", f"wrong-{i}-password").status_code for i in range(7)] == [401] * 7
    assert any("dry run, not blocked" in (r["detail"] or "") for r in audit_rows(engine, "login_failure"))


# --- risk blocks shared by the API processes (one ops store) --------------------------------------------


class SyncClock:
    """A monotonic clock the test moves: when each process re-reads the store's reputations."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_processes(make_client, **env: str) -> tuple[TestClient, TestClient, SyncClock]:  # type: ignore[no-untyped-def]
    """Two API apps on one ops store, both called from :data:`ATTACKER`, re-reading it every 2 s of one
    fake monotonic clock."""
    env = {"CHAINSYNC_RISK_SYNC_SECONDS": "2", **env}
    a, b = make_client(**env), make_client(**env)
    clock, scores_at = SyncClock(), Clock()  # the second keeps scores from decaying mid-test
    for c in (a, b):
        risk_of(c).sync_clock = clock
        risk_of(c).clock = scores_at
    return a, b, clock


def from_address(c: TestClient, ip: str) -> TestClient:
    """Another caller of the same running app (its state, risk engine included, is shared)."""
    return TestClient(c.app, client=(ip, 40000))


def block_in_store(engine, ip: str) -> None:  # type: ignore[no-untyped-def]
    """A block written by some other process (say, one with other allowlist or dry-run settings)."""
    now = datetime.now(UTC)
    save_reputation(
        engine,
        Reputation(ip=ip, score=50.0, score_at=now, ban_count=1, blocked_until=now + timedelta(hours=1)),
    )


def test_a_block_on_one_process_is_enforced_by_another_and_an_unblock_lifts_it(
    make_client, users, tokens, engine
) -> None:
    a, b, clock = two_processes(make_client)
    assert b.get("/api/observability/health").status_code == 200
    codes = [login(a, "mona", f"wrong-{i}-password").status_code for i in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 403, codes
    # B read the store under 2 s ago: not yet ...
    assert b.get("/api/observability/health").status_code == 200
    clock.now += 2.0
    # ... and once its copy is 2 s old, B refuses the address too, for the rest of A's block.
    refused = b.get("/api/observability/health")
    assert refused.status_code == 403 and 3500 <= int(refused.headers["Retry-After"]) <= 3600
    assert login(b, "mona", PASSWORD).status_code == 403  # the right password changes nothing
    assert a.get("/api/observability/health").status_code == 403  # A re-reads now, too
    admin_b = from_address(b, "198.51.100.9")
    status = admin_b.get("/api/admin/security/status", headers=bearer(tokens["admin"])).json()
    assert [r["ip"] for r in status["active_blocks"]] == [ATTACKER]
    # An admin lifts it on B: at once there, and on A within the bound.
    gone = admin_b.delete(f"/api/admin/ip-reputation/{ATTACKER}", headers=bearer(tokens["admin"]))
    assert gone.status_code == 204
    assert b.get("/api/observability/health").status_code == 200
    assert a.get("/api/observability/health").status_code == 403  # A's copy is under 2 s old
    clock.now += 2.0
    assert a.get("/api/observability/health").status_code == 200
    assert login(a, "mona", PASSWORD).status_code == 200
    assert risk_of(a).ip_score(ATTACKER) < 1  # the score forgotten too


def test_interval_zero_shares_a_block_on_the_next_request(make_client, users) -> None:
    a, b, _ = two_processes(make_client, CHAINSYNC_RISK_SYNC_SECONDS="0")
    assert b.get("/api/observability/health").status_code == 200
    for i in range(6):
        login(a, "mona", f"wrong-{i}-password")
    assert b.get("/api/observability/health").status_code == 403


def test_an_open_websocket_learns_of_a_block_made_elsewhere(make_client, engine) -> None:
    """The WebSocket's periodic address check (``address_refused``, on the event loop) has a stale copy
    re-read on a worker thread, so a connection is closed without any HTTP request reaching B."""
    _, b, clock = two_processes(make_client)
    assert b.get("/api/observability/health").status_code == 200
    block_in_store(engine, ATTACKER)
    clock.now += 2.0
    assert address_refused(b.app.state, ATTACKER) is None  # outside an event loop: memory only

    async def watch() -> str | None:
        for _ in range(
            500
        ):  # the connection's own check runs every second; this one every 10 ms, 5 s at most
            refused = address_refused(b.app.state, ATTACKER)
            if refused is not None:
                return refused
            await asyncio.sleep(0.01)
        return None

    assert asyncio.run(watch()) == "address blocked"


def test_an_allowlisted_address_is_blocked_on_neither_process(make_client, users, engine) -> None:
    a, b, clock = two_processes(make_client, CHAINSYNC_IP_ALLOWLIST="203.0.113.0/24")
    assert [login(a, "mona", f"wrong-{i}-password").status_code for i in range(8)] == [401] * 8
    block_in_store(engine, ATTACKER)  # even a block some other process wrote
    block_in_store(engine, "198.51.100.66")  # (not allowlisted: refused, so the re-read did happen)
    clock.now += 2.0
    for c in (a, b):
        assert c.get("/api/observability/health").status_code == 200
        assert from_address(c, "198.51.100.66").get("/api/observability/health").status_code == 403
    assert login(b, "mona", PASSWORD).status_code == 200


def test_dry_run_enforces_nothing_on_either_process(make_client, users, engine) -> None:
    a, b, clock = two_processes(make_client, CHAINSYNC_SECURITY_DRY_RUN="true")
    assert [login(a, "mona", f"wrong-{i}-password").status_code for i in range(7)] == [401] * 7
    assert any("dry run, not blocked" in (r["detail"] or "") for r in audit_rows(engine, "login_failure"))
    block_in_store(engine, ATTACKER)  # written by a process that enforces
    clock.now += 2.0
    for c in (a, b):
        assert c.get("/api/observability/health").status_code == 200
        assert risk_of(c).active_blocks()  # known, listed, not enforced
    assert login(b, "mona", PASSWORD).status_code == 200


def test_a_process_that_has_not_seen_a_block_cannot_shorten_or_clear_it(engine) -> None:
    now = datetime.now(UTC)
    until = now + timedelta(hours=1)
    save_reputation(engine, Reputation(ATTACKER, 12.0, now, ban_count=1, blocked_until=until))
    save_reputation(engine, Reputation(ATTACKER, 3.0, now))  # a stale process scores the address
    save_reputation(engine, Reputation(ATTACKER, 3.0, now, ban_count=1, blocked_until=now))  # an older block
    [rep] = load_reputations(engine)
    assert (rep.score, rep.blocked_until, rep.ban_count) == (3.0, until, 1)
    later = now + timedelta(days=1)
    save_reputation(engine, Reputation(ATTACKER, 14.0, now, ban_count=2, blocked_until=later))
    [rep] = load_reputations(engine)
    assert (rep.blocked_until, rep.ban_count) == (later, 2)


def test_merging_keeps_the_higher_decayed_score(settings, engine) -> None:
    clock = Clock()
    here = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock)
    here.observe(ATTACKER, "suspicious_input")  # 4 here
    half_life = timedelta(minutes=settings.risk_half_life_minutes)
    # Written elsewhere: 6 a half-life ago (3 now) is lower than ours; 6 now is higher.
    save_reputation(engine, Reputation(ATTACKER, 6.0, clock.now - half_life))
    here.refresh()
    assert here.ip_score(ATTACKER) == pytest.approx(4.0)
    save_reputation(engine, Reputation(ATTACKER, 6.0, clock.now))
    here.refresh()
    assert here.ip_score(ATTACKER) == pytest.approx(6.0)
    # A process started later learns both addresses' levels from the store.
    there = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock)
    assert there.ip_score(ATTACKER) == pytest.approx(6.0)


def test_pruning_keeps_blocks_and_ban_counts_and_forgets_the_rest(settings, engine) -> None:
    clock = Clock()
    here = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock)
    for _ in range(5):
        here.observe(ATTACKER, "login_failure")  # 10: blocked an hour
    here.observe("198.51.100.5", "not_found")  # a probe, never blocked
    assert here.blocked_for(ATTACKER) > 3500
    here.prune()  # a block in force is never pruned, here or in the store
    assert here.blocked_for(ATTACKER) > 3500
    assert {r.ip for r in load_reputations(engine)} == {ATTACKER, "198.51.100.5"}
    # Twenty days later, within the retention: the probe is forgotten, the attacker's ban count is not.
    clock.now += timedelta(days=20)
    assert here.prune() == 1
    assert [r.ip for r in load_reputations(engine)] == [ATTACKER]
    assert "198.51.100.5" not in here._ips  # memory too
    # The attacker returns to a process started after the prune: its next block is a day, not an hour.
    there = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock)
    for _ in range(4):
        there.observe(ATTACKER, "login_failure")
    decision = there.observe(ATTACKER, "login_failure")
    assert decision.enforced and decision.blocked_seconds == 86400
    assert there.active_blocks()[0].ban_count == 2
    # Past the retention after that block's end, it goes as well.
    clock.now += timedelta(days=1 + settings.risk_reputation_retention_days)
    assert there.prune() == 1
    assert load_reputations(engine) == [] and there.ip_score(ATTACKER) == 0.0


def test_pruning_forgets_faded_usernames_but_not_recent_ones(settings, engine) -> None:
    clock = Clock()
    risk = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock)
    for n in range(200):  # made-up usernames from many addresses (enumeration)
        risk.observe(f"198.51.100.{n % 250}", "login_failure", username=f"nobody{n}")
    clock.now += timedelta(hours=12)  # every one of those scores has halved dozens of times
    risk.observe("198.51.100.251", "login_failure", username="alice")  # fresh: kept
    risk.prune()
    assert set(risk._users) == {"alice"}
    assert set(risk._user_failures) == {"alice"}
    assert risk.user_score("alice") > 0


def test_the_sync_reread_prunes_at_most_hourly_on_a_thread_of_its_own(settings, engine) -> None:
    clock, sync_clock = Clock(), SyncClock()
    risk = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock, sync_clock=sync_clock)
    risk.observe("198.51.100.5", "not_found")
    clock.now += timedelta(hours=3)  # 0.25 halved six times: negligible
    risk.refresh()
    first = risk.pruner
    assert first is not None and first is not threading.current_thread()
    first.join(timeout=30)
    assert load_reputations(engine) == []
    risk.observe("198.51.100.6", "not_found")
    clock.now += timedelta(hours=3)
    sync_clock.now += 3599.0
    risk.refresh()  # re-read, but pruned under an hour ago: not again
    assert risk.pruner is first and [r.ip for r in load_reputations(engine)] == ["198.51.100.6"]
    sync_clock.now += 1.0
    risk.refresh()
    assert risk.pruner is not first
    risk.pruner.join(timeout=30)  # type: ignore[union-attr]
    assert load_reputations(engine) == []


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        type(self).arrived.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Receiver]]]:
    _Receiver.received = []
    _Receiver.arrived = threading.Event()
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver
    server.shutdown()


def test_success_after_failures_scores_high_and_alerts(make_client, users, engine, webhook) -> None:
    url, receiver = webhook
    c = make_client(MONITORING_ALERT_WEBHOOK=url)
    for i in range(4):
        assert login(c, "mona", f"wrong-{i}-password").status_code == 401
    assert login(c, "mona", PASSWORD).status_code == 200  # four failures: not yet blocked
    success = audit_rows(engine, "login_success")[-1]
    assert success["severity"] == "critical" and "success after failures" in success["detail"]
    assert success["risk_score"] >= 10
    assert receiver.arrived.wait(10), "the webhook got no alert"
    alert = receiver.received[0]
    assert alert["severity"] == "critical" and alert["kind"] == "security.login_success"
    assert alert["details"]["source_ip"] == ATTACKER and PASSWORD not in json.dumps(alert)


def test_a_block_alerts_without_slowing_the_request(make_client, users, webhook) -> None:
    url, receiver = webhook
    c = make_client(MONITORING_ALERT_WEBHOOK="http://127.0.0.1:9/unreachable")  # nothing listens
    for i in range(6):
        login(c, "mona", f"wrong-{i}-password")
    assert c.get("/api/observability/health").status_code == 403  # answered, the alert retries elsewhere


def test_access_outside_business_hours_scores(make_client, users, engine) -> None:
    hour = datetime.now(UTC).hour
    window = f"{(hour + 2) % 24:02d}-{(hour + 3) % 24:02d}"
    c = make_client(CHAINSYNC_BUSINESS_HOURS=window)
    assert login(c, "mona", PASSWORD).status_code == 200
    row = audit_rows(engine, "login_success")[-1]
    assert "outside business hours" in row["detail"] and row["risk_score"] > 0


def test_suspicious_input_is_recorded_and_scored(make_client, tokens, engine) -> None:
    c = make_client()
    c.get("/api/ai/forecast", params={"store_id": "S001' OR '1'='1"}, headers=bearer(tokens["manager"]))
    c.get("/api/ai/anomalies", params={"q": "<script>alert(1)</script>"}, headers=bearer(tokens["manager"]))
    rows = audit_rows(engine, "suspicious_input")
    assert len(rows) == 2 and all(r["category"] == "application" and r["risk_score"] > 0 for r in rows)
    assert risk_of(c).ip_score(ATTACKER) >= 8


def _rule(c: TestClient, token: str, note: str, cidr: str = "198.51.100.0/24"):  # type: ignore[no-untyped-def]
    return c.post(
        "/api/admin/ip-rules", json={"cidr": cidr, "action": "allow", "note": note}, headers=bearer(token)
    )


def test_suspicious_json_body_is_recorded_by_field_and_the_route_still_reads_it(
    make_client, tokens, engine
) -> None:
    c = make_client()
    resp = _rule(c, tokens["admin"], "<script>alert(1)</script>")
    # The route parsed the same body the firewall read (replayed), and stored the note as sent.
    assert resp.status_code == 201 and resp.json()["note"] == "<script>alert(1)</script>"
    rows = audit_rows(engine, "suspicious_input")
    assert len(rows) == 1 and rows[0]["category"] == "application" and rows[0]["risk_score"] > 3.5
    assert "body field note" in rows[0]["detail"] and "'<script'" in rows[0]["detail"]
    assert risk_of(c).ip_score(ATTACKER) > 3.5
    # Nested fields are named by their path; the first hit is recorded, once per request.
    c.post(
        "/api/sync/upload",
        json={
            "batch_id": "b-1",
            "items": [{"payload": {"name": "ok"}}, {"payload": {"name": "x' OR '1'='1"}}],
        },
        headers=bearer(tokens["admin"]),
    )
    rows = audit_rows(engine, "suspicious_input")
    assert len(rows) == 2 and "body field items.1.payload.name" in rows[1]["detail"]


ATTACK_TEXT = [
    "<script>alert(1)</script>",
    "<IFRAME src=x>",
    "javascript:alert(1)",
    'x" onerror=alert(1)',
    "1 UNION/**/ALL SELECT password FROM users",
    "0 union(select 1)",
    "x' OR '1'='1",
    "1; DROP TABLE users",
    "admin'--",
    "admin'--\t",
    "../../etc/passwd",
    "..\\windows\\win.ini",
    "nul\x00byte",
    "1 AND SLEEP(5)",
    "${jndi:ldap://x/a}",
]


@pytest.mark.parametrize("attack", ATTACK_TEXT)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_body_scan_finds_each_pattern_however_json_spells_it(attack: str, ascii_only: bool) -> None:
    body = {"batch_id": "b", "items": [{"name": "fine"}, {"name": "O'Brien's"}, {"name": attack}]}
    raw = json.dumps(body, ensure_ascii=ascii_only).encode()
    assert (
        suspicious_body(raw, "application/json") is not None
        and suspicious_body(raw, "application/json")[0] == "items.2.name"
    )
    clean = json.dumps({"items": [{"name": t} for t in LEGITIMATE_TEXT]}, ensure_ascii=ascii_only).encode()
    assert suspicious_body(clean, "application/json") is None


def test_suspicious_secret_fields_are_never_recorded(make_client, tokens, engine) -> None:
    c = make_client()
    password = "pw-<script>-" + "s3cret" * 3
    resp = c.post(
        "/api/admin/users",
        json={"username": "sam", "password": password, "role": "cashier", "store_ids": ["S001"]},
        headers=bearer(tokens["admin"]),
    )
    assert resp.status_code == 201  # detection only: the password is accepted (and hashed)
    rows = audit_rows(engine, "suspicious_input")
    assert len(rows) == 1 and "body field password" in rows[0]["detail"]
    dump = json.dumps(audit_rows(engine), default=str)
    assert password not in dump and "<script" not in dump
    # A form body (the login) is scanned too; the password field again only by name.
    login(c, "admin' or 1=1--", "x' OR '1'='1")
    row = audit_rows(engine, "suspicious_input")[-1]
    assert "body field username" in row["detail"] and "1'='1" not in row["detail"]


def test_secret_fields_nested_under_a_secret_name_are_never_recorded(make_client, tokens, engine) -> None:
    # Any segment of the path naming a secret hides the fragment: an object or a list under "password".
    c = make_client()
    for body, field in (
        ({"username": "sam", "password": {"new": "<script>x"}}, "password.new"),
        ({"username": "sam", "password": ["<script>x"]}, "password.0"),
    ):
        resp = c.post("/api/admin/users", json=body, headers=bearer(tokens["admin"]))
        assert resp.status_code == 422
        row = audit_rows(engine, "suspicious_input")[-1]
        assert f"body field {field}" in row["detail"] and "secret field, not recorded" in row["detail"]
    assert len(audit_rows(engine, "suspicious_input")) == 2
    assert "<script" not in json.dumps(audit_rows(engine), default=str)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
def test_json_bodies_in_any_encoding_json_accepts_are_scanned(
    make_client, tokens, engine, encoding: str
) -> None:
    # Starlette parses the bytes with json.loads, which takes UTF-16/32 and a UTF-8 BOM: so does the scan.
    c = make_client()
    note = "<script>alert(1)</script>"
    raw = json.dumps({"cidr": "198.51.100.0/24", "action": "allow", "note": note}).encode(encoding)
    assert suspicious_body(raw, "application/json") == ("note", "<script")
    # A lone surrogate (which json.loads lets through) does not hide the rest of a UTF-8 body either.
    odd = b'{"a": "\xed\xa0\x80", "note": "<script>"}'
    assert json.loads(odd)["note"] == "<script>" and suspicious_body(odd, "application/json") is not None
    resp = c.post(
        "/api/admin/ip-rules",
        content=raw,
        headers={**bearer(tokens["admin"]), "Content-Type": "application/json"},
    )
    assert resp.status_code == 201 and resp.json()["note"] == note  # the route got the parsed body
    rows = audit_rows(engine, "suspicious_input")
    assert len(rows) == 1 and "body field note" in rows[0]["detail"] and "'<script'" in rows[0]["detail"]


@pytest.mark.parametrize(
    "text",
    [
        "1 union/**/select 2",
        "1 union all select 2",
        "1 union((select 2))",
        "1 UNION /* a comment */ DISTINCT (SELECT 2)",
        "1 union\n\t " + " " * 100 + "select 2",
    ],
)
def test_union_select_is_still_found(text: str) -> None:
    assert (find_attack(text) or "").startswith("union")


# Inputs that made the union pattern backtrack exponentially (nested quantifiers) or scan quadratically
# (an unclosed comment after every "union"), one for each other pattern with a repeatable prefix too.
# Each is scanned in a child process with a generous bound: exponential or quadratic work exceeds it by
# orders of magnitude (and a regex cannot be interrupted in a thread).
_PATHOLOGICAL = [
    "'union' + '/**/' * 40 + 'x'",
    "'union' + ' /**/(' * 40 + 'x'",
    "('union /*xxxxxxxxxx' * (2**20 // 18))",
    "('union ((((' * (2**20 // 11))",
    "('union all ' + ' ' * 2**20 + 'x')",
    "('<' + ' ' * 2**20) * 2",
    "(\"' or \" + '1' * 2**20 + ' ') * 2",
    "('--' + ' ' * 2**20 + 'x') * 2",
    "('sleep' + ' ' * 2**20 + '(') * 2",
    "('onerror' + ' ' * 2**20) * 2",
]


@pytest.mark.parametrize("expression", _PATHOLOGICAL)
def test_pathological_input_is_scanned_in_bounded_work(expression: str) -> None:
    script = (
        "import json; from api.security.scanner import find_attack, suspicious_body, suspicious_text\n"
        f"text = {expression}\n"
        "find_attack(text); suspicious_text(text[:300000])\n"
        "suspicious_body(json.dumps({'note': text}).encode(), 'application/json')\n"
        "suspicious_body(json.dumps({'note': text + '\\\\n'}).encode(), 'application/json')\n"
        "print('done')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr


# Product names, notes and addresses that look a little like attacks but are not.
LEGITIMATE_TEXT = [
    "O'Brien's Irish Cream",
    "Rock 'n' Roll Candy",
    "Ben & Jerry's Cookie Dough",
    "Union Jack Select Tea",
    "Mum's 'Best' Jam -- 2 for 1",
    "Select Union Crackers",
    "Price: 3 or 4 = bargain",
    "Dr. Pepper (12 oz.)",
    "C:/POS/receipts",
    "Order #42; table 7",
    "50% off <b>today</b>",
    "L'Oréal Élvive 250 ml",
    "Sleepy Time Tea (20 bags)",
]


def test_legitimate_bodies_are_not_flagged(make_client, tokens, engine) -> None:
    c = make_client()
    for i, note in enumerate(LEGITIMATE_TEXT):
        resp = _rule(c, tokens["admin"], note, cidr=f"198.51.{i}.0/24")
        assert resp.status_code == 201 and resp.json()["note"] == note
    assert audit_rows(engine, "suspicious_input") == []
    assert risk_of(c).ip_score(ATTACKER) == 0


def test_body_scan_keeps_the_size_cap_and_can_be_turned_off(make_client, tokens, engine) -> None:
    c = make_client(CHAINSYNC_MAX_BODY_BYTES="2048")

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"cidr": "198.51.100.0/24", "action": "allow", "note": "'
        yield b"x" * 4096
        yield b'"}'

    # Streamed without a Content-Length: the cap still stops the read the firewall does.
    resp = c.post(
        "/api/admin/ip-rules",
        content=chunks(),
        headers={**bearer(tokens["admin"]), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    off = make_client("192.0.2.55", CHAINSYNC_INPUT_SCAN_MAX_BYTES="0")
    assert _rule(off, tokens["admin"], "<script>alert(1)</script>").status_code == 201
    assert audit_rows(engine, "suspicious_input") == []


# --- the audit trail -----------------------------------------------------------------------------------


def inbox_security_events(engine, kind: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        payloads = conn.execute(select(event_inbox.c.payload).where(event_inbox.c.event_type == "security"))
        return [p for p in (json.loads(raw) for raw in payloads.scalars()) if p["kind"] == kind]


def test_validation_failures_reach_the_event_inbox_sampled(make_client, engine) -> None:
    # One API process seen through a trusted proxy, so two client addresses share its sampler.
    c = make_client(
        "10.0.0.1",
        CHAINSYNC_TRUSTED_PROXIES="10.0.0.1/32",
        CHAINSYNC_VALIDATION_INBOX_BURST="4",
        CHAINSYNC_VALIDATION_INBOX_PER_ADDRESS_MINUTE="3",
        CHAINSYNC_VALIDATION_INBOX_PER_MINUTE="5",
    )

    def probe(ip: str) -> int:
        bad = {"refresh_token": "x" * 20, "extra": 1}
        return c.post("/api/auth/refresh", json=bad, headers={"X-Forwarded-For": ip}).status_code

    assert [probe(ATTACKER) for _ in range(10)] == [422] * 10
    # Every failure is audited and scored; from the fourth on (a burst), three reach the inbox, for
    # fct_security_events and fct_ip_risk, the first saying how many came before it.
    assert len(audit_rows(engine, "validation_failure")) == 10
    sent = inbox_security_events(engine, "validation_failure")
    assert len(sent) == 3 and {e["source_ip"] for e in sent} == {ATTACKER}
    assert all("risk_score=" in e["detail"] for e in sent)  # the API's score, which saw all ten
    assert "3 earlier from this address" in sent[0]["detail"]
    # Another address has its own allowance, within the total of five a minute.
    for _ in range(10):
        probe("198.51.100.9")
    sent = inbox_security_events(engine, "validation_failure")
    assert len(sent) == 5 and sum(e["source_ip"] == "198.51.100.9" for e in sent) == 2


def test_inbox_sampler_says_how_many_it_held_back() -> None:
    now = [0.0]
    sampler = InboxSampler(burst=2, per_address=2, total=100, clock=lambda: now[0])
    assert [sampler.admit("a") for _ in range(5)] == [None, 1, 0, None, None]
    assert [sampler.admit("b") for _ in range(2)] == [None, 1]  # per address
    now[0] = 60.0  # the next minute: the burst counts again
    assert [sampler.admit("a") for _ in range(4)] == [None, 3, 0, None]
    off = InboxSampler(burst=1, per_address=0, total=100)
    assert off.admit("a") is None


def test_audit_records_carry_context_and_no_secrets(make_client, users, engine) -> None:
    c = make_client()
    ok = login(c, "mona", PASSWORD, client_id="x")
    login(c, "mona", "wrong-password-1", client_id="x")
    c.get("/api/observability/config", headers=bearer(ok.json()["access_token"]))  # a denial
    rows = audit_rows(engine)
    by_action = {r["action"]: r for r in rows}
    success = by_action["login_success"]
    assert success["actor"] == "mona" and success["role"] == "manager" and success["outcome"] == "success"
    assert success["source_ip"] == ATTACKER and success["user_agent"] and success["request_id"]
    assert success["category"] == "authentication"
    assert by_action["authorization_denied"]["category"] == "authorization"
    dump = json.dumps(rows, default=str)
    for secret in (PASSWORD, "wrong-password-1", ok.json()["access_token"], ok.json()["refresh_token"]):
        assert secret not in dump


def test_hash_chain_detects_tampering(make_client, users, engine) -> None:
    c = make_client()
    for i in range(3):
        login(c, "mona", f"wrong-{i}-password")
    login(c, "mona", PASSWORD)
    report = verify_audit_chain(engine)
    assert report.ok and report.checked == 4
    with engine.begin() as conn:
        conn.execute(text("UPDATE security_audit SET outcome = 'success' WHERE seq = 2"))
    bad = verify_audit_chain(engine)
    assert not bad.ok and bad.first_bad_seq == 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE security_audit SET outcome = 'failure' WHERE seq = 2"))
        conn.execute(text("DELETE FROM security_audit WHERE seq = 3"))
    gone = verify_audit_chain(engine)
    assert not gone.ok and gone.first_bad_seq == 4


def test_audit_switch_off_writes_no_audit(make_client, users, engine) -> None:
    c = make_client(SECURITY_AUDIT_ENABLED="false")
    login(c, "mona", PASSWORD)
    login(c, "mona", "wrong-password-1")
    assert audit_rows(engine) == []


def test_success_after_failures_means_failures_of_that_user(settings, engine) -> None:
    clock = Clock()
    risk = RiskEngine(settings, engine, IpFilter(settings, engine), clock=clock)
    office = "198.51.100.77"  # half-way to a block through other people's doing, not mona's
    risk.observe(office, "not_found", weight=settings.risk_block_score * 0.6)
    routine = risk.login_succeeded(office, "mona")
    assert routine.severity != "critical"
    assert routine.reason is not None and "success after failures" not in routine.reason
    assert "high-risk address" in routine.reason
    for _ in range(3):
        risk.observe("203.0.113.9", "login_failure", username="mona")
    guessed = risk.login_succeeded("203.0.113.9", "mona")
    assert guessed.severity == "critical" and "success after failures (3 for the user" in (
        guessed.reason or ""
    )
    again = risk.login_succeeded("203.0.113.9", "mona")  # the failures were cleared by the success
    assert again.severity != "critical"


def test_denials_are_recorded_with_method_route_and_role(client, tokens, engine) -> None:
    assert client.get("/api/observability/config", headers=bearer(tokens["manager"])).status_code == 403
    assert client.get("/api/ai/forecast?store_id=S003", headers=bearer(tokens["manager"])).status_code in (
        403,
        404,
    )
    denials = audit_rows(engine, "authorization_denied")
    by_route = {row["route"]: row for row in denials}
    role_denial = by_route["/api/observability/config"]
    assert role_denial["method"] == "GET" and role_denial["role"] == "manager"
    assert role_denial["actor"] == "mona"
    assert all(row["method"] and row["route"] and row["role"] for row in denials)


def test_admin_writes_cache_clears_and_operator_reads_leave_data_access_records(
    client, tokens, engine
) -> None:
    admin = bearer(tokens["admin"])
    calls = [
        ("GET", "/api/observability/metrics"),
        ("GET", "/api/observability/websocket/stats"),
        ("GET", "/api/ai/status"),
        ("POST", "/api/ai/cache/clear"),
        ("GET", "/metrics"),
    ]
    for method, path in calls:
        assert client.request(method, path, headers=admin).status_code == 200, path
    created = client.post(
        "/api/admin/users",
        headers=admin,
        json={"username": "newbie", "password": "a-long-Passw0rd!", "role": "cashier", "store_ids": ["S001"]},
    )
    assert created.status_code == 201, created.text
    records = audit_rows(engine, "data_access")
    seen = {(row["method"], row["route"]) for row in records}
    for method, path in [*calls, ("POST", "/api/admin/users")]:
        assert (method, path) in seen, (method, path, seen)
    assert all(row["actor"] == "alice" and row["role"] == "admin" for row in records)


def test_forged_tokens_and_bad_device_keys_are_in_the_authentication_trail(client, engine) -> None:
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.bm90LW91ci1zaWduYXR1cmU"
    assert client.get("/api/ai/status", headers=bearer(forged)).status_code == 401
    assert client.get("/api/sync/status", headers={"X-API-Key": "csk_not-a-real-key"}).status_code == 401
    assert client.get("/api/sync/status", headers=bearer("csk_revoked-or-made-up")).status_code == 401
    assert client.get("/api/ai/status").status_code == 401  # nothing presented: not an attempt
    rows = audit_rows(engine, "bad_credentials")
    assert [(r["category"], r["route"]) for r in rows] == [
        ("authentication", "/api/ai/status"),
        ("authentication", "/api/sync/status"),
        ("authentication", "/api/sync/status"),
    ]
    assert "bearer token refused" in rows[0]["detail"] and "device key refused" in rows[1]["detail"]
    assert all(r["risk_score"] and r["risk_score"] > 0 for r in rows)
    assert forged not in str(rows) and "csk_not-a-real-key" not in str(rows)  # the secret is never kept


def test_a_flood_of_bad_tokens_is_sampled_not_written_in_full(client, engine) -> None:
    for i in range(40):
        client.get("/api/ai/status", headers=bearer(f"made-up-token-{i}"))
    rows = audit_rows(engine, "bad_credentials")
    assert 10 <= len(rows) <= 20  # the first ones each, then capped per address and minute


def test_password_guessing_spread_over_addresses_is_limited_per_username(make_client, users) -> None:
    c = make_client(
        ATTACKER, CHAINSYNC_RATE_LIMIT_LOGIN_USER="4/15minutes", CHAINSYNC_TRUSTED_PROXIES=f"{ATTACKER}/32"
    )
    statuses = []
    for i in range(4):  # four addresses, each far below the per-address limit
        for j in range(2):
            resp = c.post(
                "/api/auth/token",
                data={"username": "mona", "password": f"guess-{i}-{j}"},
                headers={"X-Forwarded-For": f"198.51.100.{10 + i}"},
            )
            statuses.append(resp.status_code)
    assert statuses[:4] == [401, 401, 401, 401]
    assert set(statuses[4:]) == {429}
    refused = login(c, "MONA", PASSWORD)  # the right password, any case: the account's budget is spent
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert login(c, "carl", PASSWORD).status_code == 200  # other accounts are unaffected


def test_truncating_the_newest_records_is_detected_against_a_snapshot_anchor(
    make_client, users, tokens, engine, settings
) -> None:
    from chainsync.ops_store.audit_log import audit_head
    from chainsync.serving import publish_snapshot

    c = make_client()
    for i in range(4):
        login(c, "mona", f"wrong-{i}-password")
    head = audit_head(engine)
    assert head is not None
    # The pipeline records the head in every snapshot it publishes (pipelines/defs/serving).
    publish_snapshot(
        settings.serving,
        {},
        run_id="anchor",
        extra={"audit_head": {"seq": head.seq, "record_hash": head.record_hash}},
    )
    with engine.begin() as conn:  # an intruder deletes the newest two records ...
        conn.execute(text("DELETE FROM security_audit WHERE seq > :keep"), {"keep": head.seq - 2})
    assert verify_audit_chain(engine).ok  # ... which the chain alone cannot see
    admin = make_client(ATTACKER)
    admin_headers = bearer(tokens["admin"])
    body = admin.get(
        "/api/observability/security/events", params={"verify": "true", "limit": 1}, headers=admin_headers
    ).json()
    assert body["chain"]["ok"] is False and "missing" in body["chain"]["reason"]
    # New records never reuse the deleted numbers, and a rewritten head is caught too.
    login(c, "mona", "wrong-again")
    newest = audit_head(engine)
    assert newest is not None and newest.seq > head.seq
    report = verify_audit_chain(engine, anchors=[AuditAnchor(head.seq, head.record_hash, "snapshot x")])
    assert not report.ok


def test_memory_rate_limits_start_no_thread_per_hit() -> None:
    """limits' memory storage started a timer thread on hits; ours sweeps inline
    (api/security/ratelimit.py)."""
    import threading

    from limits import parse, strategies

    from api.security.ratelimit import SweptMemoryStorage

    storage = SweptMemoryStorage()
    limiter = strategies.MovingWindowRateLimiter(storage)
    item = parse("3/second")
    started = threading.Thread.start
    starts = 0

    def counting_start(self: threading.Thread) -> None:
        nonlocal starts
        starts += 1
        started(self)

    threading.Thread.start = counting_start  # type: ignore[method-assign]
    try:
        assert [limiter.hit(item, "k") for _ in range(5)] == [True, True, True, False, False]
    finally:
        threading.Thread.start = started  # type: ignore[method-assign]
    assert starts == 0


def test_the_stores_own_networks_cannot_be_locked_out_of_an_account(make_client, users) -> None:
    store_network = "10.20.30.40"
    c = make_client(
        store_network, CHAINSYNC_RATE_LIMIT_LOGIN_USER="3/15minutes", CHAINSYNC_IP_ALLOWLIST="10.20.0.0/16"
    )
    for i in range(6):
        assert login(c, "mona", f"typo-{i}").status_code == 401  # never 429 from the allowlist
    assert login(c, "mona", PASSWORD).status_code == 200

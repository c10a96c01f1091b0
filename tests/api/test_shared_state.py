"""Two real ``chainsync api`` processes (uvicorn on 127.0.0.1) on one ops store (a SQLite file) and one
Redis (this session's database number and a key prefix of this module's own): what one process does, the
other sees. Clients are real ``websockets`` and ``httpx`` clients; every wait polls with a deadline.

The periodic re-reads of revocations and risk blocks are set to 60 s here, so a change seen on the other
process within a second can only have come through the Redis push.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from api.security.tokens import ALL_STORES, create_access_token
from chainsync.ops_store import get_engine
from chainsync.ops_store.users import create_device_key, upsert_user
from chainsync.serving import publish_snapshot
from chainsync.settings import Settings
from tests.api.conftest import anomaly_frame, bearer, forecast_frame, sale_event
from tests.api.test_ws import next_message
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy
from tests.redis_fixtures import RedisTarget

WS_PATH = "/ws/notifications"
USER_LIMIT = 40  # requests per minute per user (the rate-limit test goes one over)


@dataclass
class Api:
    base: str
    ws: str

    def get(self, path: str, token: str, **headers: str) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", headers={**bearer(token), **headers}, timeout=5)


@dataclass
class Cluster:
    a: Api
    b: Api
    settings: Settings
    device_keys: dict[str, str]
    env: dict[str, str]
    prefix: str

    def token(self, subject: str, role: str = "manager", stores: list[str] | None = None) -> str:
        stores = stores or ([ALL_STORES] if role == "admin" else ["S001", "S002"])
        return create_access_token(self.settings, subject=subject, role=role, stores=stores).token

    def post_sale(self, api: Api, store: str = "S001", **overrides: Any) -> None:
        resp = httpx.post(
            f"{api.base}/api/events/sales",
            json=sale_event(store_id=store, **overrides),
            headers={"X-API-Key": self.device_keys[store]},
            timeout=5,
        )
        assert resp.status_code == 201, resp.text


def _start(env: dict[str, str]) -> tuple[Any, Api]:
    port = free_port()
    proc = start_api(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
    except BaseException:
        stop_api(proc)
        raise
    return proc, Api(base, f"ws://127.0.0.1:{port}{WS_PATH}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, redis_target: RedisTarget) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("shared") / "data"
    data_dir.mkdir()
    secret = "shared-state-secret-" + "z" * 40
    settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=secret)  # type: ignore[call-arg]
    engine = get_engine(settings.ops_store)
    upsert_user(engine, "lou", "correct-horse-battery", "manager", ["S001"])
    keys = {s: create_device_key(engine, s, "POS-01") for s in ("S001", "S002")}
    publish_snapshot(
        settings.serving,
        {"demand_forecast": forecast_frame(), "sales_anomalies": anomaly_frame()},
        run_id="run-shared-1",
    )
    prefix = f"{redis_target.prefix}{uuid.uuid4().hex[:6]}:"
    env = api_env(
        data_dir,
        secret,
        CHAINSYNC_REDIS_URL=redis_target.url,
        CHAINSYNC_REDIS_KEY_PREFIX=prefix,
        CHAINSYNC_NOTIFY_POLL_SECONDS="0.1",
        CHAINSYNC_REVOCATION_CACHE_SECONDS="60",
        CHAINSYNC_RISK_SYNC_SECONDS="60",
        CHAINSYNC_RATE_LIMIT_USER=f"{USER_LIMIT}/minute",
        CHAINSYNC_TRUSTED_PROXIES="127.0.0.1/32",  # so a test can speak for another client address
        CHAINSYNC_BUSINESS_HOURS="00-24",
        CHAINSYNC_REQUEST_LOG_ENABLED="false",
    )
    procs = []
    try:
        proc_a, a = _start(env)
        procs.append(proc_a)
        proc_b, b = _start(env)
        procs.append(proc_b)
        yield Cluster(a, b, settings, keys, env, prefix)
    finally:
        for proc in procs:
            stop_api(proc)
        RedisTarget(redis_target.url, prefix, redis_target.db).delete_own_keys()


def run(coro: Any, timeout_s: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def poll(check: Any, deadline_s: float) -> float:
    """Call ``check`` until it returns true; the seconds it took (AssertionError at the deadline)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline_s:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)
    return time.monotonic() - start


def test_a_client_on_one_process_hears_sales_posted_to_the_other(cluster: Cluster) -> None:
    cashier = cluster.token("cody", "cashier", ["S001"])

    async def scenario() -> None:
        async with (
            websockets.connect(f"{cluster.a.ws}?token={cashier}") as on_a,
            websockets.connect(f"{cluster.b.ws}?token={cashier}") as on_b,
        ):
            for ws in (on_a, on_b):
                assert (await next_message(ws))["channels"] == ["sales:S001"]
            await asyncio.to_thread(cluster.post_sale, cluster.b, transaction_id="T-X-1")
            await asyncio.to_thread(cluster.post_sale, cluster.a, transaction_id="T-X-2")
            heard_a = [await next_message(on_a, lambda m: m["type"] == "sales") for _ in range(2)]
            heard_b = [await next_message(on_b, lambda m: m["type"] == "sales") for _ in range(2)]
            assert [m["data"]["latest"][0]["transaction_id"] for m in heard_a] == ["T-X-1", "T-X-2"]
            assert heard_a == heard_b  # the same frames, seq included, on both processes
            assert heard_a[1]["seq"] > heard_a[0]["seq"]

    run(scenario())


def test_resume_on_the_other_process_replays_exactly_what_was_missed(cluster: Cluster) -> None:
    cashier = cluster.token("rhea", "cashier", ["S002"])

    async def scenario() -> None:
        async with websockets.connect(f"{cluster.a.ws}?token={cashier}") as ws:
            await next_message(ws)
            await asyncio.to_thread(cluster.post_sale, cluster.a, "S002", transaction_id="T-R-1")
            last = (await next_message(ws, lambda m: m["type"] == "sales"))["seq"]
        # Disconnected from A: one sale on each process, and news on another channel meanwhile.
        await asyncio.to_thread(cluster.post_sale, cluster.b, "S002", transaction_id="T-R-2")
        await asyncio.to_thread(cluster.post_sale, cluster.a, "S001", transaction_id="T-R-other")
        await asyncio.to_thread(cluster.post_sale, cluster.a, "S002", transaction_id="T-R-3")
        async with websockets.connect(f"{cluster.b.ws}?token={cashier}&last_seq={last}") as ws:
            welcome = await next_message(ws)
            assert welcome["replayed"] == 2
            missed = [await next_message(ws), await next_message(ws)]
            assert [m["data"]["latest"][0]["transaction_id"] for m in missed] == ["T-R-2", "T-R-3"]
            assert last < missed[0]["seq"] < missed[1]["seq"] <= welcome["seq"]
            # Nothing comes twice: the next message is the next sale, not a replayed one again.
            await asyncio.to_thread(cluster.post_sale, cluster.a, "S002", transaction_id="T-R-4")
            after = await next_message(ws)
            assert after["data"]["latest"][0]["transaction_id"] == "T-R-4"
            assert after["seq"] > missed[1]["seq"]

    run(scenario())


def test_news_polled_by_both_processes_is_delivered_once(cluster: Cluster) -> None:
    from chainsync.ops_store.events import InboxRow, append_events
    from chainsync.schemas.events import SyncEvent

    admin = cluster.token("ada", "admin")

    async def scenario() -> None:
        async with (
            websockets.connect(f"{cluster.a.ws}?token={admin}&channels=sync:S001,sales:S001") as on_a,
            websockets.connect(f"{cluster.b.ws}?token={admin}&channels=sync:S001,sales:S001") as on_b,
        ):
            for ws in (on_a, on_b):
                await next_message(ws)
            session = SyncEvent.model_validate(
                {
                    "event_id": str(uuid.uuid4()),
                    "occurred_at": "2026-11-28T06:00:00Z",
                    "store_id": "S001",
                    "device_id": "POS-01",
                    "session_id": "B-SHARED-1",
                    "items_received": 3,
                    "items_applied": 3,
                    "items_duplicate": 0,
                    "duration_ms": 20,
                }
            )
            await asyncio.to_thread(
                append_events, get_engine(cluster.settings.ops_store), [InboxRow.from_event(session)]
            )
            first = [await next_message(ws, lambda m: m["type"] == "sync") for ws in (on_a, on_b)]
            assert first[0] == first[1]
            # Both processes poll every 0.1 s: after several polls, a sale marks the end of what came.
            await asyncio.sleep(0.5)
            await asyncio.to_thread(cluster.post_sale, cluster.a, transaction_id="T-MARK")
            for ws in (on_a, on_b):
                repeats = []
                while (m := await next_message(ws))["type"] != "sales":
                    repeats.append(m)
                assert [m for m in repeats if m["type"] == "sync"] == []

    run(scenario())


def test_rate_limits_are_counted_across_processes(cluster: Cluster) -> None:
    token = cluster.token("rita")
    codes = [
        (cluster.a if n % 2 else cluster.b).get("/api/observability/performance", token).status_code
        for n in range(USER_LIMIT + 1)
    ]
    assert codes[:USER_LIMIT] == [200] * USER_LIMIT  # half on each: each process alone would allow 40
    assert codes[USER_LIMIT] == 429


def test_logout_on_one_process_rejects_the_token_on_the_other_at_once(cluster: Cluster) -> None:
    resp = httpx.post(
        f"{cluster.a.base}/api/auth/token",
        data={"username": "lou", "password": "correct-horse-battery"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    assert cluster.b.get("/api/observability/performance", token).status_code == 200  # B has read it
    logout = httpx.post(f"{cluster.a.base}/api/auth/logout", headers=bearer(token), timeout=5)
    assert logout.status_code == 204
    took = poll(
        lambda: cluster.b.get("/api/observability/performance", token).status_code == 401, deadline_s=1.5
    )
    assert took < 1.0  # B re-reads the store only every 60 s here: this was the push


def test_a_risk_block_made_on_one_process_refuses_on_the_other(cluster: Cluster) -> None:
    intruder = {"X-Forwarded-For": "198.51.100.23"}  # through the trusted proxy (this loopback client)
    token = cluster.token("ivan")
    assert cluster.b.get("/api/observability/performance", token, **intruder).status_code == 200
    for _ in range(3):  # suspicious input in the URL, 4 points each: the third crosses 10
        cluster.a.get("/api/observability/performance?q=1%27%20OR%201%3D1--", token, **intruder)
    assert cluster.a.get("/api/observability/performance", token, **intruder).status_code == 403
    took = poll(
        lambda: cluster.b.get("/api/observability/performance", token, **intruder).status_code == 403,
        deadline_s=1.5,
    )
    assert took < 1.0  # B re-reads blocks only every 60 s here: this was the push
    assert cluster.b.get("/api/observability/performance", token).status_code == 200  # others unaffected


def test_an_admin_ip_rule_added_on_one_process_applies_on_the_other(cluster: Cluster) -> None:
    visitor = {"X-Forwarded-For": "198.51.100.77"}
    token, admin = cluster.token("vic"), cluster.token("ada", "admin")
    assert cluster.b.get("/api/observability/performance", token, **visitor).status_code == 200
    rule = httpx.post(
        f"{cluster.a.base}/api/admin/ip-rules",
        json={"cidr": "198.51.100.77/32", "action": "deny", "note": "shared-state test"},
        headers=bearer(admin),
        timeout=5,
    )
    assert rule.status_code == 201, rule.text
    took = poll(
        lambda: cluster.b.get("/api/observability/performance", token, **visitor).status_code == 403,
        deadline_s=1.5,
    )
    assert took < 1.0  # B reads the rules at start-up only: this was the push
    gone = httpx.delete(
        f"{cluster.a.base}/api/admin/ip-rules/{rule.json()['id']}", headers=bearer(admin), timeout=5
    )
    assert gone.status_code == 204
    poll(lambda: cluster.b.get("/api/observability/performance", token, **visitor).status_code == 200, 1.5)


def test_a_new_snapshot_clears_the_ai_cache_of_every_process(cluster: Cluster) -> None:
    # A third process that looks for snapshots only once an hour: only a push can clear its cache.
    proc, c = _start({**cluster.env, "CHAINSYNC_NOTIFY_POLL_SECONDS": "3600"})
    try:
        admin = cluster.token("ada", "admin")

        def entries(api: Api) -> int:
            """Cached tables before this look (which then reads, so caches, the current snapshot's)."""
            resp = api.get("/api/ai/status", admin)
            assert resp.status_code == 200, resp.text
            return int(resp.json()["cache"]["entries"])

        entries(c)
        one_snapshot = entries(c)
        assert one_snapshot >= 2
        publish_snapshot(
            cluster.settings.serving,
            {"demand_forecast": forecast_frame(), "sales_anomalies": anomaly_frame()},
            run_id="run-shared-2",
        )
        entries(c)  # C reads the new snapshot's tables next to the old ones (unless the push came first)
        # A finds the snapshot within 0.1 s and pushes; C drops the old tables (left alone, C would keep
        # reporting both snapshots' tables, twice as many).
        poll(lambda: entries(c) == one_snapshot, deadline_s=3.0)

        # An admin's clear on one process clears the others too.
        def misses(api: Api) -> int:
            return int(api.get("/api/ai/status", admin).json()["cache"]["misses"])

        warm = misses(c)
        assert misses(c) == warm  # warm: another look reads nothing from disk
        clear = httpx.post(f"{cluster.a.base}/api/ai/cache/clear", headers=bearer(admin), timeout=5)
        assert clear.status_code == 200
        poll(lambda: misses(c) > warm, deadline_s=2.0)  # C read the tables again: its cache was cleared
    finally:
        stop_api(proc)


def test_everything_kept_in_redis_is_under_the_deployment_prefix(
    cluster: Cluster, redis_target: RedisTarget
) -> None:
    with redis_target.client() as r:
        mine = {str(k) for k in r.scan_iter(match=f"{cluster.prefix}*")}
    assert {f"{cluster.prefix}ws:stream", f"{cluster.prefix}ws:seq"} <= mine
    assert any(k.startswith(f"{cluster.prefix}ratelimit:") for k in mine)
    assert any(k.startswith(f"{cluster.prefix}ws:seen:") for k in mine)  # the dedupe markers

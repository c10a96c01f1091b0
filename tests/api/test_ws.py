"""WS /ws/notifications for real: ``chainsync api`` under uvicorn on 127.0.0.1, real ``websockets`` clients.

One server for the module (small heartbeat, small limits, fast polling); every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidMessage

from api.security.tokens import ALL_STORES, create_access_token
from api.ws.hub import Hub
from chainsync.ops_store import get_engine
from chainsync.ops_store.users import create_device_key, upsert_user
from chainsync.serving import publish_snapshot
from chainsync.settings import Settings
from tests.api.conftest import anomaly_frame, bearer, sale_event
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy

HEARTBEAT_MS = 400
WS_PATH = "/ws/notifications"


@dataclass
class Server:
    base: str
    ws: str
    settings: Settings
    admin: str
    device_keys: dict[str, str]

    def token(self, subject: str, role: str, stores: list[str]) -> str:
        return create_access_token(self.settings, subject=subject, role=role, stores=stores).token

    def stats(self) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.base}/api/observability/websocket/stats", headers=bearer(self.admin), timeout=5
        )
        resp.raise_for_status()
        return resp.json()

    def wait_connections(self, n: int, deadline_s: float = 5.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.stats()["connections"] == n:
                return
            time.sleep(0.05)
        raise AssertionError(f"expected {n} open connections, stats say {self.stats()['connections']}")

    def post_sale(self, store: str = "S001", **overrides: Any) -> None:
        event = sale_event(store_id=store, **overrides)
        resp = httpx.post(
            f"{self.base}/api/events/sales",
            json=event,
            headers={"X-API-Key": self.device_keys[store]},
            timeout=5,
        )
        assert resp.status_code == 201, resp.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("ws") / "data"
    data_dir.mkdir()
    secret = "ws-test-secret-" + "y" * 40
    settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=secret)  # type: ignore[call-arg]
    engine = get_engine(settings.ops_store)
    upsert_user(engine, "mona", "correct-horse-battery", "manager", ["S001", "S002"])
    keys = {s: create_device_key(engine, s, "POS-01") for s in ("S001", "S002")}
    port = free_port()
    env = api_env(
        data_dir,
        secret,
        WS_HEARTBEAT_INTERVAL=str(HEARTBEAT_MS),
        WS_MAX_CONNECTIONS="8",
        CHAINSYNC_WS_MAX_CONNECTIONS_PER_USER="2",
        CHAINSYNC_WS_AUTH_TIMEOUT_SECONDS="1",
        CHAINSYNC_NOTIFY_POLL_SECONDS="0.1",
        CHAINSYNC_WS_METRICS_INTERVAL_SECONDS="0.3",
    )
    proc = start_api(port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        admin = create_access_token(settings, subject="alice", role="admin", stores=[ALL_STORES]).token
        yield Server(base, f"ws://127.0.0.1:{port}{WS_PATH}", settings, admin, keys)
    finally:
        stop_api(proc)


def run(coro: Any, timeout_s: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


_inboxes: dict[Any, asyncio.Queue[dict[str, Any] | None]] = {}


async def _pump(ws: Any, inbox: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Read everything, answer heartbeat pings at once, queue the rest (a live client, even while the
    test awaits something else)."""
    try:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            else:
                inbox.put_nowait(message)
    except ConnectionClosed:
        pass
    finally:
        inbox.put_nowait(None)


async def next_message(
    ws: Any, match: Callable[[dict[str, Any]], bool] = lambda m: True, deadline_s: float = 5.0
) -> dict[str, Any]:
    """The next message ``match`` accepts (pings are answered in the background from the first call)."""
    inbox = _inboxes.get(ws)
    if inbox is None:
        inbox = _inboxes[ws] = asyncio.Queue()
        asyncio.get_running_loop().create_task(_pump(ws, inbox))
    deadline = time.monotonic() + deadline_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching message before the deadline")
        message = await asyncio.wait_for(inbox.get(), remaining)
        if message is None:
            raise AssertionError("the connection closed while a message was awaited")
        if match(message):
            return message


async def keep_alive(ws: Any) -> None:
    """Answer pings until the connection ends (a client that is alive but has nothing to say)."""
    try:
        while True:
            await next_message(ws, lambda m: False, deadline_s=3600)
    except (AssertionError, asyncio.CancelledError):
        pass


async def closed_with(ws: Any, deadline_s: float = 5.0) -> int:
    """Wait (reading, never answering) until the server closes; return the close code."""
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code
    raise AssertionError("the server did not close the connection in time")


async def pumped_close(ws: Any, deadline_s: float = 5.0) -> int | None:
    """For a connection read by :func:`next_message`'s pump: wait until the server closes it (pings still
    answered), return the close code."""
    inbox = _inboxes[ws]
    deadline = time.monotonic() + deadline_s
    while (message := await asyncio.wait_for(inbox.get(), max(0.0, deadline - time.monotonic()))) is not None:
        assert message["type"] != "welcome", message
    return ws.close_code


def test_bad_or_missing_token_closes_4401_before_any_data(server: Server) -> None:
    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token=not-a-jwt") as ws:
            with pytest.raises(ConnectionClosed) as caught:
                await asyncio.wait_for(ws.recv(), 5)  # the first thing received is the close
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 4401
        forged = create_access_token(
            Settings(_env_file=None, jwt_secret="another-secret-" + "z" * 40),  # type: ignore[call-arg]
            subject="alice",
            role="admin",
            stores=[ALL_STORES],
        ).token
        async with websockets.connect(f"{server.ws}?token={forged}") as ws:
            assert await closed_with(ws) == 4401
        async with websockets.connect(server.ws) as ws:  # no token at all: closed after the auth timeout
            assert await closed_with(ws) == 4401

    run(scenario())
    server.wait_connections(0)
    assert server.stats()["rejected_total"]["unauthorized"] >= 3


def test_token_in_first_message_and_channels_by_role(server: Server) -> None:
    cashier = server.token("carl", "cashier", ["S001"])

    async def scenario() -> None:
        async with websockets.connect(server.ws) as ws:
            await ws.send(
                json.dumps({"type": "auth", "token": cashier, "channels": "sales:S001,security,sales:S002"})
            )
            welcome = await next_message(ws)
            assert welcome["type"] == "welcome"
            assert welcome["channels"] == ["sales:S001"]
            assert welcome["denied"] == ["security", "sales:S002"]
            assert welcome["heartbeat_ms"] == HEARTBEAT_MS

    run(scenario())


def test_sales_ticker_and_admin_only_security_alerts(server: Server) -> None:
    server.wait_connections(0)
    cashier = server.token("carl", "cashier", ["S001"])

    async def scenario() -> None:
        async with (
            websockets.connect(f"{server.ws}?token={cashier}") as carl,
            websockets.connect(f"{server.ws}?token={server.admin}") as alice,
        ):
            assert (await next_message(carl))["channels"] == ["sales:S001"]
            assert "security" in (await next_message(alice))["channels"]
            # A failed login is a security event the API writes; the feed sends it to admins only.
            failed = await asyncio.to_thread(
                httpx.post,
                f"{server.base}/api/auth/token",
                data={"username": "mona", "password": "Wrong-Password-1"},
                timeout=10,
            )
            assert failed.status_code == 401
            alert = await next_message(alice, lambda m: m["type"] == "security")
            assert alert["channel"] == "security" and alert["data"]["kind"] == "login_failure"
            assert "Wrong-Password-1" not in json.dumps(alert)
            # Then a sale at S001: the cashier's next message is the sale, never the earlier alert.
            await asyncio.to_thread(server.post_sale, "S001", transaction_id="T-TICKER-1")
            sale = await next_message(carl)
            assert sale["type"] == "sales" and sale["channel"] == "sales:S001"
            assert sale["seq"] > alert["seq"]
            assert sale["data"]["latest"][0]["transaction_id"] == "T-TICKER-1"
            assert sale["data"]["net_revenue_cents"] == 2 * 399
            assert (await next_message(alice, lambda m: m["type"] == "sales"))["seq"] == sale["seq"]

    run(scenario())


def test_sales_uploaded_after_an_offline_spell_reach_the_ticker(server: Server) -> None:
    cashier = server.token("cora", "cashier", ["S001"])
    event = sale_event(store_id="S001", transaction_id="T-OFFLINE-1")
    body = {
        "batch_id": "B-TICKER-OFFLINE",
        "sent_at": datetime.now(UTC).isoformat(),
        "items": [{"mutation_id": "m-ticker-offline-1", "type": "sale", "payload": event}],
    }

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token={cashier}") as ws:
            assert (await next_message(ws))["channels"] == ["sales:S001"]
            resp = await asyncio.to_thread(
                httpx.post,
                f"{server.base}/api/sync/upload",
                json=body,
                headers={"X-API-Key": server.device_keys["S001"]},
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["results"][0]["status"] == "applied"
            sale = await next_message(ws, lambda m: m["type"] == "sales")
            assert sale["data"]["latest"][0]["transaction_id"] == "T-OFFLINE-1"
            assert sale["data"]["transactions"] == 1

    run(scenario())


def test_published_snapshot_reaches_subscribers_by_store(server: Server) -> None:
    manager = server.token("mona", "manager", ["S001", "S002"])

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token={manager}") as ws:
            welcome = await next_message(ws)
            assert {"snapshot", "anomalies:S001", "anomalies:S002"} <= set(welcome["channels"])
            snapshot = await asyncio.to_thread(
                publish_snapshot,
                server.settings.serving,
                {"sales_anomalies": anomaly_frame()},
                run_id="run-ws-1",
            )
            announced = await next_message(ws, lambda m: m["type"] == "snapshot")
            assert announced["data"]["version"] == snapshot.version
            assert announced["data"]["tables"] == {"sales_anomalies": 42}
            stores = set()
            while len(stores) < 2:
                message = await next_message(ws, lambda m: m["type"] == "anomalies")
                assert message["data"]["version"] == snapshot.version
                assert all(
                    a["store_id"] == message["data"]["store_id"] for a in message["data"]["new_anomalies"]
                )
                assert len(message["data"]["new_anomalies"]) == 3  # days 0, 5, 10 of 14
                stores.add(message["data"]["store_id"])
            assert stores == {"S001", "S002"}  # S003 is not this manager's

    run(scenario())


def test_resume_from_the_last_seq_seen(server: Server) -> None:
    cashier = server.token("cora", "cashier", ["S002"])

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token={cashier}") as ws:
            await next_message(ws)
            await asyncio.to_thread(server.post_sale, "S002", transaction_id="T-RESUME-1")
            last = (await next_message(ws, lambda m: m["type"] == "sales"))["seq"]
        # Disconnected: two more sales happen.
        for n in (2, 3):
            await asyncio.to_thread(server.post_sale, "S002", transaction_id=f"T-RESUME-{n}")
        async with websockets.connect(f"{server.ws}?token={cashier}&last_seq={last}") as ws:
            welcome = await next_message(ws)
            assert welcome["replayed"] == 2
            missed = [await next_message(ws), await next_message(ws)]
            assert [m["data"]["latest"][0]["transaction_id"] for m in missed] == ["T-RESUME-2", "T-RESUME-3"]
            assert missed[0]["seq"] > last and missed[1]["seq"] > missed[0]["seq"]

    run(scenario())


def test_connection_limits_per_user_and_global(server: Server) -> None:
    server.wait_connections(0)

    async def scenario() -> None:
        dana = server.token("dana", "cashier", ["S001"])
        held = [await websockets.connect(f"{server.ws}?token={dana}") for _ in range(2)]
        for ws in held:
            await next_message(ws)
        third = await websockets.connect(f"{server.ws}?token={dana}")
        assert await closed_with(third) == 4429
        for i in range(6):
            ws = await websockets.connect(f"{server.ws}?token={server.token(f'u{i}', 'cashier', ['S001'])}")
            await next_message(ws)  # welcomed
            held.append(ws)
        pingers = [asyncio.create_task(keep_alive(ws)) for ws in held]  # 8 open: the limit
        extra = await websockets.connect(f"{server.ws}?token={server.token('late', 'cashier', ['S001'])}")
        assert await closed_with(extra) == 1013
        for ws in held:
            await ws.close()
        for task in pingers:
            task.cancel()
        await asyncio.gather(*pingers, return_exceptions=True)

    run(scenario())
    server.wait_connections(0)
    rejected = server.stats()["rejected_total"]
    assert rejected["too_many_for_user"] >= 1 and rejected["server_full"] >= 1


def test_heartbeat_timeout_cleans_up_a_silent_client(server: Server) -> None:
    server.wait_connections(0)
    token = server.token("erin", "cashier", ["S001"])

    async def scenario() -> None:
        async with (
            websockets.connect(f"{server.ws}?token={token}") as silent,
            websockets.connect(f"{server.ws}?token={token}") as alive,
        ):
            started = time.monotonic()
            pinger = asyncio.create_task(keep_alive(alive))
            code = await closed_with(silent, deadline_s=10 * HEARTBEAT_MS / 1000)
            assert code == 4408
            # Closed after missed pings (two intervals of silence, measured from the server's side).
            assert time.monotonic() - started >= HEARTBEAT_MS / 1000
            pinger.cancel()  # cancelling recv() loses nothing (websockets' documented guarantee)
            await asyncio.gather(pinger, return_exceptions=True)
            # The client that answers pings is still served.
            await asyncio.to_thread(server.post_sale, "S001", transaction_id="T-ALIVE")
            sale = await next_message(alive, lambda m: m["type"] == "sales")
            assert sale["data"]["latest"][0]["transaction_id"] == "T-ALIVE"
            assert (await asyncio.to_thread(server.stats))["connections"] == 1

    run(scenario())
    assert server.stats()["closed_total"]["heartbeat_timeout"] >= 1


def test_sync_sessions_reach_the_device_and_live_metrics_reach_admins(server: Server) -> None:
    from chainsync.ops_store.events import InboxRow, append_events
    from chainsync.schemas.events import SyncEvent

    manager = server.token("mona", "manager", ["S001", "S002"])

    async def scenario() -> None:
        async with (
            websockets.connect(f"{server.ws}?token={server.device_keys['S001']}") as device,
            websockets.connect(f"{server.ws}?token={manager}&channels=sync:S001,metrics") as mona,
        ):
            assert (await next_message(device))["channels"] == ["sync:S001"]  # a device key: its store's sync
            assert (await next_message(mona))["channels"] == ["metrics", "sync:S001"]
            # The sync service's session record lands in the ops store; the feed announces it.
            session = SyncEvent.model_validate(
                {
                    "event_id": "0b8d7c1e-2f4a-4c3b-9d5e-6f7a8b9c0d1e",
                    "occurred_at": "2026-11-28T06:00:00Z",
                    "store_id": "S001",
                    "device_id": "POS-01",
                    "session_id": "B-0001",
                    "items_received": 12,
                    "items_applied": 11,
                    "items_duplicate": 1,
                    "duration_ms": 85,
                }
            )
            await asyncio.to_thread(
                append_events, get_engine(server.settings.ops_store), [InboxRow.from_event(session)]
            )
            for ws in (device, mona):
                message = await next_message(ws, lambda m: m["type"] == "sync")
                assert message["channel"] == "sync:S001" and message["data"]["items_applied"] == 11
            metrics = await next_message(mona, lambda m: m["type"] == "metrics")
            assert metrics["data"]["websocket_connections"] >= 2 and "p99_ms" in metrics["data"]

    run(scenario())


def test_a_connection_ends_when_its_token_expires(server: Server) -> None:
    from datetime import UTC, datetime, timedelta

    lifetime = timedelta(minutes=server.settings.access_token_minutes)
    issued = datetime.now(UTC) - lifetime + timedelta(seconds=1.5)  # expires 1.5 s from now
    token = create_access_token(
        server.settings, subject="fay", role="cashier", stores=["S001"], now=issued
    ).token

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token={token}") as ws:
            assert (await next_message(ws))["type"] == "welcome"
            with pytest.raises(AssertionError, match="closed"):
                await next_message(ws, lambda m: False, deadline_s=6)
            assert ws.close_code == 4401

    run(scenario())


def test_slow_consumer_is_dropped_without_delaying_others() -> None:
    async def scenario() -> None:
        hub = Hub(replay_size=10, max_connections=10, per_user=10)
        slow = hub.admit("slow", queue_size=4)
        fast = hub.admit("fast", queue_size=4)
        assert not isinstance(slow, int) and not isinstance(fast, int)
        hub.subscribe(slow, ["sales:S001"])
        hub.subscribe(fast, ["sales:*"])
        for n in range(12):
            hub.publish("sales:S001", "sales", {"n": n})
            await asyncio.sleep(0)
            fast.queue.get_nowait()  # the fast one keeps up
        assert slow.dropped.is_set() and slow.queue.qsize() == 4
        assert not fast.dropped.is_set()
        stats = hub.snapshot_stats()["channels"]["sales:S001"]
        assert stats["delivered"] == 12 + 4 and stats["dropped"] == 8

    asyncio.run(scenario())


def _in_process_app(monkeypatch: pytest.MonkeyPatch, settings: Settings, **env: str) -> Any:
    from api.main import create_app
    from chainsync.settings import get_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return create_app(get_settings())


def test_ws_disabled_answers_404(settings, monkeypatch) -> None:
    from starlette.testclient import WebSocketDenialResponse

    from tests.api.conftest import TestClient

    app = _in_process_app(monkeypatch, settings, WS_ENABLED="false")
    with (
        TestClient(app) as client,
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect(WS_PATH),
    ):
        pass
    assert refused.value.status_code == 404
    assert "WS_ENABLED=false" in refused.value.json()["detail"]


def test_ip_deny_list_closes_4403_and_is_audited(settings, monkeypatch, tokens) -> None:
    from sqlalchemy import select

    from chainsync.ops_store.tables import event_inbox
    from tests.api.conftest import TestClient

    app = _in_process_app(monkeypatch, settings, CHAINSYNC_WS_IP_ALLOWLIST="10.0.0.0/8")
    with (
        TestClient(app) as client,
        client.websocket_connect(f"{WS_PATH}?token={tokens['admin']}") as ws,
        pytest.raises(Exception) as closed,
    ):
        ws.receive_text()
    assert getattr(closed.value, "code", None) == 4403
    engine = get_engine(settings.ops_store)
    with engine.connect() as conn:
        kinds = [json.loads(p)["kind"] for p in conn.execute(select(event_inbox.c.payload)).scalars()]
    assert "ip_blocked" in kinds


def test_firewall_refused_addresses_are_closed_4403_at_connect_and_while_open(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A real server with the firewall's lists: loopback has room for several client addresses
    (127.0.0.x), so one server sees a denylisted client, one that an admin denies while it is connected,
    and one that the risk engine blocks for failed logins while it is connected."""
    data_dir = tmp_path_factory.mktemp("ws-firewall") / "data"
    data_dir.mkdir()
    secret = "ws-firewall-secret-" + "z" * 40
    settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=secret)  # type: ignore[call-arg]
    upsert_user(get_engine(settings.ops_store), "mona", "correct-horse-battery", "manager", ["S001"])
    port = free_port()
    proc = start_api(port, api_env(data_dir, secret, CHAINSYNC_IP_DENYLIST="127.0.0.2/32"))
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}{WS_PATH}"
    admin = create_access_token(settings, subject="alice", role="admin", stores=[ALL_STORES]).token
    manager = create_access_token(settings, subject="mona", role="manager", stores=["S001"]).token

    def connect(source: str, token: str) -> Any:
        return websockets.connect(f"{ws_url}?token={token}", local_addr=(source, 0))

    async def refused_at_connect(source: str, token: str) -> None:
        # The server closes a refused address's TCP connection before reading its handshake (api.server).
        with pytest.raises((InvalidMessage, ConnectionClosed, OSError)):
            async with connect(source, token) as ws:
                await ws.recv()

    async def scenario() -> None:
        # Denylisted (CHAINSYNC_IP_DENYLIST, the HTTP firewall's list): refused before anything is read.
        await refused_at_connect("127.0.0.2", admin)
        # Connected, then an admin denies the address: the open connection is closed.
        async with (
            connect("127.0.0.3", admin) as denied_later,
            connect("127.0.0.4", manager) as blocked_later,
        ):
            assert (await next_message(denied_later))["type"] == "welcome"
            assert (await next_message(blocked_later))["type"] == "welcome"
            rule = await asyncio.to_thread(
                httpx.post,
                f"{base}/api/admin/ip-rules",
                json={"cidr": "127.0.0.3/32", "action": "deny"},
                headers=bearer(admin),
            )
            assert rule.status_code == 201
            assert await pumped_close(denied_later) == 4403
            # Failed logins from 127.0.0.4 until the risk engine blocks it: its open connection closes.
            with httpx.Client(
                transport=httpx.HTTPTransport(local_address="127.0.0.4"), base_url=base
            ) as http:
                statuses = [
                    (await asyncio.to_thread(
                        http.post, "/api/auth/token", data={"username": "mona", "password": f"wrong-{i}"}
                    )).status_code
                    for i in range(8)
                ]  # fmt: skip
            assert statuses[0] == 401 and statuses[-1] == 403
            assert await pumped_close(blocked_later) == 4403
        await refused_at_connect("127.0.0.4", manager)
        # Anyone else is unaffected.
        async with connect("127.0.0.1", manager) as ws:
            assert (await next_message(ws))["type"] == "welcome"

    try:
        wait_healthy(base, proc)
        run(scenario(), timeout_s=60)
    finally:
        stop_api(proc)


def test_replay_is_bounded_per_channel_and_names_the_gaps() -> None:
    hub = Hub(replay_size=3, max_connections=10, per_user=10)
    for n in range(5):
        hub.publish("sales:S001", "sales", {"n": n})  # seq 1..5; 1 and 2 fall out of the buffer
        hub.publish("sales:S002", "sales", {"n": n})  # seq interleaved on another channel
    missed, gaps = hub.replay(["sales:S001"], after_seq=0)
    assert [json.loads(m.text)["data"]["n"] for m in missed] == [2, 3, 4] and gaps == ["sales:S001"]
    missed, gaps = hub.replay(["sales:*"], after_seq=6)
    assert [m.seq for m in missed] == [7, 8, 9, 10] and gaps == []


def test_global_channels_are_delivered_once() -> None:
    """Issue 14 item 10: a global channel is its own "family", and each message on ``metrics``,
    ``security`` and ``snapshot`` reached its subscribers twice with the same seq."""

    async def scenario() -> None:
        hub = Hub(replay_size=10, max_connections=10, per_user=10)
        admin = hub.admit("alice", queue_size=100)
        assert not isinstance(admin, int)
        hub.subscribe(admin, ["metrics", "security", "snapshot", "sales:*"])
        for channel in ("metrics", "security", "snapshot", "sales:S001"):
            hub.publish(channel, channel.split(":")[0], {"n": 1})
        frames = [json.loads(admin.queue.get_nowait()) for _ in range(admin.queue.qsize())]
        assert [(f["channel"], f["seq"]) for f in frames] == [
            ("metrics", 1),
            ("security", 2),
            ("snapshot", 3),
            ("sales:S001", 4),
        ]
        assert hub.snapshot_stats()["channels"]["metrics"]["delivered"] == 1

    asyncio.run(scenario())


def test_an_open_websocket_closes_when_its_session_ends(server: Server) -> None:
    login = httpx.post(
        f"{server.base}/api/auth/token",
        data={"username": "mona", "password": "correct-horse-battery"},
        timeout=5,
    )
    assert login.status_code == 200, login.text
    access = login.json()["access_token"]

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token={access}") as ws:
            assert (await next_message(ws))["type"] == "welcome"
            logout = httpx.post(f"{server.base}/api/auth/logout", headers=bearer(access), timeout=5)
            assert logout.status_code == 204
            assert await pumped_close(ws, deadline_s=6) == 4401

    run(scenario())


def test_forged_tokens_over_websocket_reach_the_trail_and_the_risk_score(server: Server) -> None:
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.audit_log import query_audit

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws}?token=forged.jwt.value") as ws:
            assert await closed_with(ws) == 4401

    run(scenario())
    engine = get_engine(server.settings.ops_store)
    deadline = time.monotonic() + 5
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        rows = [
            r for r in query_audit(engine, action="bad_credentials") if "WebSocket" in (r["detail"] or "")
        ]
    assert rows and rows[0]["risk_score"] > 0
    assert "forged.jwt.value" not in str(rows)

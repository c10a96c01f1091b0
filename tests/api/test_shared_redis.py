"""The Redis parts of :mod:`api.shared` and :mod:`api.security.ratelimit`, in process, on the real Redis
server: two hubs (two "processes") on one stream, the control pushes between two sets of caches, the
shared rate-limit counts, and what each part does when Redis is not there or goes away (a real TCP proxy
in front of Redis,
closed mid-test). Every wait polls with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.log import configure_logging
from api.security.ipfilter import IpFilter
from api.security.ratelimit import RateLimiter
from api.security.risk import RiskEngine
from api.security.tokens import RevokedTokens
from api.shared.bus import RedisBus
from api.shared.redis import RedisKeys, connect
from api.shared.state import SharedState
from api.ws.hub import Hub, Subscriber
from chainsync.ops_store import get_engine
from chainsync.settings import Settings
from tests.live_api import free_port
from tests.redis_fixtures import RedisTarget


def run(coro: Any, timeout_s: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def logged_events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The JSON log lines printed so far (the API's own format, :func:`api.log.configure_logging`)."""
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


@pytest.fixture(autouse=True)
def _json_logs() -> None:
    configure_logging("INFO")


async def eventually(check: Callable[[], bool], deadline_s: float = 5.0) -> float:
    """Poll ``check`` until true; the seconds it took (AssertionError at the deadline)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline_s:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def drain(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(json.loads(sub.queue.get_nowait()))
    return out


@contextlib.asynccontextmanager
async def bus_on(url: str, prefix: str, maxlen: int = 1000) -> AsyncIterator[tuple[Hub, RedisBus]]:
    """A hub with its Redis bus started (one API process's worth), stopped and closed after."""
    hub = Hub(replay_size=100, max_connections=100, per_user=100)
    bus = RedisBus(hub, connect(url), connect(url, read_timeout_s=5.0), RedisKeys(prefix), maxlen=maxlen)
    await bus.start()
    try:
        yield hub, bus
    finally:
        await bus.stop()
        await bus.writer.aclose()
        await bus.reader.aclose()


def subscriber(hub: Hub, *channels: str) -> Subscriber:
    sub = hub.admit("t", queue_size=10_000)
    assert not isinstance(sub, int)
    hub.subscribe(sub, channels)
    return sub


class TcpProxy:
    """A loopback TCP proxy in front of Redis that the test can cut: ``close()`` drops every connection
    and stops listening, as a Redis that went away would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        self._writers.clear()


# --- the WebSocket bus ---------------------------------------------------------------------------


def test_a_message_published_by_one_process_reaches_the_other(redis_prefix: RedisTarget) -> None:
    async def scenario() -> None:
        async with (
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_a, _),
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_b, _),
        ):
            on_a, on_b = subscriber(hub_a, "sales:*"), subscriber(hub_b, "sales:S001")
            assert hub_a.publish("sales:S001", "sales", {"n": 1}) is None  # went to the bus
            await eventually(lambda: on_b.queue.qsize() == 1)  # (two publishers race: order them)
            hub_b.publish("sales:S002", "sales", {"n": 2})
            await eventually(lambda: on_a.queue.qsize() == 2 and on_b.queue.qsize() == 1)
            got_a, got_b = drain(on_a), drain(on_b)
            assert [m["data"]["n"] for m in got_a] == [1, 2]
            assert got_b == [got_a[0]]  # same frame, same seq, on both processes
            assert got_a[1]["seq"] == got_a[0]["seq"] + 1  # one deployment-wide counter
            assert set(got_a[0]) == {"type", "channel", "seq", "ts", "data"}
            assert hub_a.last_seq == hub_b.last_seq == got_a[1]["seq"]
            assert hub_a.snapshot_stats()["fanout"] == "redis"

    run(scenario())


def test_a_server_that_lost_the_script_gets_it_again(redis_prefix: RedisTarget) -> None:
    async def scenario() -> None:
        async with bus_on(redis_prefix.url, redis_prefix.prefix) as (hub, bus):
            sub = subscriber(hub, "sales:S001")
            bus._script.sha = "0" * 40  # as after a Redis restart: the server knows no such script
            hub.publish("sales:S001", "sales", {"n": 1})
            hub.publish("sales:S001", "sales", {"n": 2})
            await eventually(lambda: sub.queue.qsize() == 2)
            assert [m["data"]["n"] for m in drain(sub)] == [1, 2] and not bus.available.down

    run(scenario())


def test_news_found_by_every_process_is_published_once(redis_prefix: RedisTarget) -> None:
    async def scenario() -> None:
        async with (
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_a, _),
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_b, _),
        ):
            sub = subscriber(hub_b, "security", "snapshot")
            for hub in (hub_a, hub_b):  # both processes polled the same ops store event and snapshot
                hub.publish("security", "security", {"event": 41}, dedupe="ops:41")
                hub.publish("snapshot", "snapshot", {"version": "v1"}, dedupe="snapshot:v1:snapshot")
                hub.publish("snapshot", "snapshot", {"marker": True})  # sent after, in order
            await eventually(lambda: sub.queue.qsize() >= 4)
            got = drain(sub)
            assert [m["data"] for m in got if "marker" not in m["data"]] == [{"event": 41}, {"version": "v1"}]
            assert len({m["seq"] for m in got}) == len(got) == 4

    run(scenario())


def test_a_process_own_metrics_reach_only_its_own_clients(redis_prefix: RedisTarget) -> None:
    async def scenario() -> None:
        async with (
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_a, _),
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_b, _),
        ):
            on_a, on_b = subscriber(hub_a, "metrics", "snapshot"), subscriber(hub_b, "metrics", "snapshot")
            hub_a.publish("metrics", "metrics", {"process": "a"}, this_process=True)
            hub_a.publish("snapshot", "snapshot", {"marker": True})
            await eventually(lambda: on_a.queue.qsize() == 2 and on_b.queue.qsize() == 1)
            assert [m["type"] for m in drain(on_a)] == ["metrics", "snapshot"]
            assert [m["type"] for m in drain(on_b)] == ["snapshot"]

    run(scenario())


def test_replay_comes_from_the_stream_and_says_when_it_no_longer_reaches_back(
    redis_prefix: RedisTarget,
) -> None:
    async def scenario() -> None:
        async with (
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_a, _),
            bus_on(redis_prefix.url, redis_prefix.prefix) as (hub_b, _),
        ):
            sub = subscriber(hub_a, "sales:*")
            for n in range(6):
                hub_a.publish(f"sales:S00{1 + n % 2}", "sales", {"n": n})
            await eventually(lambda: sub.queue.qsize() == 6 and hub_b.last_seq == hub_a.last_seq)
            seqs = [m["seq"] for m in drain(sub)]
            # Process B never had a subscriber, yet replays what A published (from Redis).
            missed, gaps = await hub_b.replay_shared(["sales:S001"], seqs[1], seqs[4])
            assert [json.loads(m.text)["data"]["n"] for m in missed] == [2, 4] and gaps == []
            assert [m.seq for m in missed] == [seqs[2], seqs[4]]
            missed, gaps = await hub_b.replay_shared(["sales:*"], seqs[0] - 1, hub_b.last_seq)
            assert [m.seq for m in missed] == seqs and gaps == []

        # A short stream: after many more messages the first ones are trimmed, and the replay says so.
        async with bus_on(redis_prefix.url, redis_prefix.prefix, maxlen=5) as (hub_c, _):
            first = hub_c.last_seq
            for n in range(400):
                hub_c.publish("sales:S001", "sales", {"n": n})
            await eventually(lambda: hub_c.last_seq >= first + 400)
            missed, gaps = await hub_c.replay_shared(["sales:S001"], first, hub_c.last_seq)
            assert gaps == ["sales:S001"] and 5 <= len(missed) < 400
            assert [m.seq for m in missed] == list(range(missed[0].seq, hub_c.last_seq + 1))

    run(scenario())


def test_without_redis_the_hub_publishes_locally_and_says_so_once(
    redis_prefix: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def scenario() -> None:
        async with bus_on(dead, redis_prefix.prefix) as (hub, _):
            sub = subscriber(hub, "sales:S001")
            for n in range(3):
                hub.publish("sales:S001", "sales", {"n": n})
            assert [m["seq"] for m in drain(sub)] == [1, 2, 3]  # delivered here, at once
            missed, _ = await hub.replay_shared(["sales:S001"], 1, hub.last_seq)
            assert [m.seq for m in missed] == [2, 3]  # from this process's buffers

    run(scenario())
    down = [line for line in logged_events(capsys) if line["event"] == "redis_unavailable"]
    assert len(down) == 1 and down[0]["part"] == "ws bus"


def test_redis_going_away_mid_run_degrades_to_local_delivery(
    redis_prefix: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> None:
        proxy = TcpProxy(6379)
        await proxy.start()
        url = f"redis://127.0.0.1:{proxy.port}/{redis_prefix.db}"
        async with bus_on(url, redis_prefix.prefix) as (hub, bus):
            sub = subscriber(hub, "sales:S001")
            hub.publish("sales:S001", "sales", {"n": 0})
            await eventually(lambda: sub.queue.qsize() == 1)
            before = drain(sub)[0]["seq"]
            await proxy.close()  # Redis is gone
            hub.publish("sales:S001", "sales", {"n": 1})  # fails to go out: delivered here instead
            await eventually(lambda: sub.queue.qsize() == 1)
            hub.publish("sales:S001", "sales", {"n": 2})  # known down: local at once
            got = drain(sub)
            assert [m["data"]["n"] for m in got] == [1, 2]
            assert [m["seq"] for m in got] == [before + 1, before + 2]
            assert bus.available.down and hub.snapshot_stats()["fanout"] == "redis-unavailable"

    run(scenario())
    events = [line["event"] for line in logged_events(capsys)]
    assert events.count("redis_unavailable") == 1


# --- pushes between processes ----------------------------------------------------------------------


def _settings(tmp_path: Any, target: RedisTarget, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        jwt_secret="s" * 40,
        redis_url=target.url,
        redis_key_prefix=target.prefix,
        revocation_cache_seconds=60,
        risk_sync_seconds=60,
        **extra,
    )


def test_revocations_and_risk_blocks_are_pushed_to_the_other_process(
    tmp_path: Any, redis_prefix: RedisTarget
) -> None:
    settings = _settings(tmp_path, redis_prefix)
    engine = get_engine(settings.ops_store)

    def process() -> tuple[SharedState, RevokedTokens, RiskEngine]:
        revoked = RevokedTokens(engine, settings.revocation_cache_seconds)
        risk = RiskEngine(settings, engine, IpFilter(settings, engine))
        hub = Hub(replay_size=10, max_connections=10, per_user=10)
        return SharedState.build(settings, hub, revoked, risk), revoked, risk

    async def scenario() -> None:
        (shared_a, revoked_a, risk_a), (shared_b, revoked_b, risk_b) = process(), process()
        for shared in (shared_a, shared_b):
            await shared.start()
        try:
            await eventually(lambda: all(s.control.subscribed.is_set() for s in (shared_a, shared_b)))
            for cache in (revoked_b, risk_b):  # B has just read the store: it would not look for 60 s
                await asyncio.to_thread(cache.refresh)
            assert not revoked_b.stale() and not risk_b.stale()

            expires = datetime.now(UTC) + timedelta(minutes=5)
            await asyncio.to_thread(revoked_a.revoke, "jti-logout-1", expires)  # a worker thread, as logout
            took = await eventually(lambda: "jti-logout-1" in revoked_b, deadline_s=2.0)
            assert took < 1.0

            ip = "203.0.113.9"
            for _ in range(3):  # 3 x suspicious input (4.0 each) crosses the block score (10)
                await asyncio.to_thread(risk_a.observe, ip, "suspicious_input")
            assert risk_a.blocked_for(ip) > 0
            took = await eventually(lambda: risk_b.blocked_for(ip) > 0, deadline_s=2.0)
            assert took < 1.0 and risk_b.blocked_for(ip) > 3000  # the 1 h first block

            await asyncio.to_thread(risk_a.unblock, ip)  # an admin lifts it on A
            await eventually(lambda: risk_b.blocked_for(ip) == 0, deadline_s=2.0)
        finally:
            for shared in (shared_a, shared_b):
                await shared.stop()

    run(scenario())


# --- rate limits ---------------------------------------------------------------------------------


def test_rate_limits_count_across_processes(tmp_path: Any, redis_prefix: RedisTarget) -> None:
    settings = _settings(tmp_path, redis_prefix, rate_limit_user="4/minute")

    async def scenario() -> None:
        a, b = RateLimiter(settings), RateLimiter(settings)
        assert a.url == redis_prefix.url  # derived from CHAINSYNC_REDIS_URL
        answers = [await (a if n % 2 else b).hit("user", "rita") for n in range(5)]
        assert answers[:4] == [None] * 4
        assert answers[4] is not None and answers[4].scope == "user" and answers[4].retry_after >= 1
        assert await a.hit("user", "someone-else") is None
        assert any(key.startswith(f"{redis_prefix.prefix}ratelimit:") for key in redis_prefix.own_keys())

    run(scenario())


def test_rate_limits_fall_back_to_this_process_when_redis_is_down(
    tmp_path: Any, redis_prefix: RedisTarget, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = RedisTarget(url=f"redis://127.0.0.1:{free_port()}/0", prefix=redis_prefix.prefix, db=0)
    settings = _settings(tmp_path, dead, rate_limit_user="2/minute")

    async def scenario() -> None:
        limiter = RateLimiter(settings)
        answers = [await limiter.hit("user", "rita") for _ in range(3)]
        assert answers[:2] == [None, None] and answers[2] is not None  # counted here instead

    run(scenario())
    events = [line["event"] for line in logged_events(capsys)]
    assert events.count("redis_unavailable") == 1


def test_an_explicit_storage_url_wins_over_redis_url(tmp_path: Any, redis_prefix: RedisTarget) -> None:
    settings = _settings(tmp_path, redis_prefix, rate_limit_storage_url="memory://")
    assert RateLimiter(settings).url == "memory://"
    unset = Settings(_env_file=None, data_dir=tmp_path, jwt_secret="s" * 40)  # type: ignore[call-arg]
    assert RateLimiter(unset).url == "memory://"

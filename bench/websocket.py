"""WebSocket fan-out: N concurrent clients on loopback follow one store's sales ticker while a device posts
sales; each sale is broadcast to every client.

    uv run python bench/websocket.py [--clients 1000] [--broadcasts 100] [--interval 0.1] [--seconds 120]
                                     [--two-processes]

Reports connection set-up time, fan-out latency (server publish -> client receive, p50/p99), deliveries
per second, drops, and the API's request latency (``GET /api/observability/health``, sequential probes)
while idle and while it fans out, with their ratio. ``chainsync api`` runs under uvicorn (one worker) on
127.0.0.1; the clients share one asyncio loop in this process (uvloop when installed), so on a small
machine the clients compete with the server for CPU and the figures are an upper bound on latency.
Bounded by count (``--broadcasts``, ``--probes``) and by time (``--seconds``).

With ``--two-processes`` a second ``chainsync api`` shares the ops store, and both share Redis
(``CHAINSYNC_BENCH_REDIS``, a key prefix of the run's own, its keys deleted after): the clients follow the
first process, the sales are posted to the second, so every delivery crosses processes through Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import sale_event  # noqa: E402
from bench.loadgen import delete_redis_keys, free_port, start, stop, wait_ready  # noqa: E402

REDIS_URL = os.environ.get("CHAINSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit towards ``needed`` (never past the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


class Client:
    """One follower: records (receive wall time - publish time) for every sales message."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.last_receive = 0.0

    async def run(
        self, url: str, token: str, connected: asyncio.Event, stop: asyncio.Event, ready: list[int]
    ) -> None:
        async with websockets.connect(
            url, max_queue=None, open_timeout=60, ping_interval=None, compression=None
        ) as ws:
            # First-message auth: the token never appears in a URL (nor in any access log).
            await ws.send(json.dumps({"type": "auth", "token": token, "channels": "sales:S001"}))
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome", welcome
            ready.append(1)
            connected.set()

            async def close_on_stop() -> None:
                await stop.wait()
                await ws.close()

            # One plain iteration per message (a timeout per receive cost the client more CPU than the
            # server spent sending: the clients share the machine's cores with the server).
            closer = asyncio.create_task(close_on_stop())
            try:
                async for raw in ws:
                    now = time.time()
                    message = json.loads(raw)
                    if message["type"] == "ping":
                        await ws.send('{"type":"pong"}')
                    elif message["type"] == "sales":
                        self.latencies.append(now - message["ts"])
                        self.received += 1
                        self.last_receive = now
            finally:
                closer.cancel()


async def probe(
    base: str, n: int, stop_at: float, out: list[float], until: asyncio.Event | None = None
) -> None:
    """Sequential GET /api/observability/health, ``n`` of them at most, recording seconds each."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for _ in range(n):
            if time.monotonic() > stop_at or (until is not None and until.is_set()):
                return
            started = time.perf_counter()
            resp = await http.get("/api/observability/health")
            out.append(time.perf_counter() - started)
            assert resp.status_code == 200, resp.text


async def bench(
    args: argparse.Namespace,
    base: str,
    ws_url: str,
    tokens: list[str],
    key: str,
    admin: str,
    server_pids: list[int],
    post_base: str,
) -> dict[str, Any]:
    deadline = time.monotonic() + args.seconds
    stop = asyncio.Event()
    clients = [Client() for _ in tokens]
    ready: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    # Connect in waves so the listen backlog never overflows.
    for i in range(0, len(tokens), 100):
        wave = []
        for client, token in zip(clients[i : i + 100], tokens[i : i + 100], strict=True):
            connected = asyncio.Event()
            tasks.append(asyncio.create_task(client.run(ws_url, token, connected, stop, ready)))
            wave.append(connected.wait())
        await asyncio.wait_for(asyncio.gather(*wave), timeout=max(1.0, deadline - time.monotonic()))
    connect_s = time.perf_counter() - started

    idle: list[float] = []
    await probe(base, args.probes, deadline, idle)

    busy: list[float] = []
    posted = asyncio.Event()
    probe_task = asyncio.create_task(probe(base, 100_000, deadline, busy, until=posted))
    publish_started = time.time()
    server_cpu0, client_cpu0 = sum(map(cpu_seconds, server_pids)), sum(os.times()[:2])
    post_latency: list[float] = []
    async with httpx.AsyncClient(base_url=post_base, timeout=10, headers={"X-API-Key": key}) as http:
        next_at = time.monotonic()
        for i in range(args.broadcasts):
            if time.monotonic() > deadline:
                break
            # One sale every --interval seconds (the same offered load in both modes: with two processes
            # the POST answers before the other process has fanned out, so back-to-back posts would
            # measure a growing backlog, not the fan-out).
            next_at += args.interval
            t0 = time.perf_counter()
            resp = await http.post("/api/events/sales", json=sale_event("S001", "POS-01", i))
            post_latency.append(time.perf_counter() - t0)
            assert resp.status_code == 201, resp.text
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    sent = len(post_latency)
    # Wait (bounded) until every client has every message.
    while time.monotonic() < deadline and sum(c.received for c in clients) < sent * len(clients):
        await asyncio.sleep(0.05)
    posted.set()
    server_cpu = sum(map(cpu_seconds, server_pids)) - server_cpu0
    client_cpu = sum(os.times()[:2]) - client_cpu0
    await probe_task
    stats = httpx.get(
        f"{base}/api/observability/websocket/stats", headers={"Authorization": f"Bearer {admin}"}
    ).json()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)

    latencies = [lat for c in clients for lat in c.latencies]
    delivered = sum(c.received for c in clients)
    last = max((c.last_receive for c in clients), default=publish_started)
    return {
        "clients": len(clients),
        "connected": len(ready),
        "connect_seconds": round(connect_s, 2),
        "broadcasts": sent,
        "interval_s": args.interval,
        "deliveries": delivered,
        "deliveries_expected": sent * len(clients),
        "fanout_p50_ms": round(pct(latencies, 0.50) * 1000, 2),
        "fanout_p99_ms": round(pct(latencies, 0.99) * 1000, 2),
        "fanout_max_ms": round(max(latencies, default=float("nan")) * 1000, 2),
        "deliveries_per_s": round(delivered / max(last - publish_started, 1e-9)),
        "ingest_post_p50_ms": round(pct(post_latency, 0.50) * 1000, 2),
        "api_idle_p50_ms": round(pct(idle, 0.50) * 1000, 2),
        "api_idle_p99_ms": round(pct(idle, 0.99) * 1000, 2),
        "api_busy_p50_ms": round(pct(busy, 0.50) * 1000, 2),
        "api_busy_p99_ms": round(pct(busy, 0.99) * 1000, 2),
        "api_busy_over_idle_p50": round(pct(busy, 0.5) / pct(idle, 0.5), 2) if idle and busy else None,
        "api_busy_over_idle_p99": round(pct(busy, 0.99) / pct(idle, 0.99), 2) if idle and busy else None,
        "probes_idle": len(idle),
        "probes_busy": len(busy),
        "server_cpu_s_fanout": round(server_cpu, 2),
        "clients_cpu_s_fanout": round(client_cpu, 2),
        "server_cpu_us_per_delivery": round(server_cpu / max(delivered, 1) * 1e6, 1),
        "server_dropped": stats["messages_dropped_total"],
        "server_connections_at_end": stats["connections"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=100)
    parser.add_argument(
        "--interval", type=float, default=0.1, help="seconds between posted sales (0: back to back)"
    )
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument(
        "--ws",
        default=None,
        help="uvicorn WebSocket implementation (websockets, websockets-sansio, wsproto); default: what "
        "`chainsync api` uses",
    )
    parser.add_argument(
        "--two-processes",
        action="store_true",
        help="clients on one API process, sales posted to a second; fan-out through Redis",
    )
    args = parser.parse_args()

    limit = raise_fd_limit(args.clients * 2 + 256)
    if limit < args.clients + 64:
        raise SystemExit(f"open-files limit {limit} is too low for {args.clients} clients")

    from api.security.tokens import create_access_token
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.users import create_device_key
    from chainsync.settings import Settings

    with tempfile.TemporaryDirectory(prefix="chainsync-wsbench-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        secret = "bench-secret-" + "k" * 40
        settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=secret)  # type: ignore[call-arg]
        key = create_device_key(get_engine(settings.ops_store), "S001", "POS-01")
        tokens = [
            create_access_token(settings, subject=f"cashier{i:05d}", role="cashier", stores=["S001"]).token
            for i in range(args.clients)
        ]
        admin = create_access_token(settings, subject="admin", role="admin", stores=["*"]).token
        port = free_port()
        env = {
            **os.environ,
            "CHAINSYNC_DATA_DIR": str(data_dir),
            "CHAINSYNC_JWT_SECRET": secret,
            "LOG_LEVEL": "WARNING",
            # One loopback address opens every connection and probe: measure fan-out, not the limiter.
            "CHAINSYNC_RATE_LIMIT_ENABLED": "false",
            "WS_MAX_CONNECTIONS": str(args.clients + 16),
            "WS_HEARTBEAT_INTERVAL": "60000",
            "CHAINSYNC_WS_QUEUE_SIZE": str(max(256, args.broadcasts * 2)),
        }
        env.pop("CHAINSYNC_DEMO_MODE", None)
        prefix = f"chainsync-wsbench-{uuid.uuid4().hex[:8]}:"
        if args.two_processes:
            env |= {"CHAINSYNC_REDIS_URL": REDIS_URL, "CHAINSYNC_REDIS_KEY_PREFIX": prefix}
        command = [sys.executable, "-m", "tools.cli", "api", "--port", str(port)]
        if args.ws:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
            ]
            command += ["--port", str(port), "--ws", args.ws, "--log-level", "warning"]
        procs = [start(command, env)]
        base = f"http://127.0.0.1:{port}"
        post_base = base
        if args.two_processes:
            second_port = free_port()
            at = command.index("--port") + 1
            procs.append(start([*command[:at], str(second_port), *command[at + 1 :]], env))
            post_base = f"http://127.0.0.1:{second_port}"
        try:
            wait_ready(f"{base}/api/observability/health", procs[0])
            wait_ready(f"{post_base}/api/observability/health", procs[-1])
            try:
                import uvloop

                loop_factory: Any = uvloop.new_event_loop
            except ImportError:
                loop_factory = None
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                result = runner.run(
                    bench(
                        args,
                        base,
                        f"ws://127.0.0.1:{port}/ws/notifications",
                        tokens,
                        key,
                        admin,
                        [p.pid for p in procs],
                        post_base,
                    )
                )
        finally:
            for proc in procs:
                stop(proc)
            if args.two_processes:
                delete_redis_keys(REDIS_URL, prefix)
    result["api_processes"] = len(procs)
    result["ws_implementation"] = args.ws or "chainsync api default"
    result["cpus"] = os.cpu_count()
    result["fd_soft_limit"] = limit
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

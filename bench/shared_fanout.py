"""WebSocket fan-out across two API processes sharing Redis (measurement behind docs/shared-state.md).

    uv run --frozen python bench/shared_fanout.py [--clients 1000] [--broadcasts 100] [--seconds 180]

Two ``chainsync api`` processes (A and B, uvicorn, 127.0.0.1) on one SQLite ops store and the Redis of
``CHAINSYNC_REDIS_URL`` (default redis://127.0.0.1:6379/0, under a key prefix of this run's own, deleted at
the end); ``--clients`` WebSocket clients connect to A and follow one store's sales ticker. Sales are
posted alternately to A (same process) and to B (the other process), ABAB, so both sides see the same
machine load; latency is client receive time minus the message's ``ts`` (stamped by the publishing
process before it goes to Redis), reported per side as p50/p99/max. Bounded by ``--broadcasts`` and by
``--seconds``. The clients share this process's event loop, competing with the servers for CPU: the figures
are an upper bound.

(This sits beside the docs rather than in ``bench/``, which another branch owns; move it there at will.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import free_port, sale_event, wait_ready  # noqa: E402
from bench.websocket import pct, raise_fd_limit  # noqa: E402


class Follower:
    """One client on A: latency (s) of each sales message, by the process the sale was posted to."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"A": [], "B": []}
        self.received = 0

    async def run(self, url: str, connected: asyncio.Event, stop: asyncio.Event) -> None:
        async with websockets.connect(url, max_queue=None, open_timeout=60, ping_interval=None) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            connected.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.time()
                message = json.loads(raw)
                if message["type"] == "ping":
                    await ws.send('{"type":"pong"}')
                elif message["type"] == "sales":
                    side = message["data"]["latest"][0]["transaction_id"][1]  # "TA..." / "TB..."
                    self.latencies[side].append(now - message["ts"])
                    self.received += 1


async def measure(args: argparse.Namespace, bases: dict[str, str], ws_a: str, tokens: list[str], key: str):
    deadline = time.monotonic() + args.seconds
    stop = asyncio.Event()
    followers = [Follower() for _ in tokens]
    tasks = []
    started = time.perf_counter()
    for i in range(0, len(tokens), 100):  # in waves, so the listen backlog never overflows
        wave = []
        for follower, token in zip(followers[i : i + 100], tokens[i : i + 100], strict=True):
            connected = asyncio.Event()
            url = f"{ws_a}?token={token}&channels=sales:S001"
            tasks.append(asyncio.create_task(follower.run(url, connected, stop)))
            wave.append(connected.wait())
        await asyncio.wait_for(asyncio.gather(*wave), timeout=max(1.0, deadline - time.monotonic()))
    connect_s = time.perf_counter() - started
    sent = 0
    async with (
        httpx.AsyncClient(base_url=bases["A"], timeout=10, headers={"X-API-Key": key}) as to_a,
        httpx.AsyncClient(base_url=bases["B"], timeout=10, headers={"X-API-Key": key}) as to_b,
    ):
        for i in range(args.broadcasts):
            if time.monotonic() > deadline:
                break
            side, http = ("A", to_a) if i % 2 == 0 else ("B", to_b)
            event = sale_event("S001", "POS-01", i)
            event["transaction_id"] = f"T{side}{i:08d}"
            resp = await http.post("/api/events/sales", json=event)
            assert resp.status_code == 201, resp.text
            sent += 1
            await asyncio.sleep(args.gap_ms / 1000)  # let one broadcast finish before the next
    while time.monotonic() < deadline and sum(f.received for f in followers) < sent * len(followers):
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    out: dict[str, Any] = {
        "clients": len(followers),
        "connect_seconds": round(connect_s, 2),
        "broadcasts": sent,
        "deliveries": sum(f.received for f in followers),
        "deliveries_expected": sent * len(followers),
    }
    for side, label in (("A", "same_process"), ("B", "other_process")):
        lat = [x for f in followers for x in f.latencies[side]]
        out[f"{label}_p50_ms"] = round(pct(lat, 0.50) * 1000, 2)
        out[f"{label}_p99_ms"] = round(pct(lat, 0.99) * 1000, 2)
        out[f"{label}_max_ms"] = round(max(lat, default=float("nan")) * 1000, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause between two posts")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--redis", default=os.environ.get("CHAINSYNC_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    if raise_fd_limit(args.clients * 2 + 256) < args.clients + 64:
        raise SystemExit("open-files limit too low")

    from api.security.tokens import create_access_token
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.users import create_device_key
    from chainsync.settings import Settings

    prefix = f"chainsync-measure-{uuid.uuid4().hex[:8]}:"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="chainsync-shared-fanout-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        secret = "measure-secret-" + "k" * 40
        settings = Settings(_env_file=None, data_dir=data_dir, jwt_secret=secret)  # type: ignore[call-arg]
        key = create_device_key(get_engine(settings.ops_store), "S001", "POS-01")
        tokens = [
            create_access_token(settings, subject=f"cashier{i:05d}", role="cashier", stores=["S001"]).token
            for i in range(args.clients)
        ]
        env = {
            **os.environ,
            "CHAINSYNC_DATA_DIR": str(data_dir),
            "CHAINSYNC_JWT_SECRET": secret,
            "CHAINSYNC_REDIS_URL": args.redis,
            "CHAINSYNC_REDIS_KEY_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
            "CHAINSYNC_RATE_LIMIT_ENABLED": "false",  # one loopback address opens everything
            "WS_MAX_CONNECTIONS": str(args.clients + 16),
            "WS_HEARTBEAT_INTERVAL": "60000",
            "CHAINSYNC_WS_QUEUE_SIZE": str(max(256, args.broadcasts * 2)),
        }
        env.pop("CHAINSYNC_DEMO_MODE", None)
        bases: dict[str, str] = {}
        try:
            for side in ("A", "B"):
                port = free_port()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tools.cli", "api", "--port", str(port)],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                procs.append(proc)
                bases[side] = f"http://127.0.0.1:{port}"
                wait_ready(f"{bases[side]}/api/observability/health", proc)
            ws_a = bases["A"].replace("http://", "ws://") + "/ws/notifications"
            result = asyncio.run(measure(args, bases, ws_a, tokens, key))
            print(json.dumps(result, indent=2))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            with redis.Redis.from_url(args.redis) as r:
                own = list(r.scan_iter(match=f"{prefix}*", count=1000))
                if own:
                    r.delete(*own)


if __name__ == "__main__":
    main()

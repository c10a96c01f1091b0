"""What the API benches share: servers on loopback, a bounded load loop, CPU accounting, ABAB rounds.

Every bench runs its sides in alternating rounds (A B A B ...) in one run and reports medians, so a change
in the machine's load (other work shares the 2 cores) hits both sides alike. The API's rate limits are set
out of the way for the run (:func:`api_env`: a limit no run can reach, so the limiter still runs), never
tripped. CPU seconds are read for the servers (from ``/proc``, with psutil, worker children included) and
for the load generator itself, because the load generator shares the cores with the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("CHAINSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
UNREACHABLE_LIMIT = "100000000/minute"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for ``chainsync api`` in a bench: its own data dir and JWT secret, warnings only, and
    every rate limit far beyond what a run can post (the limiter still counts each request)."""
    return {
        **os.environ,
        "CHAINSYNC_DATA_DIR": str(data_dir),
        "CHAINSYNC_JWT_SECRET": os.environ.get("CHAINSYNC_JWT_SECRET", uuid.uuid4().hex * 2),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "CHAINSYNC_RATE_LIMIT_IP": UNREACHABLE_LIMIT,
        "CHAINSYNC_RATE_LIMIT_USER": UNREACHABLE_LIMIT,
        "CHAINSYNC_RATE_LIMIT_DEVICE": UNREACHABLE_LIMIT,
        **extra,
    }


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def start_api(port: int, env: dict[str, str], *, workers: int = 1) -> subprocess.Popen[bytes]:
    """``chainsync api`` on 127.0.0.1:``port`` (``workers`` uvicorn processes)."""
    cmd = [sys.executable, "-m", "tools.cli", "api", "--port", str(port), "--workers", str(workers)]
    return start(cmd, env)


def start_bare(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Serve the bench module's bare FastAPI factory ``app`` (``module:function``) on 127.0.0.1:``port``."""
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--app-dir", str(REPO / "bench")]
    return start([*cmd, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` and their children (uvicorn workers) so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    total += t.user + t.system
    return total


def own_cpu_seconds() -> float:
    """CPU seconds of this process (the load generator) so far."""
    return time.process_time()


@dataclass
class Round:
    """One side's share of one round: what was acknowledged, how fast, and the CPU it took."""

    requests: int
    items: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


async def post_loop(
    urls: list[str],
    bodies: Iterator[bytes] | list[Iterator[bytes]],
    headers: list[dict[str, str]],
    *,
    clients: int,
    seconds: float,
    items_per_body: int,
    ok: Callable[[httpx.Response], bool],
    server_pids: list[int],
    on_response: Callable[[bytes, httpx.Response], None] | None = None,
) -> Round:
    """Post ``bodies`` from ``clients`` concurrent tasks (task ``i`` posts to ``urls[i % len(urls)]`` with
    ``headers[i % len(headers)]``, and takes its bodies from ``bodies[i]`` when that is a list of one
    source per task) until the bodies run out or ``seconds`` pass. A response ``ok`` rejects stops the run
    with its status and text. Bounded by count (the bodies) and by time."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    done = 0
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        deadline = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            nonlocal done
            url = urls[i % len(urls)]
            hdrs = {**headers[i % len(headers)], "Content-Type": "application/json"}
            source = bodies[i] if isinstance(bodies, list) else bodies
            while time.perf_counter() < deadline:
                body = next(source, None)
                if body is None:
                    return
                start_t = time.perf_counter()
                resp = await http.post(url, content=body, headers=hdrs)
                latencies.append(time.perf_counter() - start_t)
                if not ok(resp):
                    raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:300]}")
                if on_response is not None:
                    on_response(body, resp)
                done += 1

        cpu0, own0 = cpu_seconds(server_pids), own_cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        cpu1, own1 = cpu_seconds(server_pids), own_cpu_seconds()
    latencies.sort()
    return Round(
        requests=done,
        items=done * items_per_body,
        seconds=elapsed,
        latencies=latencies,
        server_cpu=cpu1 - cpu0,
        client_cpu=own1 - own0,
    )


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


@dataclass
class Side:
    """Every round of one side of a comparison."""

    name: str
    rounds: list[Round] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.rounds)

    def summary(self) -> dict[str, Any]:
        """Medians over the rounds: items/s, p50/p99 latency (ms), server and client CPU ms per 1,000
        items."""
        per_k = [1000 * r.server_cpu / r.items for r in self.rounds if r.items]
        client_k = [1000 * r.client_cpu / r.items for r in self.rounds if r.items]
        return {
            "items_per_s": self.median("items_per_s"),
            "rounds_items_per_s": [round(r.items_per_s) for r in self.rounds],
            "p50_ms": statistics.median(pct(r.latencies, 0.50) * 1000 for r in self.rounds),
            "p99_ms": statistics.median(pct(r.latencies, 0.99) * 1000 for r in self.rounds),
            "server_cpu_ms_per_1k": statistics.median(per_k) * 1000 if per_k else 0.0,
            "client_cpu_ms_per_1k": statistics.median(client_k) * 1000 if client_k else 0.0,
            "requests": sum(r.requests for r in self.rounds),
            "items": sum(r.items for r in self.rounds),
        }


def print_table(sides: list[Side], baseline: Side, unit: str) -> None:
    """One line per side (medians over the rounds) and its ratio to ``baseline``."""
    base = baseline.summary()["items_per_s"]
    for side in sides:
        s = side.summary()
        ratio = s["items_per_s"] / base if base else 0.0
        print(
            f"{side.name:>22}: {s['items_per_s']:>8.0f} {unit}/s median of {s['rounds_items_per_s']} "
            f"p50 {s['p50_ms']:.1f} ms p99 {s['p99_ms']:.1f} ms per request; "
            f"server CPU {s['server_cpu_ms_per_1k']:.0f} ms, load generator CPU "
            f"{s['client_cpu_ms_per_1k']:.0f} ms per 1,000 {unit}; ratio to {baseline.name} {ratio:.2f}"
        )


@contextlib.contextmanager
def postgres_database(prefix: str = "chainsync_bench") -> Iterator[str]:
    """A fresh PostgreSQL database for one bench run (``postgresql+psycopg://`` URL), dropped after."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_redis_keys(url: str, prefix: str) -> None:
    """Delete a run's Redis keys (only those under its own ``prefix``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for found in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(found)
    finally:
        client.close()

"""Ingest throughput: the ChainSync API against a bare FastAPI endpoint, both under uvicorn on loopback.

    uv run python bench/ingest.py [--clients 8] [--batch 100] [--seconds 10] [--max-batches 5000]

Our side is ``chainsync api`` (device-key auth, strict per-item validation, one SQLite WAL transaction
with synchronous=FULL per batch, response after COMMIT). The baseline is a FastAPI app with one endpoint
that takes a JSON list and returns its length: the floor of HTTP + JSON cost on this machine. Both get the
same pre-serialised batches of sale events from N concurrent httpx clients, bounded by count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def bare_app():  # type: ignore[no-untyped-def]
    """The baseline: accept a JSON list, answer its length (``uvicorn ingest:bare_app --factory``)."""
    from fastapi import Body, FastAPI

    app = FastAPI()

    @app.post("/ingest")
    async def ingest(events: list[dict[str, Any]] = Body(...)) -> dict[str, int]:
        return {"count": len(events)}

    return app


def sale_event(store_id: str, device_id: str, i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-27T10:15:00+01:00",
        "store_id": store_id,
        "device_id": device_id,
        "transaction_id": f"T{i:09d}",
        "kind": "sale",
        "cashier_id": "C01",
        "payment_type": "card",
        "lines": [
            {
                "product_id": f"P{(i + k) % 150:03d}",
                "quantity": 1 + k,
                "unit_price_cents": 299 + k,
                "discount_cents": 0,
            }
            for k in range(3)
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:  # type: ignore[type-arg]
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


async def fire(
    url: str, bodies: list[bytes], headers: dict[str, str], clients: int, seconds: float, batch: int
) -> dict[str, float]:
    """Post ``bodies`` from ``clients`` concurrent tasks until they run out or ``seconds`` pass."""
    latencies: list[float] = []
    next_body = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        headers={**headers, "Content-Type": "application/json"}, limits=limits, timeout=30.0
    ) as http:
        # Warm-up (connections, caches, first SQLite pages), not measured.
        for body in bodies[:clients]:
            (await http.post(url, content=body)).raise_for_status()
        next_body = clients

        async def worker() -> None:
            nonlocal next_body
            while time.perf_counter() < deadline and next_body < len(bodies):
                body = bodies[next_body]
                next_body += 1
                start = time.perf_counter()
                resp = await http.post(url, content=body)
                latencies.append(time.perf_counter() - start)
                if resp.status_code != 200:
                    raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "batches": len(latencies),
        "events": len(latencies) * batch,
        "seconds": elapsed,
        "events_per_s": len(latencies) * batch / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def start_bare(app: str, port: int, env: dict[str, str]) -> subprocess.Popen:  # type: ignore[type-arg]
    """Serve the bench module's bare FastAPI factory ``app`` (``module:function``) on 127.0.0.1:``port``."""
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--app-dir", str(REPO / "bench")]
    return start([*cmd, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env)


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-batches", type=int, default=5000)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="chainsync-bench-"))
    env = {
        **os.environ,
        "CHAINSYNC_DATA_DIR": str(data_dir),
        "CHAINSYNC_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    os.environ.update(env)
    from chainsync.ops_store import get_engine
    from chainsync.ops_store.events import count_events
    from chainsync.ops_store.users import create_device_key
    from chainsync.settings import get_settings

    engine = get_engine(get_settings().ops_store)
    key = create_device_key(engine, "S001", "POS-01")

    print(f"building {args.max_batches} batches of {args.batch} sale events ...", file=sys.stderr)
    batches = [
        [sale_event("S001", "POS-01", b * args.batch + i) for i in range(args.batch)]
        for b in range(args.max_batches)
    ]
    ours_bodies = [json.dumps({"events": b}).encode() for b in batches]
    bare_bodies = [json.dumps(b).encode() for b in batches]

    results: dict[str, dict[str, float]] = {}
    port = free_port()
    proc = start([sys.executable, "-m", "chainsync.cli", "api", "--port", str(port)], env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api/observability/health", proc)
        results["chainsync"] = asyncio.run(
            fire(
                f"{base}/api/events/sales",
                ours_bodies,
                {"X-API-Key": key},
                args.clients,
                args.seconds,
                args.batch,
            )
        )
    finally:
        stop(proc)
    stored = count_events(engine, "sale")
    acknowledged = results["chainsync"]["events"] + args.clients * args.batch  # plus the warm-up
    assert stored == acknowledged, (stored, acknowledged)

    port = free_port()
    proc = start_bare("ingest:bare_app", port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/docs", proc)
        results["bare"] = asyncio.run(
            fire(f"{base}/ingest", bare_bodies, {}, args.clients, args.seconds, args.batch)
        )
    finally:
        stop(proc)

    print(f"clients={args.clients} batch={args.batch} seconds<={args.seconds} cpus={os.cpu_count()}")
    for name, r in results.items():
        print(
            f"{name:>10}: {r['events_per_s']:>9.0f} events/s  ({r['batches']:.0f} batches, "
            f"{r['events']:.0f} events in {r['seconds']:.1f}s; "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms per batch)"
        )
    print(f"chainsync stored {stored} events in SQLite = every acknowledged event (incl. warm-up)")
    print(
        f"ratio chainsync/bare = {results['chainsync']['events_per_s'] / results['bare']['events_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()

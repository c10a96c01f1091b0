"""Offline sync: upload throughput with 20 terminals and download latency for a 5,000-product store, the
ChainSync API beside a bare FastAPI app, both under uvicorn on loopback, in the same run.

    uv run python bench/sync.py [--terminals 20] [--batch 50] [--seconds 10] [--products 5000]

Upload: each terminal has its own device key and posts batches of sale items to ``/api/sync/upload``
(per-item validation, mutation-id lookup, one SQLite transaction per batch with synchronous=FULL, inbox
append, dead letters, a SyncEvent per batch, response after COMMIT). The baseline endpoint takes the same
body and answers one status per item without storing anything.

Download: a full snapshot (catalog of ``--products`` products plus the store's stock levels from a
published serving snapshot), paged by 1,000, and an incremental download with nothing new; the baseline
returns a prebuilt page of the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import free_port, start, start_bare, stop, wait_ready  # noqa: E402

PAGE = 1000


# An hour ago: inside the window the API accepts (api.plausibility), whatever day the bench runs.
OCCURRED_AT = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")


def bare_app():  # type: ignore[no-untyped-def]
    """The baseline: an upload answering one status per item, a download returning a prebuilt page."""
    from fastapi import Body, FastAPI

    app = FastAPI()
    page = [
        {
            "entity": "product",
            "key": f"P{i:05d}",
            "op": "upsert",
            "data": {"product_id": f"P{i:05d}", "price_cents": 199},
        }
        for i in range(PAGE)
    ]

    @app.post("/upload")
    async def upload(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"results": [{"index": i, "status": "applied"} for i in range(len(body["items"]))]}

    @app.get("/download")
    async def download() -> dict[str, Any]:
        return {"records": page, "has_more": False, "next_cursor": "x"}

    return app


def sale_item(store_id: str, device_id: str, i: int) -> dict[str, Any]:
    eid = str(uuid.uuid4())
    return {
        "mutation_id": f"m-{eid}",
        "type": "sale",
        "payload": {
            "event_id": eid,
            "occurred_at": OCCURRED_AT,
            "store_id": store_id,
            "device_id": device_id,
            "transaction_id": f"{device_id}-{i:09d}",
            "kind": "sale",
            "cashier_id": "C01",
            "payment_type": "card",
            "lines": [
                {
                    "product_id": f"P{(i + k) % 5000:05d}",
                    "quantity": 1 + k,
                    "unit_price_cents": 299,
                    "discount_cents": 0,
                }
                for k in range(3)
            ],
        },
    }


async def fire_uploads(
    url: str, per_terminal: list[tuple[dict[str, str], list[bytes]]], seconds: float, batch: int
) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(
        timeout=60.0, limits=httpx.Limits(max_connections=len(per_terminal))
    ) as http:

        async def terminal(headers: dict[str, str], bodies: list[bytes]) -> None:
            # The first batch warms up (connection, caches), not measured.
            (await http.post(url, content=bodies[0], headers=headers)).raise_for_status()
            for body in bodies[1:]:
                if time.perf_counter() >= deadline:
                    return
                t = time.perf_counter()
                resp = await http.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t)
                if resp.status_code != 200:
                    raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(terminal(h, b) for h, b in per_terminal))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "batches": len(latencies),
        "items": len(latencies) * batch,
        "seconds": elapsed,
        "items_per_s": len(latencies) * batch / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def time_downloads(url: str, headers: dict[str, str], repeats: int) -> dict[str, float]:
    """Full download (all pages) and incremental (nothing new) timings, and per-page latency."""
    pages: list[float] = []
    fulls: list[float] = []
    incs: list[float] = []
    records = 0
    with httpx.Client(headers=headers, timeout=60.0) as http:
        http.get(url, params={"limit": PAGE}).raise_for_status()  # warm-up
        cursor = None
        for _ in range(repeats):
            t0 = time.perf_counter()
            cursor, records = None, 0
            while True:
                params: dict[str, Any] = {"limit": PAGE}
                if cursor:
                    params["cursor"] = cursor
                t = time.perf_counter()
                resp = http.get(url, params=params)
                pages.append(time.perf_counter() - t)
                resp.raise_for_status()
                body = resp.json()
                records += len(body["records"])
                cursor = body["next_cursor"]
                if not body["has_more"]:
                    break
            fulls.append(time.perf_counter() - t0)
            t = time.perf_counter()
            http.get(url, params={"limit": PAGE, "cursor": cursor}).raise_for_status()
            incs.append(time.perf_counter() - t)
    pages.sort()
    return {
        "records": records,
        "full_ms": statistics.median(fulls) * 1000,
        "page_p50_ms": statistics.median(pages) * 1000,
        "page_p99_ms": pages[min(len(pages) - 1, int(len(pages) * 0.99))] * 1000,
        "incremental_ms": statistics.median(incs) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-batches", type=int, default=400, help="per terminal")
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="chainsync-bench-sync-"))
    env = {
        **os.environ,
        "CHAINSYNC_DATA_DIR": str(data_dir),
        "CHAINSYNC_JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    os.environ.update(env)
    import polars as pl

    from chainsync.ops_store import get_engine
    from chainsync.ops_store.catalog import upsert_products
    from chainsync.ops_store.events import count_events
    from chainsync.ops_store.users import create_device_key
    from chainsync.serving import publish_snapshot
    from chainsync.settings import get_settings

    settings = get_settings()
    engine = get_engine(settings.ops_store)
    upsert_products(
        engine,
        [
            {
                "product_id": f"P{i:05d}",
                "name": f"Product {i}",
                "category": f"cat{i % 20}",
                "unit_cost_cents": 100,
                "price_cents": 199 + i % 300,
                "lead_time_days": 7,
                "is_active": True,
            }
            for i in range(args.products)
        ],
    )
    publish_snapshot(
        settings.serving,
        {
            "fct_stock_levels": pl.DataFrame(
                {
                    "store_id": ["S001"] * args.products,
                    "product_id": [f"P{i:05d}" for i in range(args.products)],
                    "on_hand_units": [i % 97 for i in range(args.products)],
                }
            )
        },
    )
    terminals = []
    print(
        f"building {args.terminals} x {args.max_batches} batches of {args.batch} items ...", file=sys.stderr
    )
    for t in range(args.terminals):
        device = f"POS-{t + 1:02d}"
        key = create_device_key(engine, "S001", device)
        bodies = [
            json.dumps(
                {
                    "batch_id": f"B-{uuid.uuid4().hex[:16]}",
                    "sent_at": datetime.now(UTC).isoformat(),
                    "items": [sale_item("S001", device, b * args.batch + i) for i in range(args.batch)],
                }
            ).encode()
            for b in range(args.max_batches)
        ]
        terminals.append(({"X-API-Key": key, "Content-Type": "application/json"}, bodies))

    results: dict[str, dict[str, Any]] = {}
    port = free_port()
    proc = start([sys.executable, "-m", "chainsync.cli", "api", "--port", str(port)], env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api/observability/health", proc)
        results["chainsync"] = asyncio.run(
            fire_uploads(f"{base}/api/sync/upload", terminals, args.seconds, args.batch)
        )
        results["chainsync"] |= time_downloads(f"{base}/api/sync/download", terminals[0][0], args.repeats)
    finally:
        stop(proc)
    stored = count_events(engine, "sale")
    acknowledged = results["chainsync"]["items"] + args.terminals * args.batch  # plus the warm-up
    assert stored == acknowledged, (stored, acknowledged)

    port = free_port()
    proc = start_bare("sync:bare_app", port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/docs", proc)
        results["bare"] = asyncio.run(fire_uploads(f"{base}/upload", terminals, args.seconds, args.batch))
        results["bare"] |= time_downloads(f"{base}/download", {}, args.repeats)
    finally:
        stop(proc)

    ours, bare = results["chainsync"], results["bare"]
    print(
        f"terminals={args.terminals} batch={args.batch} seconds<={args.seconds} "
        f"products={args.products} cpus={os.cpu_count()}"
    )
    for name, r in results.items():
        print(
            f"{name:>10}: upload {r['items_per_s']:>8.0f} items/s ({r['batches']:.0f} batches; "
            f"p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms per batch) | download page of {PAGE}: p50 {r['page_p50_ms']:.1f} ms, "
            f"p99 {r['page_p99_ms']:.1f} ms; full {r['records']} records {r['full_ms']:.0f} ms; "
            f"incremental {r['incremental_ms']:.1f} ms"
        )
    print(f"chainsync stored {stored} sale events = every acknowledged item (incl. warm-up)")
    print(
        f"ratios chainsync/bare: upload items/s {ours['items_per_s'] / bare['items_per_s']:.2f}, "
        f"download page p50 {ours['page_p50_ms'] / bare['page_p50_ms']:.1f}x"
    )


if __name__ == "__main__":
    main()

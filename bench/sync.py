"""Offline sync: upload throughput with 20 terminals and download latency for a 5,000-product store, the
ChainSync API beside a bare FastAPI app, both under uvicorn on loopback, taking turns in one run (ABAB,
medians; rate limits out of reach, see ``bench/loadgen.py``).

    uv run python bench/sync.py [--terminals 20] [--batch 50] [--rounds 4] [--seconds 5] [--products 5000]

Upload: each terminal has its own device key and posts batches of sale items to ``/api/sync/upload``
(per-item validation, mutation-id lookup, group commit: the batches queued meanwhile in one SQLite
transaction with synchronous=FULL, each batch all or nothing; inbox append, dead letters, a SyncEvent per
batch, response after COMMIT). The baseline endpoint takes the same
body and answers one status per item without storing anything.

Download: a full snapshot (catalog of ``--products`` products plus the store's stock levels from a
published serving snapshot), paged by 1,000, and an incremental download with nothing new; the baseline
returns a prebuilt page of the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import (  # noqa: E402
    Side,
    api_env,
    free_port,
    post_loop,
    print_table,
    start_api,
    start_bare,
    stop,
    wait_ready,
)

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


def sale_item(store_id: str, device_id: str, i: int, products: int = 5000) -> dict[str, Any]:
    """A sale item of products in the bench's catalog (``products`` of them: unknown ones are refused)."""
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
                    "product_id": f"P{(i + k) % products:05d}",
                    "quantity": 1 + k,
                    "unit_price_cents": 299,
                    "discount_cents": 0,
                }
                for k in range(3)
            ],
        },
    }


def time_downloads(url: str, headers: dict[str, str], repeats: int) -> dict[str, Any]:
    """Full download (all pages) and incremental (nothing new) timings (ms), and per-page latencies (s)."""
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
    return {"records": records, "full": fulls, "pages": pages, "incremental": incs}


def download_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over alternating download runs (ms)."""
    pages = sorted(p for r in runs for p in r["pages"])
    return {
        "records": runs[-1]["records"],
        "full_ms": statistics.median(f for r in runs for f in r["full"]) * 1000,
        "page_p50_ms": statistics.median(pages) * 1000,
        "page_p99_ms": pages[min(len(pages) - 1, int(len(pages) * 0.99))] * 1000,
        "incremental_ms": statistics.median(i for r in runs for i in r["incremental"]) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4, help="upload turns per side (ABAB...)")
    parser.add_argument("--seconds", type=float, default=5.0, help="at most, per turn")
    parser.add_argument("--max-batches", type=int, default=100, help="per terminal and turn, at most")
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10, help="full + incremental downloads per side")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="chainsync-bench-sync-"))
    env = api_env(data_dir)
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
    print(
        f"building {args.terminals} x {args.max_batches} batches of {args.batch} items ...", file=sys.stderr
    )
    headers: list[dict[str, str]] = []
    bodies: list[list[bytes]] = []
    for t in range(args.terminals):
        device = f"POS-{t + 1:02d}"
        headers.append({"X-API-Key": create_device_key(engine, "S001", device)})
        bodies.append(
            [
                json.dumps(
                    {
                        "batch_id": f"B-{MARK.decode()}{uuid.uuid4().hex[:16]}",
                        "sent_at": datetime.now(UTC).isoformat(),
                        "items": [
                            _marked(sale_item("S001", device, b * args.batch + i, args.products))
                            for i in range(args.batch)
                        ],
                    }
                ).encode()
                for b in range(args.max_batches)
            ]
        )

    with contextlib.ExitStack() as stack:
        port = free_port()
        proc = start_api(port, env)
        stack.callback(stop, proc)
        ours = f"http://127.0.0.1:{port}"
        wait_ready(f"{ours}/api/observability/health", proc)
        bare_port = free_port()
        bare_proc = start_bare("sync:bare_app", bare_port, env)
        stack.callback(stop, bare_proc)
        bare = f"http://127.0.0.1:{bare_port}"
        wait_ready(f"{bare}/docs", bare_proc)
        sides = [
            (Side("chainsync"), f"{ours}/api/sync/upload", proc.pid, headers),
            (Side("bare FastAPI"), f"{bare}/upload", bare_proc.pid, [{}]),
        ]
        turns = iter(range(1, 1 << 31))
        warmup = 0

        def turn(side: Side | None, url: str, pid: int, hdrs: list[dict[str, str]], limit: int | None) -> int:
            n = next(turns)
            sources = [turn_bodies(b[:limit] if limit else b, n) for b in bodies]
            result = asyncio.run(
                post_loop(
                    [url],
                    sources,
                    hdrs,
                    clients=args.terminals,
                    seconds=args.seconds if side else 60.0,
                    items_per_body=args.batch,
                    ok=lambda r: r.status_code == 200,
                    server_pids=[pid],
                )
            )
            if side is not None:
                side.rounds.append(result)
            return result.items

        for side, url, pid, hdrs in sides:  # warm-up: one batch per terminal, not measured
            items = turn(None, url, pid, hdrs, 1)
            warmup += items if side.name == "chainsync" else 0
        for _ in range(args.rounds):
            for side, url, pid, hdrs in sides:
                turn(side, url, pid, hdrs, None)
        downloads: dict[str, list[dict[str, Any]]] = {"chainsync": [], "bare FastAPI": []}
        for _ in range(args.repeats):  # alternating too
            downloads["chainsync"].append(time_downloads(f"{ours}/api/sync/download", headers[0], 1))
            downloads["bare FastAPI"].append(time_downloads(f"{bare}/download", {}, 1))

    print(
        f"terminals={args.terminals} batch={args.batch} rounds={args.rounds} "
        f"seconds<={args.seconds} per turn products={args.products} cpus={os.cpu_count()}"
    )
    print_table([s for s, *_ in sides], sides[1][0], "items")
    down = {name: download_summary(runs) for name, runs in downloads.items()}
    for name, d in down.items():
        print(
            f"{name:>22}: download page of {PAGE}: p50 {d['page_p50_ms']:.1f} ms, "
            f"p99 {d['page_p99_ms']:.1f} ms; full {d['records']} records {d['full_ms']:.0f} ms; "
            f"incremental {d['incremental_ms']:.1f} ms"
        )
    stored = count_events(engine, "sale")
    acknowledged = warmup + sides[0][0].summary()["items"]
    assert stored == acknowledged, (stored, acknowledged)
    print(f"chainsync stored {stored} sale events = every acknowledged item (incl. warm-up)")
    ratio = sides[0][0].summary()["items_per_s"] / sides[1][0].summary()["items_per_s"]
    page = down["chainsync"]["page_p50_ms"] / down["bare FastAPI"]["page_p50_ms"]
    print(f"ratios chainsync/bare: upload items/s {ratio:.2f}, download page p50 {page:.1f}x")


MARK = b"ffffffff-"


def _marked(item: dict[str, Any]) -> dict[str, Any]:
    """An item whose event and mutation ids start with the turn mark (see :func:`turn_bodies`)."""
    eid = MARK.decode() + item["payload"]["event_id"][9:]
    return {**item, "mutation_id": f"m-{eid}", "payload": {**item["payload"], "event_id": eid}}


def turn_bodies(bodies: list[bytes], turn: int) -> Iterator[bytes]:
    """The bodies with batch, mutation and event ids unique to ``turn`` (its number over the mark)."""
    stamp = f"{turn:08x}-".encode()
    return (body.replace(MARK, stamp) for body in bodies)


if __name__ == "__main__":
    main()

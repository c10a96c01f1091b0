"""Scaling: 1, 2 and 4 API processes on one PostgreSQL ops store and one Redis, side by side in one run.

    uv run python bench/scale.py [--processes 1,2,4] [--clients 16] [--batch 100] [--rounds 3]
                                 [--seconds 5] [--max-batches 1000]

Each configuration is N separate ``chainsync api`` processes on their own ports (what N hosts behind a
load balancer look like; client ``i`` posts to process ``i mod N``), sharing a fresh PostgreSQL database
(``CHAINSYNC_BENCH_PG`` names the server; dropped after) and Redis (``CHAINSYNC_BENCH_REDIS``, a key
prefix of its own, its keys deleted after). Every configuration is started once; the configurations take
turns (1, 2, 4, 1, 2, 4, ...) and the medians are reported, with the API processes' CPU and the load
generator's own CPU: all of them share this machine's cores (and PostgreSQL and Redis run here too, so
their CPU is not counted but competes). Rate limits are out of reach for the run. Afterwards every
acknowledged event must be stored once, and ``GET /api/sales/today`` (asked of the first process) must
count every acknowledged sale.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import build_bodies, turn_bodies  # noqa: E402
from loadgen import (  # noqa: E402
    Side,
    api_env,
    delete_redis_keys,
    free_port,
    post_loop,
    postgres_database,
    print_table,
    start_api,
    start_bare,
    stop,
    wait_ready,
)

REDIS_URL = os.environ.get("CHAINSYNC_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-batches", type=int, default=1000, help="request bodies per turn, at most")
    parser.add_argument("--no-bare", action="store_true", help="leave out the bare FastAPI baseline")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    today = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00").encode()
    bodies = [
        b.replace(b'"2026-11-27T10:15:00+01:00"', b'"' + today + b'"')
        for b in build_bodies(args.max_batches, args.batch, single=False)
    ]
    prefix = f"chainsync-bench-{uuid.uuid4().hex[:8]}:"

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database("chainsync_scale"))
        data_dir = Path(tempfile.mkdtemp(prefix="chainsync-bench-scale-"))
        env = api_env(
            data_dir,
            CHAINSYNC_OPS_STORE_URL=url,
            CHAINSYNC_REDIS_URL=REDIS_URL,
            CHAINSYNC_REDIS_KEY_PREFIX=prefix,
        )
        os.environ.update(env)
        from chainsync.ops_store import get_engine
        from chainsync.ops_store.events import count_events
        from chainsync.ops_store.users import create_device_key, upsert_user
        from chainsync.settings import get_settings

        get_settings.cache_clear()
        engine = get_engine(get_settings().ops_store)
        stack.callback(engine.dispose)
        stack.callback(delete_redis_keys, REDIS_URL, prefix)
        key = create_device_key(engine, "S001", "POS-01")
        password = uuid.uuid4().hex
        upsert_user(engine, "bench-manager", password, "manager", ["S001"])

        configs: list[tuple[Side, list[str], list[int]]] = []
        for n in counts:
            procs, urls = [], []
            for _ in range(n):
                port = free_port()
                proc = start_api(port, env)
                stack.callback(stop, proc)
                procs.append(proc)
                urls.append(f"http://127.0.0.1:{port}")
            for proc, base in zip(procs, urls, strict=True):
                wait_ready(f"{base}/api/observability/health", proc, timeout=180)
            name = f"{n} process{'es' if n > 1 else ''}"
            configs.append((Side(name), [f"{u}/api/events/sales" for u in urls], [p.pid for p in procs]))
        if not args.no_bare:
            # The floor: one bare FastAPI process that parses the same bodies and counts them.
            port = free_port()
            bare = start_bare("ingest:bare_app", port, env)
            stack.callback(stop, bare)
            wait_ready(f"http://127.0.0.1:{port}/docs", bare)
            configs.append((Side("bare FastAPI"), [f"http://127.0.0.1:{port}/ingest"], [bare.pid]))

        turns = iter(range(1, 1 << 31))
        warmup = 0

        def turn(side: Side | None, urls: list[str], pids: list[int], limit: int | None) -> int:
            source = turn_bodies(bodies[:limit] if limit else bodies, next(turns))
            result = asyncio.run(
                post_loop(
                    urls,
                    source,
                    [{"X-API-Key": key}],
                    clients=args.clients,
                    seconds=args.seconds if side else 60.0,
                    items_per_body=args.batch,
                    ok=lambda r: r.status_code == 200,
                    server_pids=pids,
                )
            )
            if side is not None:
                side.rounds.append(result)
            return result.items

        warmup_bare = 0
        for side, urls, pids in configs:  # warm-up: connections, caches, first pages; not measured
            n = turn(None, urls, pids, args.clients)
            warmup += n
            if side.name == "bare FastAPI":
                warmup_bare = n
        for _ in range(args.rounds):
            for side, urls, pids in configs:
                turn(side, urls, pids, None)

        print(
            f"clients={args.clients} events/request={args.batch} rounds={args.rounds} "
            f"seconds<={args.seconds} per turn, cpus={os.cpu_count()}; PostgreSQL + Redis on this machine"
        )
        sides = [side for side, _, _ in configs]
        print_table(sides, sides[-1] if not args.no_bare else sides[0], "events")
        for side in sides:
            s = side.summary()
            client = [r.client_cpu / r.seconds for r in side.rounds if r.seconds]
            server = [r.server_cpu / r.seconds for r in side.rounds if r.seconds]
            print(
                f"{side.name:>22}: load generator used {sum(client) / len(client):.2f} of a core, the API "
                f"processes {sum(server) / len(server):.2f} cores (mean over turns); "
                f"{s['items']} events acknowledged"
            )
        bare_items = 0 if args.no_bare else warmup_bare + sides[-1].summary()["items"]
        acknowledged = warmup + sum(side.summary()["items"] for side in sides) - bare_items
        stored = count_events(engine, "sale")
        assert stored == acknowledged, (stored, acknowledged)
        first = configs[0][1][0].rsplit("/api/", 1)[0]
        login = httpx.post(
            f"{first}/api/auth/token", data={"username": "bench-manager", "password": password}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        today_figures = httpx.get(
            f"{first}/api/sales/today",
            params={"store_id": "S001"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        counted = today_figures["total"]["transactions"]
        assert counted == acknowledged, (counted, acknowledged)
        print(
            f"stored {stored} events = every acknowledged event; /api/sales/today counts {counted} "
            "transactions = every acknowledged sale"
        )


if __name__ == "__main__":
    main()

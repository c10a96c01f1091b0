"""Ingest throughput: the ChainSync API against a bare FastAPI endpoint, both under uvicorn on loopback,
in alternating rounds of one run.

    uv run python bench/ingest.py [--postgres] [--single] [--clients 8] [--batch 100] [--rounds 4]
                                  [--seconds 5] [--max-batches 4000]

Our side is ``chainsync api`` (one process; device-key auth, firewall body scan, strict validation, group
commit, reply after COMMIT) on SQLite (WAL, synchronous=FULL) and, with ``--postgres``, on a fresh
PostgreSQL database (``CHAINSYNC_BENCH_PG`` names the server; dropped after). The baseline is a FastAPI
app with one endpoint that parses the same JSON body and answers how many events it holds: the floor of
HTTP + JSON cost on this machine. Each side gets the same bodies (``--batch`` sale events, or one event
with ``--single``) from ``--clients`` concurrent httpx clients; the sides take turns, ``--rounds`` times
each, ``--seconds`` each turn (bounded by the bodies too), and the medians are compared. Rate limits are
out of reach for the run (``bench/loadgen.py``). Afterwards every acknowledged event must be in the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import (  # noqa: E402
    Side,
    api_env,
    free_port,
    post_loop,
    postgres_database,
    print_table,
    start,
    start_api,
    start_bare,
    stop,
    wait_ready,
)

__all__ = ["free_port", "sale_event", "start", "start_bare", "stop", "wait_ready"]


# An hour ago: inside the window the API accepts (api.plausibility), whatever day the bench runs.
OCCURRED_AT = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")


def bare_app():  # type: ignore[no-untyped-def]
    """The baseline: parse the JSON body, answer how many events it holds (``uvicorn ingest:bare_app``)."""
    from fastapi import Body, FastAPI

    app = FastAPI()

    @app.post("/ingest")
    async def ingest(body: dict[str, Any] = Body(...)) -> dict[str, int]:
        events = body.get("events")
        return {"count": len(events) if isinstance(events, list) else 1}

    return app


TURN_MARK = b'"event_id": "ffffffff-'  # each turn writes its number over this, so every body is new


def sale_event(store_id: str, device_id: str, i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": OCCURRED_AT,
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


def _marked(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "event_id": "ffffffff-" + event["event_id"][9:]}


def build_bodies(count: int, batch: int, single: bool) -> list[bytes]:
    """``count`` request bodies of distinct sale events (``{"events": [...]}``, or one event with
    ``single``), each event id starting with the turn mark (:func:`turn_bodies`)."""
    if single:
        return [json.dumps(_marked(sale_event("S001", "POS-01", b))).encode() for b in range(count)]
    return [
        json.dumps(
            {"events": [_marked(sale_event("S001", "POS-01", b * batch + i)) for i in range(batch)]}
        ).encode()
        for b in range(count)
    ]


def turn_bodies(bodies: list[bytes], turn: int) -> Iterator[bytes]:
    """The bodies with event ids unique to ``turn`` (its number over the mark; a cheap byte replace)."""
    stamp = b'"event_id": "' + f"{turn:08x}-".encode()
    return (body.replace(TURN_MARK, stamp) for body in bodies)


class Target:
    """One side of the comparison: a running server, its URL and headers."""

    def __init__(self, name: str, url: str, headers: dict[str, str], pid: int, ok: set[int]) -> None:
        self.side = Side(name)
        self.url = url
        self.headers = headers
        self.pid = pid
        self.ok = ok  # the statuses that acknowledge a request


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--single", action="store_true", help="one event per request (--batch ignored)")
    parser.add_argument("--rounds", type=int, default=4, help="turns per side (ABAB...)")
    parser.add_argument("--seconds", type=float, default=5.0, help="at most, per turn")
    parser.add_argument("--max-batches", type=int, default=2000, help="request bodies per turn, at most")
    parser.add_argument("--postgres", action="store_true", help="also run the API on PostgreSQL")
    args = parser.parse_args()
    per_body = 1 if args.single else args.batch

    print(f"building {args.max_batches} bodies of {per_body} sale event(s) ...", file=sys.stderr)
    bodies = build_bodies(args.max_batches, args.batch, args.single)
    warmup = args.clients
    with contextlib.ExitStack() as stack:
        stores: list[tuple[str, str]] = [("sqlite", "")]
        if args.postgres:
            stores.append(("postgres", stack.enter_context(postgres_database())))
        targets: list[Target] = []
        engines: dict[str, Any] = {}
        for name, url in stores:
            data_dir = Path(tempfile.mkdtemp(prefix=f"chainsync-bench-{name}-"))
            env = api_env(data_dir, **({"CHAINSYNC_OPS_STORE_URL": url} if url else {}))
            os.environ.update(env)
            from chainsync.ops_store import get_engine
            from chainsync.ops_store.users import create_device_key
            from chainsync.settings import get_settings

            get_settings.cache_clear()
            engine = get_engine(get_settings().ops_store)
            engines[name] = engine
            key = create_device_key(engine, "S001", "POS-01")
            port = free_port()
            proc = start_api(port, env)
            stack.callback(stop, proc)
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/api/observability/health", proc)
            url = f"{base}/api/events/sales"
            ours_ok = {201} if args.single else {200}  # a new single event is 201 Created
            targets.append(Target(f"chainsync {name}", url, {"X-API-Key": key}, proc.pid, ours_ok))
        port = free_port()
        proc = start_bare("ingest:bare_app", port, dict(os.environ))
        stack.callback(stop, proc)
        wait_ready(f"http://127.0.0.1:{port}/docs", proc)
        bare = Target("bare FastAPI", f"http://127.0.0.1:{port}/ingest", {}, proc.pid, {200})
        targets.append(bare)

        turns = iter(range(1, 1 << 31))

        def turn(target: Target, seconds: float, limit: int | None = None) -> None:
            source = turn_bodies(bodies[:limit] if limit is not None else bodies, next(turns))
            result = asyncio.run(
                post_loop(
                    [target.url],
                    source,
                    [target.headers],
                    clients=args.clients,
                    seconds=seconds,
                    items_per_body=per_body,
                    ok=lambda r: r.status_code in target.ok,
                    server_pids=[target.pid],
                )
            )
            if limit is None:
                target.side.rounds.append(result)

        for target in targets:  # warm-up (connections, caches, first pages), not measured
            turn(target, 30.0, limit=warmup)
        for _ in range(args.rounds):
            for target in targets:
                turn(target, args.seconds)

        print(
            f"clients={args.clients} events/request={per_body} rounds={args.rounds} "
            f"seconds<={args.seconds} per turn, cpus={os.cpu_count()}"
        )
        print_table([t.side for t in targets], bare.side, "events")
        from chainsync.ops_store.events import count_events

        for target, (name, _) in zip(targets, stores, strict=False):
            stored = count_events(engines[name], "sale")
            acknowledged = target.side.summary()["items"] + warmup * per_body
            assert stored == acknowledged, (name, stored, acknowledged)
            print(f"{target.side.name} stored {stored} events = every acknowledged event (incl. warm-up)")
        for target in targets[:-1]:
            ratio = target.side.summary()["items_per_s"] / bare.side.summary()["items_per_s"]
            print(f"ratio {target.side.name}/bare = {ratio:.2f}")
        for engine in engines.values():
            engine.dispose()


if __name__ == "__main__":
    main()

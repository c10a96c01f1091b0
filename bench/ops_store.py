"""Figures for docs/ops-store.md: the live sales figure, the PostgreSQL inbox batch insert, and the cost of
a PostgreSQL database per test. Each comparison alternates its two sides (ABAB) and prints medians.

    uv run --frozen python bench/ops_store.py [--sales 20000] [--rounds 5] [--pg-url URL]

Needs PostgreSQL (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); creates and drops
its own databases, named ``chainsync_bench_<pid>_…``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, insert, select  # noqa: E402

from api.queries.sales import sales_today  # noqa: E402
from chainsync.ops_store import make_engine, migrate  # noqa: E402
from chainsync.ops_store.catalog import upsert_stores  # noqa: E402
from chainsync.ops_store.events import InboxRow, append_events  # noqa: E402
from chainsync.ops_store.tables import event_inbox  # noqa: E402
from chainsync.schemas.events import SaleEvent, SaleLine  # noqa: E402
from tests.services import PostgresDatabases  # noqa: E402

STORES = [f"S{i:02d}" for i in range(1, 11)]


def sales(n: int, now: datetime) -> list[InboxRow]:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = max(1.0, (now - start).total_seconds() - 1)
    return [
        InboxRow.from_event(
            SaleEvent(
                event_id=uuid.uuid4(),
                occurred_at=start + timedelta(seconds=span * i / n),
                store_id=STORES[i % len(STORES)],
                device_id="T1",
                transaction_id=f"T{i}",
                kind="sale" if i % 20 else "refund",
                cashier_id="C1",
                payment_type="card",
                lines=[
                    SaleLine(
                        product_id=f"P{k:03d}", quantity=1 + k, unit_price_cents=199 + k, discount_cents=0
                    )
                    for k in range(3)
                ],
            )
        )
        for i in range(n)
    ]


def reparse_today(engine: Engine, now: datetime) -> dict[str, int]:
    """The figure as it was computed before ``live_store_sales``: every payload of the day parsed (UTC
    stores here, so one day boundary)."""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    net: dict[str, int] = dict.fromkeys(STORES, 0)
    stmt = select(event_inbox.c.store_id, event_inbox.c.payload).where(
        event_inbox.c.event_type == "sale", event_inbox.c.occurred_at >= start
    )
    with engine.connect() as conn:
        for store_id, payload in conn.execute(stmt):
            net[store_id] += SaleEvent.model_validate_json(payload).signed_totals()[1]
    return net


def abab(a: Callable[[], Any], b: Callable[[], Any], rounds: int) -> tuple[float, float]:
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def seed(engine: Engine, rows: list[InboxRow]) -> None:
    upsert_stores(
        engine,
        [
            {"store_id": s, "name": s, "region": "R", "city": "C", "opened_on": None, "timezone": "UTC"}
            for s in STORES
        ],
    )
    for i in range(0, len(rows), 5_000):
        append_events(engine, rows[i : i + 5_000])


def bench_sales_today(engines: Iterable[tuple[str, Engine]], n: int, rounds: int) -> None:
    print(f"\nGET /api/sales/today's query, {n:,} sales today in {len(STORES)} stores (median of {rounds})")
    now = datetime.now(UTC)
    rows = sales(n, now)
    for name, engine in engines:
        seed(engine, rows)
        new = sales_today(engine, None, now=now)
        old = reparse_today(engine, now)
        assert {s["store_id"]: s["net_revenue_cents"] for s in new["stores"]} == old, "figures differ"
        t_old, t_new = abab(
            lambda e=engine: reparse_today(e, now), lambda e=engine: sales_today(e, None, now=now), rounds
        )
        print(
            f"  {name:10} re-parse every payload {t_old * 1000:9.1f} ms"
            f"   live_store_sales {t_new * 1000:7.2f} ms"
        )


def row_by_row_pg(engine: Engine, rows: list[InboxRow]) -> None:
    """The SQLite algorithm on PostgreSQL (for comparison only): look the ids up, number after max(seq),
    one executemany of single-row INSERTs, under the same lock."""
    from chainsync.ops_store import cursor_locks

    now = datetime.now(UTC)
    with engine.begin() as conn:
        cursor_locks.hold(conn, cursor_locks.INBOX)
        ids = [r.event_id for r in rows]
        known = set(
            conn.execute(select(event_inbox.c.event_id).where(event_inbox.c.event_id.in_(ids))).scalars()
        )
        seq = (
            conn.execute(select(event_inbox.c.seq).order_by(event_inbox.c.seq.desc()).limit(1)).scalar() or 0
        )
        values = []
        for r in rows:
            if r.event_id in known:
                continue
            seq += 1
            values.append(
                {
                    "event_id": r.event_id,
                    "seq": seq,
                    "event_type": r.event_type,
                    "store_id": r.store_id,
                    "device_id": r.device_id,
                    "occurred_at": r.occurred_at,
                    "received_at": now,
                    "payload": r.payload,
                }
            )
        conn.execute(insert(event_inbox), values)


def bench_pg_append(engine: Engine, batch: int, rounds: int) -> None:
    print(f"\nPostgreSQL inbox append, batches of {batch:,} sales (median of {rounds}, events/s)")
    # Inventory events: the same inbox insert without the live-sales upsert, to compare the inserts alone.
    now = datetime.now(UTC)

    def rows() -> list[InboxRow]:
        return [InboxRow(str(uuid.uuid4()), "inventory", "S01", "T1", now, '{"x": 1}') for _ in range(batch)]

    t_one, t_rows = abab(lambda: append_events(engine, rows()), lambda: row_by_row_pg(engine, rows()), rounds)
    print(
        f"  one INSERT … unnest: {batch / t_one:10,.0f}/s"
        f"   row by row (executemany): {batch / t_rows:10,.0f}/s"
    )


def bench_test_database(dbs: PostgresDatabases, template: str, rounds: int) -> None:
    print(f"\nA fresh migrated ops store per test (median of {rounds})")

    def pg() -> None:
        dbs.drop(dbs.create(template=template))

    def sqlite() -> None:
        with tempfile.TemporaryDirectory() as d:
            engine = make_engine(f"sqlite:///{d}/ops.sqlite")
            migrate(engine)
            engine.dispose()

    t_pg, t_sqlite = abab(pg, sqlite, rounds)
    print(
        f"  PostgreSQL CREATE DATABASE … TEMPLATE + DROP {t_pg * 1000:7.1f} ms"
        f"   SQLite file + migrations {t_sqlite * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args()

    dbs = PostgresDatabases()
    dbs.prefix = dbs.prefix.replace("chainsync_test_", "chainsync_bench_")
    try:
        template = dbs.create()
        engine = make_engine(dbs.url(template))
        migrate(engine)
        engine.dispose()
        pg = make_engine(dbs.url(dbs.create(template=template)))
        with tempfile.TemporaryDirectory() as d:
            lite = make_engine(f"sqlite:///{d}/ops.sqlite")
            migrate(lite)
            bench_sales_today([("SQLite", lite), ("PostgreSQL", pg)], args.sales, args.rounds)
            lite.dispose()
        bench_pg_append(pg, args.batch, args.rounds)
        pg.dispose()
        bench_test_database(dbs, template, args.rounds)
    finally:
        dbs.close()


if __name__ == "__main__":
    main()

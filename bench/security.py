"""Security benchmark: the cost of what the firewall and the risk engine add.

    uv run python bench/security.py                  # 2,000 and 100,000 reputations, 1,000-event body
    uv run python bench/security.py --rows 2000 --calls 50

1. The re-read every API process makes of ``ip_reputation`` (``reputations_to_sync``: blocks in force plus
   rows written since the last read), timed with migration 0006's indexes and with them dropped, on a real
   SQLite file holding a 90-day history in which 10 % of the addresses were once blocked; then pruning that
   history (``prune_reputations`` at the default retention): rows left and seconds.
2. The injection/XSS scan of a 1,000-event JSON batch (``suspicious_body``), clean and with escapes, beside
   ``json.loads`` of the same bytes (which the route does anyway).
Ratios are what to compare; the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.security.scanner import suspicious_body
from chainsync.ops_store.engine import make_engine, migrate  # noqa: E402
from chainsync.ops_store.reputation import ReputationRetention, prune_reputations, reputations_to_sync
from chainsync.ops_store.tables import ip_reputation  # noqa: E402
from chainsync.settings import Settings  # noqa: E402

INDEXES = {
    "ix_ip_reputation_blocked_until": "blocked_until",
    "ix_ip_reputation_updated_at": "updated_at",
}


def _history(rows: int, now: datetime, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        seen = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
        banned = rng.random() < 0.10
        out.append(
            {
                "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                "score": rng.uniform(0.5, 12.0),
                "score_at": seen.replace(tzinfo=None),
                "ban_count": rng.randint(1, 3) if banned else 0,
                "blocked_until": (seen + timedelta(hours=1)).replace(tzinfo=None) if banned else None,
                "last_reason": "login_failure",
                "updated_at": seen.replace(tzinfo=None),
            }
        )
    return out


def _time_reread(engine, now: datetime, calls: int) -> float:  # type: ignore[no-untyped-def]
    since = now - timedelta(seconds=7)  # a 2 s re-read interval plus the 5 s overlap
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        reputations_to_sync(engine, since, now)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def bench_reputations(rows: int, calls: int) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/ops.sqlite")
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(insert(ip_reputation), _history(rows, now))
        indexed = _time_reread(engine, now, calls)
        with engine.begin() as conn:
            for name in INDEXES:
                conn.execute(text(f"drop index {name}"))
        bare = _time_reread(engine, now, calls)
        with engine.begin() as conn:
            for name, column in INDEXES.items():
                conn.execute(text(f"create index {name} on ip_reputation ({column})"))
        keep = ReputationRetention.from_settings(Settings(jwt_secret="bench-only-secret-0123456789abcdef"))
        start = time.perf_counter()
        deleted = prune_reputations(engine, now, keep)
        pruned_s = time.perf_counter() - start
        after = _time_reread(engine, now, calls)
        engine.dispose()
    print(
        f"ip_reputation {rows:>7,} rows: re-read without indexes {bare:7.2f} ms, with {indexed:6.2f} ms "
        f"(x{bare / indexed:.1f}); prune deleted {deleted:,} in {pruned_s:.2f} s, left {rows - deleted:,}, "
        f"re-read then {after:.2f} ms"
    )


def bench_body_scan(events: int, repeats: int) -> None:
    rng = random.Random(3)
    batch = [
        {
            "event_id": f"e{i:08d}",
            "store_id": "S001",
            "device_id": "S001-T01",
            "occurred_at": "2026-11-27T10:00:00+00:00",
            "lines": [
                {
                    "product_id": f"P{rng.randint(1, 150):04d}",
                    "quantity": rng.randint(1, 4),
                    "unit_cents": 199,
                }
                for _ in range(3)
            ],
            "note": "Union Jack Select Tea, 2 for 1",
        }
        for i in range(events)
    ]
    clean = json.dumps(batch).encode()
    escaped = json.dumps([{**e, "note": "caf\u00e9 \u2013 \u00bd price"} for e in batch]).encode()
    for label, body in (("clean", clean), ("with escapes", escaped)):
        assert suspicious_body(body, "application/json") is None, label
        scan = statistics.median(_timed(lambda b=body: suspicious_body(b, "application/json"), repeats))
        parse = statistics.median(_timed(lambda b=body: json.loads(b), repeats))
        print(
            f"body scan, {events:,} events ({len(body) / 1024:.0f} KiB, {label}): {scan * 1000:.2f} ms; "
            f"json.loads {parse * 1000:.2f} ms; scan / parse x{scan / parse:.2f}"
        )


def _timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 100_000])
    parser.add_argument("--calls", type=int, default=300, help="re-reads timed per configuration")
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for rows in args.rows:
        bench_reputations(rows, args.calls)
    bench_body_scan(args.events, args.repeats)


if __name__ == "__main__":
    main()

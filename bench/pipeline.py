"""Benchmark the pipeline: a full materialization on ~1 million sale lines, then an incremental run after
1 % more sale events arrive, then a run with nothing new.

    uv run python bench/pipeline.py                       # 10 stores x 150 products x 540 days (~1M lines)
    uv run python bench/pipeline.py --days 120 --keep     # smaller; keep the data directory

Prints one row per stage with seconds and rows/s. Uses its own data directory (default: a temporary one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")

import duckdb  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import select  # noqa: E402

from chainsync.ops_store import get_engine  # noqa: E402
from chainsync.ops_store.events import InboxRow, append_events  # noqa: E402
from chainsync.ops_store.tables import event_inbox  # noqa: E402
from chainsync.settings import Settings  # noqa: E402

END = date(2026, 10, 31)


def more_sales(engine, fraction: float, seed: int = 1) -> tuple[list[InboxRow], int]:  # type: ignore[no-untyped-def]
    """New sale events: a random ``fraction`` of the stored ones, re-keyed and moved to the days after the
    history (tomorrow's trade looks like a sample of the past). Returns (rows, sale lines)."""
    rng = random.Random(seed)
    with engine.connect() as conn:
        payloads = list(
            conn.execute(select(event_inbox.c.payload).where(event_inbox.c.event_type == "sale")).scalars()
        )
    sample = rng.sample(payloads, max(1, int(len(payloads) * fraction)))
    rows, lines = [], 0
    for text in sample:
        event = json.loads(text)
        occurred = datetime.fromisoformat(event["occurred_at"])
        shifted = datetime.combine(END + timedelta(days=rng.randint(1, 3)), occurred.timetz())
        event["event_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        event["transaction_id"] = f"{event['transaction_id']}-b{rng.randint(0, 10**6)}"[:64]
        event["occurred_at"] = shifted.isoformat()
        lines += len(event["lines"])
        rows.append(
            InboxRow(
                event["event_id"], "sale", event["store_id"], event["device_id"], shifted, json.dumps(event)
            )
        )
    return rows, lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=150)
    parser.add_argument("--days", type=int, default=540)
    parser.add_argument("--increment", type=float, default=0.01, help="fraction of sale events to add")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()

    from chainsync import importer
    from chainsync.generator import generate_chain
    from pipelines.run import run_pipeline

    console = Console()
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="chainsync-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=root / "data")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = get_engine(settings.ops_store)
    rows: list[tuple[str, float, int, str]] = []

    t0 = time.perf_counter()
    generate_chain(root / "chain", stores=args.stores, products=args.products, days=args.days, end=END)
    summary = importer.import_generated(engine, root / "chain")
    rows.append(("generate + import", time.perf_counter() - t0, summary.events, "events"))

    def run(stage: str) -> None:
        result = run_pipeline(settings, console=console)
        if not result.success:
            raise SystemExit(f"{stage}: pipeline failed")
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            lines = con.execute("select count(*) from raw.sale_lines").fetchone()[0]  # type: ignore[index]
        landed = int(result.metadata.get("raw_sales_events", {}).get("sale_lines_landed", 0))
        rows.append((stage, result.seconds, landed, f"sale lines landed ({lines:,} in warehouse)"))

    run("full materialization")
    new_rows, new_lines = more_sales(engine, args.increment)
    append_events(
        engine, new_rows, received_at=datetime.combine(END + timedelta(days=4), datetime.min.time(), UTC)
    )
    console.print(f"appended {len(new_rows):,} sale events ({new_lines:,} lines)")
    run(f"incremental (+{args.increment:.0%} sale events)")
    run("no new events")

    table = Table(
        title=f"pipeline benchmark: {args.stores} stores x {args.products} products x {args.days} days"
    )
    for column in ("stage", "seconds", "rows", "rows/s", "what"):
        table.add_column(column, justify="right" if column in ("seconds", "rows", "rows/s") else "left")
    for stage, seconds, count, what in rows:
        table.add_row(
            stage, f"{seconds:.1f}", f"{count:,}", f"{count / seconds:,.0f}" if seconds else "-", what
        )
    console.print(table)
    if not args.keep and args.data_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        console.print(f"data kept in {root}")


if __name__ == "__main__":
    main()

"""The real thing: ``chainsync api`` under uvicorn, SIGKILLed while simulated terminals upload, then
restarted; the terminals keep retrying with the same mutation ids. Every sale they rang up is stored
exactly once, and the warehouse built from the ops store holds the same totals as the terminals sold."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from chainsync.ops_store import get_engine
from chainsync.ops_store.catalog import upsert_products, upsert_stores
from chainsync.ops_store.tables import event_inbox
from chainsync.ops_store.users import create_device_key
from chainsync.sync.simulator import SimulationConfig, SimulationReport, run_simulation
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy

TERMINALS = 4


def _net_cents(payload: dict[str, Any]) -> int:
    return sum(
        line["quantity"] * line["unit_price_cents"] - line["discount_cents"] for line in payload["lines"]
    )


@pytest.mark.slow
def test_no_sale_lost_or_doubled_across_sigkill(settings, data_dir) -> None:  # type: ignore[no-untyped-def]
    engine = get_engine(settings.ops_store)
    upsert_stores(
        engine,
        [{"store_id": "S001", "name": "Main St", "region": "North", "city": "Leeds", "opened_on": None}],
    )
    upsert_products(
        engine,
        [
            {
                "product_id": f"P{i:03d}",
                "name": f"Product {i}",
                "category": "grocery",
                "unit_cost_cents": 50 + i,
                "price_cents": 99 + 10 * i,
                "lead_time_days": 5,
                "is_active": True,
            }
            for i in range(1, 21)
        ],
    )
    keys = [
        (f"POS-{i:02d}", create_device_key(engine, "S001", f"POS-{i:02d}")) for i in range(1, TERMINALS + 1)
    ]
    port = free_port()
    env = api_env(data_dir, settings.jwt_key())
    base = f"http://127.0.0.1:{port}"
    config = SimulationConfig(
        api=base,
        store_id="S001",
        keys=keys,
        sales_per_terminal=80,
        batch_size=10,
        offline_rate=0.05,
        offline_sales=(3, 15),
        duplicate_rate=0.2,
        edit_rate=0.02,
        bad_rate=0.02,
        max_skew_seconds=600,
        deadline_seconds=45,
        pace_seconds=0.01,
        timeout_seconds=3,
    )
    reports: list[SimulationReport] = []
    proc = start_api(port, env)
    try:
        wait_healthy(base, proc)
        sim = threading.Thread(target=lambda: reports.append(run_simulation(config)))
        sim.start()
        # Kill the server once uploads are flowing, leave it down a moment, bring it back.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                stored = conn.execute(
                    select(event_inbox.c.event_id).where(event_inbox.c.event_type == "sale").limit(80)
                ).all()
            if len(stored) >= 80:
                break
            time.sleep(0.05)
        stop_api(proc, signal.SIGKILL)
        time.sleep(1.0)
        proc = start_api(port, env)
        wait_healthy(base, proc)
        sim.join(timeout=90)
        assert not sim.is_alive()
    finally:
        stop_api(proc, signal.SIGKILL)

    (report,) = reports
    t_sim = time.monotonic()
    summary = report.summary()
    print(json.dumps(summary))
    assert summary["retries"] > 0, "the kill should have made terminals retry"
    assert summary["duplicates_sent"] > 0 and summary["item_statuses"].get("duplicate", 0) > 0
    assert summary["item_statuses"].get("rejected", 0) > 0  # the malformed items, dead-lettered
    assert summary["sales_unacknowledged"] == 0, summary

    sold = {e: cents for t in report.terminals for e, cents in t.sold.items()}
    acknowledged = {e for t in report.terminals for e in t.acknowledged}
    assert acknowledged == set(sold)
    with engine.connect() as conn:
        rows = conn.execute(
            select(event_inbox.c.event_id, event_inbox.c.payload).where(event_inbox.c.event_type == "sale")
        ).all()
    stored_ids = [r.event_id for r in rows]
    assert len(stored_ids) == len(set(stored_ids))  # exactly once
    assert set(stored_ids) == set(sold)  # none lost, nothing extra (rejected items never stored)
    assert sum(_net_cents(json.loads(r.payload)) for r in rows) == sum(sold.values())

    # On into the warehouse: the pipeline's sales and sync sessions agree with the terminals.
    import duckdb

    from pipelines.run import run_pipeline

    result = run_pipeline(
        settings,
        selection="key:raw_stores,key:raw_products,key:raw_sales_events,key:raw_sync_events,"
        "key:stg_pos__sale_lines,"
        "key:stg_pos__sync_sessions,key:fct_sync_sessions",
    )
    assert result.success, result
    print(f"simulated in {report.seconds:.1f}s; pipeline slice in {time.monotonic() - t_sim:.1f}s")
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        schemas = dict(
            con.execute("select table_name, table_schema from information_schema.tables").fetchall()
        )
        lines = f"{schemas['stg_pos__sale_lines']}.stg_pos__sale_lines"
        sessions = f"{schemas['fct_sync_sessions']}.fct_sync_sessions"
        n_sales, net = con.execute(
            f"select count(distinct event_id), sum(quantity * unit_price_cents - discount_cents) from {lines}"
        ).fetchone()
        applied, rejected = con.execute(
            f"select sum(items_applied), sum(items_rejected) from {sessions}"
        ).fetchone()
    assert n_sales == len(sold) and net == sum(sold.values())
    # One session per acknowledged batch (a retried batch is the same session): every sale applied once,
    # every malformed item rejected once.
    assert applied >= len(sold)
    assert rejected == summary["item_statuses"]["rejected"]

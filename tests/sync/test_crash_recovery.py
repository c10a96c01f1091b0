"""The real thing: two ``chainsync api`` processes under uvicorn on one ops store (SQLite file or
PostgreSQL database), half the simulated terminals on each; one process is SIGKILLed while they upload,
then restarted, and its terminals keep retrying with the same mutation ids while the other process carries
on. Every sale the terminals rang up is stored exactly once, and the warehouse built from the ops store
holds the same totals as the terminals sold."""

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
from tests.live_api import api_env, free_port, start_api, stop_api, wait_healthy
from tools.simulator import SimulationConfig, SimulationReport, run_simulation

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
    env = api_env(data_dir, settings.jwt_key())
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    half = TERMINALS // 2
    configs = [
        SimulationConfig(
            api=base,
            store_id="S001",
            keys=terminal_keys,
            sales_per_terminal=80,
            batch_size=10,
            offline_rate=0.05,
            offline_sales=(3, 15),
            duplicate_rate=0.2,
            edit_rate=0.02,
            bad_rate=0.02,
            max_skew_seconds=600,
            deadline_seconds=90,
            pace_seconds=0.04,  # slow enough that the second process's terminals outlast the kill
            timeout_seconds=3,
            seed=7 + i,
        )
        for i, (base, terminal_keys) in enumerate(zip(bases, (keys[:half], keys[half:]), strict=True))
    ]
    reports: list[SimulationReport] = []
    procs = [start_api(port, env) for port in ports]
    try:
        for base, proc in zip(bases, procs, strict=True):
            wait_healthy(base, proc, deadline_s=120)
        sims = [threading.Thread(target=lambda c=c: reports.append(run_simulation(c))) for c in configs]
        sims_started = time.monotonic()
        for sim in sims:
            sim.start()
        # Kill the first server once uploads are flowing, leave it down a moment, bring it back; the
        # second serves its terminals all along.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                stored = conn.execute(
                    select(event_inbox.c.event_id).where(event_inbox.c.event_type == "sale").limit(80)
                ).all()
            if len(stored) >= 80:
                break
            time.sleep(0.05)
        stop_api(procs[0], signal.SIGKILL)
        killed_after = time.monotonic() - sims_started
        time.sleep(1.0)
        procs[0] = start_api(ports[0], env)
        wait_healthy(bases[0], procs[0], deadline_s=120)
        for sim in sims:
            sim.join(timeout=150)
        assert not any(sim.is_alive() for sim in sims)
    finally:
        for proc in procs:
            stop_api(proc, signal.SIGKILL)

    assert len(reports) == 2
    t_sim = time.monotonic()
    summaries = [report.summary() for report in reports]
    print(json.dumps(summaries))
    killed, kept = summaries
    if reports[0].terminals[0].device_id != keys[0][0]:  # the threads may have finished in either order
        killed, kept = kept, killed
    assert killed["retries"] > 0, "the kill should have made the first process's terminals retry"
    assert kept["seconds"] > killed_after, "the second process's terminals should outlast the kill"
    for summary in summaries:
        assert summary["sales_unacknowledged"] == 0, summary
    assert sum(s["duplicates_sent"] for s in summaries) > 0
    assert sum(s["item_statuses"].get("duplicate", 0) for s in summaries) > 0
    rejected_sent = sum(s["item_statuses"].get("rejected", 0) for s in summaries)
    assert rejected_sent > 0  # the malformed items, dead-lettered

    terminals = [t for report in reports for t in report.terminals]
    sold = {e: cents for t in terminals for e, cents in t.sold.items()}
    acknowledged = {e for t in terminals for e in t.acknowledged}
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
    print(f"pipeline slice in {time.monotonic() - t_sim:.1f}s")
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
    assert rejected == rejected_sent

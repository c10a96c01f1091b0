"""The real thing: ``chainsync api`` under uvicorn on loopback, killed with SIGKILL mid-ingest; every
event it acknowledged must be in the SQLite file."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
from sqlalchemy import select

from chainsync.ops_store import get_engine
from chainsync.ops_store.tables import event_inbox
from chainsync.ops_store.users import create_device_key
from tests.api.conftest import sale_event
from tests.live_api import api_env, free_port, start_api, wait_healthy


def test_acknowledged_events_survive_sigkill(settings, data_dir) -> None:
    engine = get_engine(settings.ops_store)
    key = create_device_key(engine, "S001", "POS-01")
    port = free_port()
    proc = start_api(port, api_env(data_dir, settings.jwt_key()))
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    stop = threading.Event()

    def post_batches() -> None:
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=5.0) as http:
            while not stop.is_set():
                batch = [sale_event() for _ in range(50)]
                try:
                    resp = http.post("/api/events/sales", json={"events": batch})
                except httpx.TransportError:
                    return  # the server is gone: whatever was not acknowledged may be lost
                assert resp.status_code == 200
                acknowledged.extend(r["event_id"] for r in resp.json()["results"] if r["status"] == "applied")

    try:
        wait_healthy(base, proc)
        # One batch acknowledged before the crash, for certain.
        first = httpx.post(
            f"{base}/api/events/sales",
            json={"events": [sale_event() for _ in range(20)]},
            headers={"X-API-Key": key},
            timeout=5.0,
        )
        assert first.status_code == 200 and first.json()["applied"] == 20
        acknowledged.extend(r["event_id"] for r in first.json()["results"])

        writers = [threading.Thread(target=post_batches) for _ in range(3)]
        for w in writers:
            w.start()
        deadline = time.monotonic() + 10
        while len(acknowledged) < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for w in writers:
            w.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    with engine.connect() as conn:
        stored = set(conn.execute(select(event_inbox.c.event_id)).scalars())
    assert len(acknowledged) >= 20
    missing = [e for e in acknowledged if e not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events lost"
    print(f"acknowledged={len(acknowledged)} stored={len(stored)}")

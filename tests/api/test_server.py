"""The real thing: two ``chainsync api`` processes under uvicorn on loopback sharing one ops store (a SQLite
file, or a PostgreSQL database), one of them killed with SIGKILL mid-ingest. Every event either process
acknowledged must be stored exactly once, including the batches that were in flight on the killed one and
were sent again, with the same event ids, to the survivor."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from chainsync.ops_store import get_engine
from chainsync.ops_store.tables import event_inbox
from chainsync.ops_store.users import create_device_key
from tests.api.conftest import sale_event
from tests.live_api import api_env, free_port, start_api, wait_healthy


@pytest.mark.parametrize("ops_backend", ["sqlite", "postgresql"], indirect=True)
def test_acknowledged_events_survive_sigkill_of_one_of_two_processes(settings, data_dir) -> None:
    engine = get_engine(settings.ops_store)
    key = create_device_key(engine, "S001", "POS-01")
    env = api_env(data_dir, settings.jwt_key())
    ports = [free_port(), free_port()]
    procs = [start_api(port, env) for port in ports]
    victim, survivor = (f"http://127.0.0.1:{p}" for p in ports)
    acknowledged: list[str] = []
    resent = {"batches": 0, "applied": 0, "duplicate": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def post_batches(base: str) -> None:
        """Post batches to ``base``; when it is gone, send the batch in flight to the survivor (the
        client's retry, same ids) and carry on there."""
        headers = {"X-API-Key": key}
        while not stop.is_set():
            batch = [sale_event() for _ in range(50)]
            try:
                resp = httpx.post(
                    f"{base}/api/events/sales", json={"events": batch}, headers=headers, timeout=10
                )
            except httpx.TransportError:
                if base == survivor:
                    return
                base = survivor
                resp = httpx.post(
                    f"{base}/api/events/sales", json={"events": batch}, headers=headers, timeout=10
                )
                body = resp.json()
                with lock:
                    resent["batches"] += 1
                    resent["applied"] += body["applied"]
                    resent["duplicate"] += body["duplicate"]
            assert resp.status_code == 200, resp.text
            with lock:
                acknowledged.extend(
                    r["event_id"] for r in resp.json()["results"] if r["status"] in ("applied", "duplicate")
                )

    try:
        for base, proc in zip((victim, survivor), procs, strict=True):
            wait_healthy(base, proc, deadline_s=120)
        writers = [threading.Thread(target=post_batches, args=(b,)) for b in (victim, victim, survivor)]
        for w in writers:
            w.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 600 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=10)
        after_kill = len(acknowledged)
        while len(acknowledged) < after_kill + 300 and time.monotonic() < deadline + 30:
            time.sleep(0.02)  # the survivor keeps acknowledging, the victim's clients among them
        stop.set()
        for w in writers:
            w.join(timeout=30)
        assert not any(w.is_alive() for w in writers)
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    with engine.connect() as conn:
        stored = list(conn.execute(select(event_inbox.c.event_id)).scalars())
        max_seq = conn.execute(select(func.max(event_inbox.c.seq))).scalar_one()
    assert len(acknowledged) >= after_kill + 300, "the survivor should have carried on after the kill"
    assert resent["batches"] == 2, resent  # each of the victim's two clients had one batch in flight
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} of {len(set(acknowledged))} acknowledged events lost"
    assert len(stored) == len(set(stored)) == max_seq  # exactly once, and seq has no gap
    print(f"acknowledged={len(set(acknowledged))} stored={len(stored)} resent={resent}")

"""chainsync/ops_store/sync/uploads.py: a group commit applies several uploads in bulk, with the answers
they would get one after the other (a retry of a batch still queued behind the first is answered as a
replay)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from api.plausibility import TimeWindow
from api.sync.upload import prepare_items
from chainsync.ops_store import get_engine
from chainsync.ops_store.sync.uploads import BatchMeta, UploadJob, apply_uploads
from chainsync.ops_store.tables import event_inbox, sync_dead_letters, sync_devices, sync_mutations
from chainsync.settings import Settings

pytestmark = pytest.mark.parametrize("ops_backend", ["sqlite", "postgresql"], indirect=True)

NOW = datetime.now(UTC).replace(microsecond=0)
ANY_TIME = TimeWindow(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def _sale_item(device: str, n: int, **payload: object) -> dict[str, object]:
    eid = str(uuid.uuid4())
    return {
        "mutation_id": f"m-{eid}",
        "type": "sale",
        "payload": {
            "event_id": eid,
            "occurred_at": NOW.isoformat(),
            "store_id": "S001",
            "device_id": device,
            "transaction_id": f"T{n}",
            "kind": "sale",
            "cashier_id": "C01",
            "payment_type": "card",
            "lines": [{"product_id": "P001", "quantity": 1, "unit_price_cents": 100, "discount_cents": 0}],
            **payload,
        },
    }


def _job(device: str, batch: str, items: list[dict[str, object]]) -> UploadJob:
    prepared = prepare_items(items, store_id="S001", device_id=device, window=ANY_TIME)
    meta = BatchMeta("S001", device, batch, NOW, None, 0, f"device:S001/{device}")
    return UploadJob(meta, prepared, received_at=NOW, started=time.perf_counter())


def test_a_group_answers_as_if_one_after_the_other(settings: Settings) -> None:
    engine = get_engine(settings.ops_store)
    first = [_sale_item("POS-01", i) for i in range(3)]
    bad = _sale_item("POS-01", 9, kind="theft")
    other = [_sale_item("POS-02", i) for i in range(2)]
    jobs = [
        _job("POS-01", "B1", [*first, bad]),
        _job("POS-02", "B2", other),
        _job("POS-01", "B1-retry", [*first, bad]),  # a retry queued behind the first
    ]
    one, two, retry = apply_uploads(engine, jobs)
    assert [r["status"] for r in one.results] == ["applied"] * 3 + ["rejected"]
    assert one.counts == {"applied": 3, "duplicate": 0, "rejected": 1, "conflict": 0}
    assert two.counts["applied"] == 2
    assert [r["status"] for r in retry.results] == ["duplicate"] * 3 + ["rejected"]
    assert retry.results[3].get("replayed") is True
    assert [r["event_id"] for r in retry.results[:3]] == [r["event_id"] for r in one.results[:3]]

    # The same retry in a later group gets the same answers from the stored mutation log.
    (later,) = apply_uploads(engine, [_job("POS-01", "B1-again", [*first, bad])])
    assert [(r["status"], r.get("event_id")) for r in later.results] == [
        (r["status"], r.get("event_id")) for r in retry.results
    ]

    with engine.connect() as conn:
        sales = conn.execute(select(func.count()).where(event_inbox.c.event_type == "sale")).scalar_one()
        syncs = conn.execute(select(func.count()).where(event_inbox.c.event_type == "sync")).scalar_one()
        mutations = conn.execute(select(func.count()).select_from(sync_mutations)).scalar_one()
        dead = conn.execute(select(func.count()).select_from(sync_dead_letters)).scalar_one()
        applied = dict(conn.execute(select(sync_devices.c.device_id, sync_devices.c.items_applied)).all())
        payloads = [
            json.loads(p)
            for p in conn.execute(
                select(event_inbox.c.payload).where(event_inbox.c.event_type == "sync")
            ).scalars()
        ]
    assert sales == 5  # stored once each
    assert syncs == 4  # one sync event per batch
    assert mutations == 4 + 2  # first-time items only
    assert dead == 1
    assert applied == {"POS-01": 3, "POS-02": 2}
    assert sorted(p["items_applied"] for p in payloads) == [0, 0, 2, 3]

"""The ops store feed for live notifications: security and sync events newer than a watermark."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select

from chainsync.ops_store.events import max_seq
from chainsync.ops_store.tables import event_inbox

FEED_TYPES = ("security", "sync")


def feed_watermark(engine: Engine) -> int:
    """Where the feed starts: the newest seq now (older events are history, not news)."""
    return max_seq(engine)


def events_after(engine: Engine, seq: int, limit: int = 500) -> list[dict[str, Any]]:
    """Security and sync events with ``seq`` above ``seq``, oldest first (the type+seq index serves it):
    ``[{"seq", "event_type", "store_id", "payload": {...}}]``."""
    stmt = (
        select(event_inbox.c.seq, event_inbox.c.event_type, event_inbox.c.store_id, event_inbox.c.payload)
        .where(event_inbox.c.event_type.in_(FEED_TYPES), event_inbox.c.seq > seq)
        .order_by(event_inbox.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        {"seq": r.seq, "event_type": r.event_type, "store_id": r.store_id, "payload": json.loads(r.payload)}
        for r in rows
    ]

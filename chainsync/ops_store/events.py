"""The event inbox: append events exactly once, read them back by watermark."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection, Engine, func, insert, select

from chainsync.ops_store.tables import event_inbox
from chainsync.schemas.events import EventBase

ItemStatus = Literal["applied", "duplicate"]


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One event as stored: identity columns plus the event's JSON payload."""

    event_id: str
    event_type: str
    store_id: str | None
    device_id: str | None
    occurred_at: datetime
    payload: str

    @classmethod
    def from_event(cls, event: EventBase) -> InboxRow:
        return cls(
            event_id=str(event.event_id),
            event_type=event.event_type,
            store_id=event.store_id,
            device_id=event.device_id,
            occurred_at=event.occurred_at,
            payload=event.payload_json(),
        )


def _utc_naive(ts: datetime) -> datetime:
    # Stored as UTC wall time: SQLite has no timezone type and PostgreSQL converts on the way in.
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def append_in_transaction(
    conn: Connection, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[ItemStatus]:
    """Append ``rows`` inside the caller's (write-locked) transaction.

    Returns one status per row, in order: ``applied`` for a new ``event_id``, ``duplicate`` for one
    already stored or repeated earlier in the same batch. ``seq`` values are assigned consecutively after
    the current maximum, which is safe because SQLite transactions here start with ``BEGIN IMMEDIATE``.
    """
    if not rows:
        return []
    now = _utc_naive(received_at or datetime.now(UTC))
    ids = [r.event_id for r in rows]
    existing: set[str] = set()
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        existing.update(
            conn.execute(select(event_inbox.c.event_id).where(event_inbox.c.event_id.in_(chunk))).scalars()
        )
    seq: int = conn.execute(select(func.coalesce(func.max(event_inbox.c.seq), 0))).scalar_one()
    statuses: list[ItemStatus] = []
    to_insert: list[dict[str, object]] = []
    for row in rows:
        if row.event_id in existing:
            statuses.append("duplicate")
            continue
        existing.add(row.event_id)
        seq += 1
        to_insert.append(
            {
                "event_id": row.event_id,
                "seq": seq,
                "event_type": row.event_type,
                "store_id": row.store_id,
                "device_id": row.device_id,
                "occurred_at": _utc_naive(row.occurred_at),
                "received_at": now,
                "payload": row.payload,
            }
        )
        statuses.append("applied")
    if to_insert:
        conn.execute(insert(event_inbox), to_insert)
    return statuses


def append_events(
    engine: Engine, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[ItemStatus]:
    """Append ``rows`` in one committed transaction; see :func:`append_in_transaction`.

    When this returns, every ``applied`` row is durable (the transaction has committed)."""
    with engine.begin() as conn:
        return append_in_transaction(conn, rows, received_at=received_at)


def max_seq(engine: Engine, event_type: str | None = None) -> int:
    stmt = select(func.coalesce(func.max(event_inbox.c.seq), 0))
    if event_type is not None:
        stmt = stmt.where(event_inbox.c.event_type == event_type)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def count_events(engine: Engine, event_type: str | None = None) -> int:
    stmt = select(func.count()).select_from(event_inbox)
    if event_type is not None:
        stmt = stmt.where(event_inbox.c.event_type == event_type)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def iter_events_after(
    engine: Engine, event_type: str, after_seq: int, *, chunk_size: int = 50_000
) -> Iterator[list[tuple[str, int, str | None, str | None, datetime, datetime, str]]]:
    """Yield chunks of ``(event_id, seq, store_id, device_id, occurred_at, received_at, payload)`` for
    events of ``event_type`` with ``seq > after_seq``, in ``seq`` order (the pipeline's watermark read)."""
    cols = (
        event_inbox.c.event_id,
        event_inbox.c.seq,
        event_inbox.c.store_id,
        event_inbox.c.device_id,
        event_inbox.c.occurred_at,
        event_inbox.c.received_at,
        event_inbox.c.payload,
    )
    last = after_seq
    while True:
        stmt = (
            select(*cols)
            .where(event_inbox.c.event_type == event_type, event_inbox.c.seq > last)
            .order_by(event_inbox.c.seq)
            .limit(chunk_size)
        )
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(stmt)]
        if not rows:
            return
        yield rows  # type: ignore[misc]
        last = int(rows[-1][1])  # type: ignore[call-overload]
        if len(rows) < chunk_size:
            return

"""The event inbox: append events exactly once, read them back by watermark."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import Connection, Engine, func, select

from chainsync.ops_store import cursor_locks, live_sales
from chainsync.ops_store.tables import event_inbox
from chainsync.ops_store.times import naive
from chainsync.schemas.events import EventBase

ItemStatus = Literal["applied", "duplicate"]


class InboxRow(NamedTuple):
    """One event as stored: identity columns plus the event's JSON payload. A named tuple: the ingest
    path makes one per event (:meth:`chainsync.schemas.wire.WireEvent` has the same fields, in order)."""

    event_id: str
    event_type: str
    store_id: str | None
    device_id: str | None
    occurred_at: datetime
    payload: str
    # The validated event the payload was made from, when there is one (a model, or the wire decoder's
    # object with the same fields): readers of the row inside the ingest transaction (live_sales) use it
    # instead of parsing the payload again. Not stored.
    event: Any = None

    @classmethod
    def from_event(cls, event: EventBase) -> InboxRow:
        return cls(
            str(event.event_id),
            event.event_type,
            event.store_id,
            event.device_id,
            event.occurred_at,
            event.payload_json(),
            event,
        )


_SQLITE_INSERT = (
    "INSERT INTO event_inbox (event_id, seq, event_type, store_id, device_id, occurred_at, received_at, "
    "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _sqlite_datetime(ts: datetime) -> str:
    """A naive UTC datetime as SQLAlchemy's SQLite ``DATETIME`` stores it (microseconds always written,
    so stored values compare as text the same way)."""
    return ts.isoformat(" ", "microseconds")


def append_in_transaction(
    conn: Connection, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[ItemStatus]:
    """Append ``rows`` inside the caller's (write-locked) transaction.

    Returns one status per row, in order: ``applied`` for a new ``event_id``, ``duplicate`` for one
    already stored or repeated earlier in the same batch. ``seq`` values are assigned consecutively after
    the current maximum, which is safe because SQLite transactions here start with ``BEGIN IMMEDIATE``
    (on PostgreSQL see :func:`append_postgresql`).
    """
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        return append_postgresql(conn, rows, received_at=received_at)
    now = naive(received_at or datetime.now(UTC))
    ids = [r.event_id for r in rows]
    existing: set[str] = set()
    # Statements as the driver takes them (SQLAlchemy's compiling of an expanding IN cost more than the
    # lookup): this runs in every ingest transaction.
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        marks = ", ".join("?" * len(chunk))
        found = conn.exec_driver_sql(
            f"SELECT event_id FROM event_inbox WHERE event_id IN ({marks})", tuple(chunk)
        )
        existing.update(str(r[0]) for r in found)
    seq = int(conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM event_inbox").scalar_one())
    statuses: list[ItemStatus] = []
    to_insert: list[tuple[object, ...]] = []
    received = _sqlite_datetime(now)
    for row in rows:
        if row.event_id in existing:
            statuses.append("duplicate")
            continue
        existing.add(row.event_id)
        seq += 1
        to_insert.append(
            (
                row.event_id,
                seq,
                row.event_type,
                row.store_id,
                row.device_id,
                _sqlite_datetime(naive(row.occurred_at)),
                received,
                row.payload,
            )
        )
        statuses.append("applied")
    if to_insert:
        # The driver's executemany with values already in their stored form: SQLAlchemy's per-row
        # parameter processing (a Python call per datetime) cost more than the insert itself.
        conn.exec_driver_sql(_SQLITE_INSERT, to_insert)
    live_sales.add_sales(
        conn, [row for row, status in zip(rows, statuses, strict=True) if status == "applied"]
    )
    return statuses


# One statement per batch: number the rows not stored yet after the current maximum, insert them, and say
# which went in. ``ON CONFLICT`` is a second guard only: under the inbox lock no other writer can insert.
# Sent through psycopg directly with binary parameters: its text form of a ``text[]`` escapes every quote of
# every JSON payload with a regular expression, which cost more than the whole insert.
_PG_APPEND = """
    WITH batch AS (
        SELECT * FROM unnest(
            %(event_id)b::varchar[], %(event_type)b::varchar[], %(store_id)b::varchar[],
            %(device_id)b::varchar[], %(occurred_at)b::timestamptz[], %(payload)b::text[]
        ) WITH ORDINALITY AS b(event_id, event_type, store_id, device_id, occurred_at, payload, ord)
    ), fresh AS (
        SELECT b.*, row_number() OVER (ORDER BY b.ord) AS n FROM batch AS b
        WHERE NOT EXISTS (SELECT 1 FROM event_inbox AS e WHERE e.event_id = b.event_id)
    )
    INSERT INTO event_inbox
        (event_id, seq, event_type, store_id, device_id, occurred_at, received_at, payload)
    SELECT event_id, (SELECT coalesce(max(seq), 0) FROM event_inbox) + n, event_type, store_id, device_id,
           occurred_at, %(received_at)b::timestamptz, payload
    FROM fresh ORDER BY n
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
"""


def _utc_aware(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def append_postgresql(
    conn: Connection, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[ItemStatus]:
    """The PostgreSQL path of :func:`append_in_transaction`: the same statuses and gap-free ``seq``.

    Takes the inbox's commit-order lock (:mod:`chainsync.ops_store.cursor_locks`) before reading the
    maximum ``seq``, so ``seq`` order is commit order and a reader after "the last ``seq`` I saw" never
    skips a late commit; then inserts the whole batch in one ``INSERT … SELECT … FROM unnest(…)``."""
    first: dict[str, InboxRow] = {}
    for row in rows:
        first.setdefault(row.event_id, row)
    batch = list(first.values())
    cursor_locks.hold(conn, cursor_locks.INBOX)
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(
            _PG_APPEND,
            {
                "event_id": [r.event_id for r in batch],
                "event_type": [r.event_type for r in batch],
                "store_id": [r.store_id for r in batch],
                "device_id": [r.device_id for r in batch],
                "occurred_at": [_utc_aware(r.occurred_at) for r in batch],
                "payload": [r.payload for r in batch],
                "received_at": _utc_aware(received_at or datetime.now(UTC)),
            },
        )
        inserted = {row[0] for row in cur.fetchall()}
    live_sales.add_sales(conn, [r for r in batch if r.event_id in inserted])
    statuses: list[ItemStatus] = []
    for row in rows:
        if row.event_id in inserted:
            inserted.discard(row.event_id)  # a repeat later in the batch is a duplicate
            statuses.append("applied")
        else:
            statuses.append("duplicate")
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

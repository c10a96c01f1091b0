"""Bulk reads of the ops store for the pipeline's landing: Arrow record batches, no per-value Python.

:func:`read_events_after` returns what :func:`chainsync.ops_store.events.iter_events_after` returns — the
events of one type with ``seq`` above a watermark, in ``seq`` order, the same seven columns — as
:data:`EVENT_SCHEMA` record batches instead of lists of Python tuples:

- **SQLite**: the raw ``sqlite3`` cursor of a pooled connection, ``fetchmany`` in big chunks, each chunk's
  columns handed to Arrow as they come (the timestamps, stored as text, parsed by Arrow's ISO-8601 cast).
  One deferred read transaction covers the whole read (WAL: it neither waits for nor blocks writers).
- **PostgreSQL**: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` through psycopg, streamed into a temporary file
  and parsed by Arrow's multithreaded CSV reader (timestamps converted to UTC wall time by the query).

The payload stays a JSON string (DuckDB's json parses it on the way into the warehouse).

Selection semantics are exactly the watermark read's: ``event_type = ? AND seq > after_seq ORDER BY seq``.
On PostgreSQL a single ``COPY`` statement reads one snapshot; an event whose transaction has drawn its
``seq`` but not committed is not in it, and — as every writer draws ``seq`` under the inbox's commit-order
lock (:mod:`chainsync.ops_store.cursor_locks`) — no committed event has a higher ``seq`` than it, so a
watermark moved to the last ``seq`` read never passes over a late commit. On SQLite ``seq`` order is
commit order anyway (one writer at a time).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine

EVENT_COLUMNS = ("event_id", "seq", "store_id", "device_id", "occurred_at", "received_at", "payload")
EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("store_id", pa.string()),
        pa.field("device_id", pa.string()),
        pa.field("occurred_at", pa.timestamp("us"), nullable=False),  # naive UTC, as UtcDateTime reads it
        pa.field("received_at", pa.timestamp("us"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)

_SQLITE_SELECT = (
    "SELECT event_id, seq, store_id, device_id, occurred_at, received_at, payload FROM event_inbox"
    " WHERE event_type = ? AND seq > ? ORDER BY seq"
)
# UTC wall time whatever the session's zone; ``seq`` order as the watermark read.
_PG_SELECT = (
    "SELECT event_id, seq, store_id, device_id, occurred_at AT TIME ZONE 'UTC',"
    " received_at AT TIME ZONE 'UTC', payload FROM event_inbox"
    " WHERE event_type = {event_type} AND seq > {after} ORDER BY seq"
)


def read_events_after(
    engine: Engine,
    event_type: str,
    after_seq: int,
    *,
    chunk_rows: int = 50_000,
    temp_dir: Path | str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield :data:`EVENT_SCHEMA` record batches of the events of ``event_type`` with ``seq > after_seq``,
    in ``seq`` order: the rows of ``iter_events_after(engine, event_type, after_seq)``, in bulk.

    ``chunk_rows`` bounds a batch on SQLite (on PostgreSQL the CSV reader's blocks do, about 64 MB of
    text); ``temp_dir`` is where PostgreSQL's COPY output is spooled (default: the system's)."""
    if engine.dialect.name == "sqlite":
        yield from _read_sqlite(engine, event_type, int(after_seq), chunk_rows)
    elif engine.dialect.name == "postgresql":
        yield from _read_postgresql(engine, event_type, int(after_seq), temp_dir)
    else:  # pragma: no cover - the ops store is SQLite or PostgreSQL
        raise NotImplementedError(f"bulk read from {engine.dialect.name}")


# The row tuples as polars reads them (it transposes them in Rust: a tenth of pyarrow's per-object
# conversion of the payload strings); the timestamps stay text until Arrow's ISO-8601 cast.
_SQLITE_ROW_SCHEMA = pl.Schema(
    {
        "event_id": pl.String(),
        "seq": pl.Int64(),
        "store_id": pl.String(),
        "device_id": pl.String(),
        "occurred_at": pl.String(),
        "received_at": pl.String(),
        "payload": pl.String(),
    }
)


def _sqlite_batches(rows: list[tuple[object, ...]]) -> list[pa.RecordBatch]:
    table = pl.DataFrame(rows, schema=_SQLITE_ROW_SCHEMA, orient="row").to_arrow()
    for name in ("occurred_at", "received_at"):
        # Stored by UtcDateTime / the ingest path as 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC).
        column = pc.cast(table[name], pa.string())
        table = table.set_column(
            table.schema.get_field_index(name), name, pc.cast(column, pa.timestamp("us"))
        )
    return table.cast(EVENT_SCHEMA).combine_chunks().to_batches()


def _read_sqlite(
    engine: Engine, event_type: str, after_seq: int, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    raw = engine.raw_connection()  # the pool's connection: its connect hook set WAL, busy timeout, ...
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        # A deferred read transaction (never BEGIN IMMEDIATE: a reader must not queue behind the API's
        # writers): one snapshot for the whole read.
        cur.execute("BEGIN")
        try:
            cur.execute(_SQLITE_SELECT, (event_type, after_seq))
            while rows := cur.fetchmany(chunk_rows):
                yield from _sqlite_batches(rows)
        finally:
            cur.execute("ROLLBACK")
            cur.close()
    finally:
        raw.close()


def _read_postgresql(
    engine: Engine, event_type: str, after_seq: int, temp_dir: Path | str | None
) -> Iterator[pa.RecordBatch]:
    from psycopg import sql

    query = sql.SQL(_PG_SELECT).format(event_type=sql.Literal(event_type), after=sql.Literal(after_seq))
    copy = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
    fd, name = tempfile.mkstemp(prefix="events-", suffix=".csv", dir=temp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            raw = engine.raw_connection()
            try:
                pg = raw.driver_connection
                with pg.cursor() as cur, cur.copy(copy) as stream:  # type: ignore[union-attr]
                    for block in stream:
                        out.write(block)
                pg.rollback()  # type: ignore[union-attr]
            finally:
                raw.close()
        if os.path.getsize(name) == 0:
            return
        reader = pacsv.open_csv(
            name,
            read_options=pacsv.ReadOptions(column_names=list(EVENT_COLUMNS), block_size=64 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=EVENT_SCHEMA,
                # COPY's CSV: NULL is an unquoted empty field, an empty string a quoted one.
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
                timestamp_parsers=[pacsv.ISO8601],
            ),
        )
        for batch in reader:
            if batch.num_rows:
                yield batch.cast(EVENT_SCHEMA)
    finally:
        os.unlink(name)

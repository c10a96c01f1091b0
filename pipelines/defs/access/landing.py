"""The audit trail's data-access records (ops store ``security_audit``, ``action = 'data_access'``) landed
into ``raw.data_access``, incrementally by the audit's ``seq``.

The audit's ``seq`` is drawn under its commit-order lock (``chainsync.ops_store.audit_log.append_audit``:
``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so a record never commits after a higher
one and a watermark cannot skip it. The watermark is kept in ``meta.catalog_state`` (source
``data_access``, the fingerprint being the last landed audit seq), not in ``meta.watermarks``: those are
event-inbox seqs that the new-events sensor compares with the inbox's own, and an audit seq is another
sequence. ``catalog_state`` is part of the dbt build's change fingerprint, so new records rebuild the
access models. The insert and the watermark move share one DuckDB transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, func, select

from chainsync.data_access import ACTION, STORE_IN_DETAIL
from chainsync.ops_store.tables import security_audit
from chainsync.ops_store.times import naive
from pipelines.defs.ingest.warehouse import ensure_schema

SOURCE = "data_access"
CHUNK = 20_000

_COLUMNS = ("seq", "occurred_at", "actor", "role", "source_ip", "method", "route", "detail", "outcome")
_ARROW_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("occurred_at", pa.timestamp("us")),
        ("actor", pa.string()),
        ("role", pa.string()),
        ("source_ip", pa.string()),
        ("method", pa.string()),
        ("route", pa.string()),
        ("detail", pa.string()),
        ("outcome", pa.string()),
    ]
)


def ensure_data_access(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``raw.data_access`` (one row per data-access record; ``store_id`` parsed from the detail)."""
    ensure_schema(con)
    con.execute(
        "create table if not exists raw.data_access (seq bigint not null, occurred_at timestamp not null,"
        " actor varchar, role varchar, source_ip varchar, method varchar, route varchar, detail varchar,"
        " outcome varchar, store_id varchar)"
    )


def landed_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The last audit seq landed (0 before the first landing)."""
    row = con.execute("select fingerprint from meta.catalog_state where source = ?", [SOURCE]).fetchone()
    return int(row[0]) if row else 0


def newest_record(engine: Engine) -> int:
    """The ops store's newest data-access record's seq (0 when there is none)."""
    with engine.connect() as conn:
        newest = conn.execute(
            select(func.max(security_audit.c.seq)).where(security_audit.c.action == ACTION)
        ).scalar()
    return int(newest or 0)


def data_access_pending(con: duckdb.DuckDBPyConnection, engine: Engine) -> bool:
    """Whether the ops store holds data-access records not landed yet. Reads only."""
    state = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'meta'"
        " and table_name = 'catalog_state'"
    ).fetchall()[0][0]
    after = landed_seq(con) if state else 0
    return newest_record(engine) > after


def _records_after(engine: Engine, after: int) -> Iterator[list[tuple[Any, ...]]]:
    """Data-access records with ``seq`` above ``after``, in seq order, in chunks (the audit's action index
    serves the scan)."""
    columns = [security_audit.c[name] for name in _COLUMNS]
    last = after
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(*columns)
                .where(security_audit.c.action == ACTION, security_audit.c.seq > last)
                .order_by(security_audit.c.seq)
                .limit(CHUNK)
            ).all()
            if not rows:
                return
            yield [tuple(r) for r in rows]
            last = int(rows[-1][0])


@dataclass(frozen=True)
class AccessLanding:
    """One landing: records copied, the watermark before and after."""

    from_seq: int
    to_seq: int
    records: int

    def metadata(self) -> dict[str, Any]:
        return {"records_landed": self.records, "watermark_before": self.from_seq, "watermark": self.to_seq}


def land_data_access(con: duckdb.DuckDBPyConnection, engine: Engine) -> AccessLanding:
    """Copy the data-access records above the watermark into ``raw.data_access``."""
    ensure_data_access(con)
    after = landed_seq(con)
    last = after
    records = 0
    con.execute("begin transaction")
    try:
        for chunk in _records_after(engine, after):
            columns = list(zip(*chunk, strict=True))
            columns[1] = tuple(naive(t) for t in columns[1])
            batch = pa.Table.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(columns, _ARROW_SCHEMA, strict=True)],
                schema=_ARROW_SCHEMA,
            )
            con.register("access_chunk", batch)
            con.execute(
                "insert into raw.data_access select *,"
                f" nullif(regexp_extract(detail, '{STORE_IN_DETAIL}', 1), '') from access_chunk"
            )
            con.unregister("access_chunk")
            records += batch.num_rows
            last = int(chunk[-1][0])
        if records:
            total = int(con.execute("select count(*) from raw.data_access").fetchall()[0][0])
            con.execute(
                "insert or replace into meta.catalog_state values (?, ?, ?, ?)",
                [SOURCE, str(last), total, datetime.now(UTC).replace(tzinfo=None)],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return AccessLanding(after, last, records)

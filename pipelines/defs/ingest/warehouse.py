"""The raw and meta schemas of the warehouse, and the landing of ops-store rows into them.

Everything here is plain DuckDB + SQLAlchemy (no Dagster), so tests can call it on small real files.
Landing is incremental by ``seq``: rows with ``seq`` above the watermark are copied, and the watermark moves
in the same DuckDB transaction as the insert, so a crash never loses or doubles a batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, Table, select

from chainsync.ops_store.export import read_events_after
from chainsync.schemas.events import MAX_CENTS, SaleEvent
from pipelines.defs.ingest.plausibility import LineRules, quarantine_case

EVENT_TABLES: dict[str, str] = {
    "sale": "raw.sales_events",
    "inventory": "raw.inventory_events",
    "security": "raw.security_events",
    "sync": "raw.sync_events",
}

PAYMENT_TYPES = ", ".join(f"'{p}'" for p in get_args(SaleEvent.model_fields["payment_type"].annotation))

_EVENT_COLUMNS = """
    event_id varchar not null, seq bigint not null, store_id varchar, device_id varchar,
    occurred_at timestamp not null, received_at timestamp not null, payload json not null
"""
_SALE_LINE_COLUMNS = """
    event_id varchar, line_no integer, transaction_id varchar, kind varchar, cashier_id varchar,
    payment_type varchar, product_id varchar, quantity bigint, unit_price_cents bigint, discount_cents bigint,
    occurred_at timestamp, store_id varchar, device_id varchar, received_at timestamp, seq bigint
"""
_SALE_PAYLOAD_SHAPE = (
    '{"transaction_id":"VARCHAR","kind":"VARCHAR","cashier_id":"VARCHAR","payment_type":"VARCHAR",'
    '"lines":[{"product_id":"VARCHAR","quantity":"BIGINT","unit_price_cents":"BIGINT","discount_cents":"BIGINT"}]}'
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw/meta/analytics schemas and landing tables if absent (idempotent)."""
    con.execute(
        "create schema if not exists raw; create schema if not exists meta;"
        " create schema if not exists analytics"
    )
    con.execute(
        "create table if not exists meta.watermarks (source varchar primary key, last_seq bigint not null,"
        " updated_at timestamp not null)"
    )
    con.execute(
        "create table if not exists meta.ingest_batches (source varchar not null, from_seq bigint not null,"
        " to_seq bigint not null, rows_landed bigint not null, rows_quarantined bigint not null,"
        " landed_at timestamp not null)"
    )
    con.execute(
        "create table if not exists meta.catalog_state (source varchar primary key,"
        " fingerprint varchar not null,"
        " row_count bigint not null, updated_at timestamp not null)"
    )
    con.execute(
        "create table if not exists meta.build_state (stage varchar primary key,"
        " fingerprint varchar not null,"
        " updated_at timestamp not null)"
    )
    for table in EVENT_TABLES.values():
        con.execute(f"create table if not exists {table} ({_EVENT_COLUMNS})")
    con.execute(f"create table if not exists raw.sale_lines ({_SALE_LINE_COLUMNS})")
    con.execute(
        "create table if not exists raw.sale_lines_quarantine"
        f" ({_SALE_LINE_COLUMNS}, reason varchar not null)"
    )
    con.execute(
        "create table if not exists raw.stores (store_id varchar, name varchar, region varchar, city varchar,"
        " opened_on varchar, timezone varchar, updated_at timestamp)"
    )
    con.execute(
        "create table if not exists raw.products (product_id varchar, name varchar, category varchar,"
        " unit_cost_cents bigint, price_cents bigint, lead_time_days bigint, is_active boolean,"
        " updated_at timestamp)"
    )


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def watermark(con: duckdb.DuckDBPyConnection, source: str) -> int:
    row = con.execute("select last_seq from meta.watermarks where source = ?", [source]).fetchone()
    return int(row[0]) if row else 0


def watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {s: int(v) for s, v in con.execute("select source, last_seq from meta.watermarks").fetchall()}


@dataclass(frozen=True)
class LandingResult:
    """What one landing did: events copied, sale lines kept and quarantined, the watermark before/after."""

    source: str
    from_seq: int
    to_seq: int
    events: int
    lines: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] | None = None

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "events_landed": self.events,
            "watermark_before": self.from_seq,
            "watermark": self.to_seq,
        }
        if self.source == "sale":
            meta |= {"sale_lines_landed": self.lines, "sale_lines_quarantined": self.quarantined}
            if self.quarantine_reasons:
                meta["quarantine_reasons"] = dict(self.quarantine_reasons)
        return meta


# Rows per insert statement: enough for DuckDB to spread the JSON validation over its threads.
INSERT_ROWS = 200_000


def _grouped(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """``batches`` as tables of about ``rows`` rows, in order."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(held)
            held, count = [], 0
    if held:
        yield pa.Table.from_batches(held)


def land_events(
    con: duckdb.DuckDBPyConnection, engine: Engine, event_type: str, rules: LineRules | None = None
) -> LandingResult:
    """Copy events of ``event_type`` with ``seq`` above the watermark into ``raw``; for sales also flatten
    them into ``raw.sale_lines`` (bad lines, and lines breaking ``rules`` — the settings' per-line bounds
    and time rule, ``plausibility.py`` — to ``raw.sale_lines_quarantine`` with a reason). One DuckDB
    transaction covers the insert and the watermark move."""
    table = EVENT_TABLES[event_type]
    after = watermark(con, event_type)
    con.execute("begin transaction")
    try:
        # Straight into the raw table (the transaction undoes it on failure): no second copy of the
        # payloads through a staging table; the flattening reads the new rows back by seq. The ops store is
        # read in bulk (raw sqlite3 cursor / PostgreSQL COPY, into Arrow batches), each batch inserted as it
        # comes (read here, not by DuckDB pulling a Python generator from its own threads: 4x slower).
        last, events = after, 0
        for batch in _grouped(read_events_after(engine, event_type, after), INSERT_ROWS):
            con.register("events_chunk", batch)
            try:
                con.execute(f"insert into {table} select * from events_chunk")
            finally:
                con.unregister("events_chunk")
            last, events = int(batch["seq"][-1].as_py()), events + batch.num_rows
        result = LandingResult(event_type, after, last, events)
        if events:
            con.execute(
                f"create or replace temp view new_events as select * from {table} where seq > {int(after)}"
            )
            if event_type == "sale":
                result = _flatten_sale_lines(con, result, rules or LineRules())
            con.execute(
                "insert or replace into meta.watermarks values (?, ?, ?)", [event_type, last, _utcnow()]
            )
            con.execute(
                "insert into meta.ingest_batches values (?, ?, ?, ?, ?, ?)",
                [
                    event_type,
                    after,
                    last,
                    result.lines if event_type == "sale" else events,
                    result.quarantined,
                    _utcnow(),
                ],
            )
        con.execute("drop view if exists new_events")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return result


def _flatten_sale_lines(
    con: duckdb.DuckDBPyConnection, result: LandingResult, rules: LineRules
) -> LandingResult:
    """One row per line item of the new sale events, with a quarantine reason for the bad ones."""
    con.execute(
        f"""
        create or replace temp table new_lines as
        with events as (
            select event_id, seq, store_id, device_id, occurred_at, received_at,
                   json_transform(payload, '{_SALE_PAYLOAD_SHAPE}') as p
            from new_events
        ),
        lines as (
            select events.*, unnest(p.lines) as line, generate_subscripts(p.lines, 1) as line_no
            from events
        ),
        flat as (
            select event_id, line_no::integer as line_no, p.transaction_id, p.kind, p.cashier_id,
                   p.payment_type,
                   line.product_id, line.quantity, line.unit_price_cents,
                   coalesce(line.discount_cents, 0) as discount_cents,
                   occurred_at, store_id, device_id, received_at, seq
            from lines
        )
        select flat.*,
            case
                when flat.event_id is null or transaction_id is null or kind is null or flat.store_id is null
                     or flat.product_id is null or quantity is null or unit_price_cents is null
                     or payment_type is null or cashier_id is null or occurred_at is null then 'missing field'
                when kind not in ('sale', 'refund', 'void') then 'unknown kind'
                when payment_type not in ({PAYMENT_TYPES}) then 'unknown payment type'
                when quantity <= 0 then 'non-positive quantity'
                when unit_price_cents < 0 or unit_price_cents > {MAX_CENTS} then 'unit price out of bounds'
                when discount_cents < 0 or discount_cents > quantity * unit_price_cents
                     then 'discount exceeds amount'
                when s.store_id is null then 'unknown store'
                when pr.product_id is null then 'unknown product'
                {quarantine_case(rules)}
            end as reason
        from flat
        left join raw.stores s on s.store_id = flat.store_id
        left join raw.products pr on pr.product_id = flat.product_id
        """
    )
    con.execute("insert into raw.sale_lines select * exclude (reason) from new_lines where reason is null")
    con.execute("insert into raw.sale_lines_quarantine select * from new_lines where reason is not null")
    counts = dict(
        con.execute("select coalesce(reason, 'ok'), count(*) from new_lines group by all").fetchall()
    )
    con.execute("drop table new_lines")
    kept = int(counts.pop("ok", 0))
    return LandingResult(
        result.source,
        result.from_seq,
        result.to_seq,
        result.events,
        lines=kept,
        quarantined=sum(counts.values()),
        quarantine_reasons={k: int(v) for k, v in counts.items()},
    )


def _read_catalog(engine: Engine, table: Table) -> tuple[list[str], list[tuple[Any, ...]], str]:
    """The ops store's ``table``: column names, rows in primary-key order and their fingerprint."""
    with engine.connect() as conn:
        result = conn.execute(select(table).order_by(*table.primary_key.columns))
        names = list(result.keys())
        rows = [tuple(r) for r in result]
    return names, rows, hashlib.sha256(repr(rows).encode()).hexdigest()


def _catalog_fingerprint(con: duckdb.DuckDBPyConnection, table: Table) -> str | None:
    state = con.execute(
        "select fingerprint from meta.catalog_state where source = ?", [table.name]
    ).fetchone()
    return state[0] if state else None


def catalog_pending(con: duckdb.DuckDBPyConnection, engine: Engine, table: Table) -> bool:
    """Whether the ops store's catalog ``table`` differs from the copy last landed (the catalog is small)."""
    return _read_catalog(engine, table)[2] != _catalog_fingerprint(con, table)


def refresh_catalog(con: duckdb.DuckDBPyConnection, engine: Engine, table: Table) -> tuple[int, bool]:
    """Replace ``raw.<table>`` with the ops store's catalog table when its content changed.

    Returns (row count, changed). The catalog is small, so a full read is fine; the fingerprint keeps
    an unchanged catalog from triggering downstream rebuilds."""
    names, rows, digest = _read_catalog(engine, table)
    if _catalog_fingerprint(con, table) == digest:
        return len(rows), False
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    arrow = pa.table(
        {
            n: pa.array(list(c)) if rows else pa.array([], pa.string())
            for n, c in zip(names, columns, strict=True)
        }
    )
    con.execute("begin transaction")
    try:
        con.execute(f"delete from raw.{table.name}")
        if rows:
            con.register("catalog_rows", arrow)
            con.execute(f"insert into raw.{table.name} by name select * from catalog_rows")
            con.unregister("catalog_rows")
        con.execute(
            "insert or replace into meta.catalog_state values (?, ?, ?, ?)",
            [table.name, digest, len(rows), _utcnow()],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(rows), True


def change_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A cheap fingerprint of everything landed so far: watermarks plus catalog fingerprints."""
    rows = con.execute(
        "select 'wm:' || source || '=' || last_seq from meta.watermarks"
        " union all select 'cat:' || source || '=' || fingerprint from meta.catalog_state order by 1"
    ).fetchall()
    return hashlib.sha256("|".join(r[0] for r in rows).encode()).hexdigest()


def build_fingerprint(con: duckdb.DuckDBPyConnection, stage: str) -> str | None:
    row = con.execute("select fingerprint from meta.build_state where stage = ?", [stage]).fetchone()
    return row[0] if row else None


def record_build(con: duckdb.DuckDBPyConnection, stage: str, fingerprint: str) -> None:
    con.execute("insert or replace into meta.build_state values (?, ?, ?)", [stage, fingerprint, _utcnow()])

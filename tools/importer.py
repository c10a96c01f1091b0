"""Bulk import into the ops store: a generated chain (Parquet) or a CSV of historical daily sales.

Payload JSON is built in DuckDB, vectorised, in exactly the shape the event models serialise to
(``SaleEvent.model_dump_json()``): same keys in the same order, UTC timestamps such as
``2026-01-01T09:00:00Z``, integer cents. Rows are appended with :func:`append_events` in batches, one
transaction per batch; ``event_id`` makes every import idempotent.
"""

from __future__ import annotations

import io
import re
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import typer
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import Engine, select

from chainsync.ops_store.catalog import upsert_products, upsert_stores
from chainsync.ops_store.events import InboxRow, append_events
from chainsync.ops_store.request_stats import merge_request_stats
from chainsync.ops_store.tables import products as products_table
from chainsync.ops_store.tables import stores as stores_table
from chainsync.schemas.events import (
    EVENT_MODELS,
    MAX_CENTS,
    MAX_QUANTITY,
    EventBase,
    SaleEvent,
    SaleLine,
)

# Deterministic ids for imported daily sales: uuid5(namespace, "store|product|date").
DAILY_SALES_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://chainsync.example/import/daily-sales")
IMPORT_DEVICE = "import"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_TIMESTAMP_FIELDS = {"occurred_at", "offline_since"}
# The inbox stores UTC wall time; handing it over naive spares a timezone conversion per row.
_INBOX_TIME = "occurred_at AT TIME ZONE 'UTC' AS inbox_occurred_at"
_VALIDATE_FIRST = 200  # payloads per event type checked against the models before anything is written


class ImportFormatError(typer.BadParameter):
    """The input cannot be imported as asked (a missing column, not a generated chain, ...)."""


@dataclass
class ImportSummary:
    """What an import did: events applied and already present per event type, catalog rows upserted,
    and input rows skipped (by reason)."""

    source: Path
    applied: dict[str, int] = field(default_factory=dict)
    duplicate: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    stores: int = 0
    products: int = 0
    request_stats: int = 0  # per-minute request-log rows written (replaced when imported again)
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.applied.values()) + sum(self.duplicate.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        types = sorted(set(self.applied) | set(self.duplicate))
        per_type = ", ".join(
            f"{t} {self.applied.get(t, 0):,} applied / {self.duplicate.get(t, 0):,} duplicate" for t in types
        )
        text = (
            f"Imported {self.source}: {per_type or 'no events'}; catalog {self.stores} stores, "
            f"{self.products} products; {self.events:,} events in {self.seconds:.1f} s "
            f"({self.events_per_second:,.0f}/s)"
        )
        if self.skipped:
            text += "; skipped " + ", ".join(
                f"{n:,} ({reason})" for reason, n in sorted(self.skipped.items())
            )
        return text

    def __rich__(self) -> Table:
        table = Table(title=f"Import of {self.source}")
        table.add_column("event type")
        table.add_column("applied", justify="right")
        table.add_column("duplicate", justify="right")
        for t in sorted(set(self.applied) | set(self.duplicate)):
            table.add_row(t, f"{self.applied.get(t, 0):,}", f"{self.duplicate.get(t, 0):,}")
        for reason, n in sorted(self.skipped.items()):
            table.add_row(f"[yellow]skipped: {reason}[/]", f"{n:,}", "")
        table.add_section()
        table.add_row("all events", f"{sum(self.applied.values()):,}", f"{sum(self.duplicate.values()):,}")
        table.add_row("catalog upserts", f"{self.stores} stores", f"{self.products} products")
        if self.request_stats:
            table.add_row("request-log minutes", f"{self.request_stats:,}", "")
        table.add_row("time", f"{self.seconds:.1f} s", f"{self.events_per_second:,.0f} events/s")
        return table


# --- payload SQL, derived from the event models ---------------------------------------------------


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    # Pydantic writes UTC as 'Z' and drops the fraction when it is zero.
    con.execute(
        """
        CREATE MACRO iso_utc(ts) AS CASE
            WHEN ts IS NULL THEN NULL
            WHEN microsecond(ts) % 1000000 = 0 THEN strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')
            ELSE strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') END
        """
    )
    return con


def _fields(model: type[EventBase]) -> list[str]:
    # Fields left out of the stored form when unset (``refund_of``) are left out of imported payloads:
    # history names no sale its refunds return.
    return [name for name, f in model.model_fields.items() if not f.exclude and f.exclude_if is None]


def _struct(model: type[EventBase], columns: dict[str, str] | None = None) -> str:
    columns = columns or {}
    parts = []
    for name in _fields(model):
        expr = columns.get(name, f'"{name}"')
        if name in _TIMESTAMP_FIELDS:
            expr = f"iso_utc({expr})"
        parts.append(f'"{name}" := {expr}')
    return "struct_pack(" + ", ".join(parts) + ")"


def _sale_sql(source: str) -> str:
    line = "struct_pack(" + ", ".join(f'"{n}" := "{n}"' for n in SaleLine.model_fields) + ")"
    tx_cols = [n for n in _fields(SaleEvent) if n not in ("event_id", "lines")]
    return f"""
        WITH tx AS (
            SELECT event_id, {", ".join(f'any_value("{c}") AS "{c}"' for c in tx_cols)},
                   list({line} ORDER BY line_no) AS lines
            FROM {source}
            GROUP BY event_id
        )
        SELECT event_id, {_INBOX_TIME}, store_id, device_id, to_json({_struct(SaleEvent)}) AS payload
        FROM tx ORDER BY occurred_at, event_id
    """


def _flat_sql(model: type[EventBase], source: str) -> str:
    return f"""
        SELECT event_id, {_INBOX_TIME}, store_id, device_id, to_json({_struct(model)}) AS payload
        FROM {source} ORDER BY occurred_at, event_id
    """


def _batches(reader: pa.RecordBatchReader, event_type: str) -> Iterator[list[InboxRow]]:
    for batch in reader:
        cols = batch.to_pydict()
        yield [
            InboxRow(event_id=e, event_type=event_type, store_id=s, device_id=d, occurred_at=t, payload=p)
            for e, t, s, d, p in zip(
                cols["event_id"],
                cols["inbox_occurred_at"],
                cols["store_id"],
                cols["device_id"],
                cols["payload"],
                strict=True,
            )
        ]


def _append_stream(
    engine: Engine,
    con: duckdb.DuckDBPyConnection,
    sql: str,
    event_type: str,
    summary: ImportSummary,
    *,
    batch_size: int,
    total: int,
    progress: Progress | None,
) -> None:
    task = progress.add_task(f"Importing {event_type} events", total=total) if progress else None
    model = EVENT_MODELS[event_type]
    checked = 0
    applied = duplicate = 0
    reader = con.sql(sql).to_arrow_reader(batch_size)
    for rows in _batches(reader, event_type):
        # Cheap guard against drift between the Parquet columns and the event models.
        for row in rows[: max(0, _VALIDATE_FIRST - checked)]:
            event = model.model_validate_json(row.payload)
            if event.model_dump_json() != row.payload:
                raise ImportFormatError(f"{event_type} payload does not round-trip: {row.payload[:200]}")
        checked += len(rows)
        statuses = append_events(engine, rows)
        n_applied = statuses.count("applied")
        applied += n_applied
        duplicate += len(statuses) - n_applied
        if progress and task is not None:
            progress.advance(task, len(rows))
    summary.applied[event_type] = summary.applied.get(event_type, 0) + applied
    summary.duplicate[event_type] = summary.duplicate.get(event_type, 0) + duplicate


# --- a generated chain ------------------------------------------------------------------------------


def import_generated(
    engine: Engine, path: Path, *, batch_size: int = 5000, progress: Progress | None = None
) -> ImportSummary:
    """Import a chain written by :func:`tools.generator.generate_chain`: upsert its stores and
    products, then append every sale transaction, inventory, security and sync event, and write its
    request log (``request_stats.parquet``, when present) into ``request_stats``."""
    t0 = time.perf_counter()
    path = Path(path)
    required = [
        "manifest.json",
        "stores.parquet",
        "products.parquet",
        "inventory.parquet",
        "security.parquet",
        "sync.parquet",
        "sales_lines",
    ]
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise ImportFormatError(
            f"{path} is not a generated chain: missing {', '.join(missing)}", param_hint="PATH"
        )
    summary = ImportSummary(source=path)

    stores = pl.read_parquet(path / "stores.parquet").with_columns(pl.col("opened_on").cast(pl.String))
    summary.stores = upsert_stores(engine, stores.to_dicts())
    summary.products = upsert_products(engine, pl.read_parquet(path / "products.parquet").to_dicts())

    con = _connect()
    sales = f"read_parquet('{_sql_path(path / 'sales_lines' / '*.parquet')}')"
    counts = {
        "sale": con.sql(f"SELECT count(DISTINCT event_id) FROM {sales}").fetchall()[0][0],
    }
    sources = {"inventory": "inventory.parquet", "security": "security.parquet", "sync": "sync.parquet"}
    for event_type, file in sources.items():
        counts[event_type] = pl.scan_parquet(path / file).select(pl.len()).collect().item()

    _append_stream(
        engine,
        con,
        _sale_sql(sales),
        "sale",
        summary,
        batch_size=batch_size,
        total=counts["sale"],
        progress=progress,
    )
    for event_type, file in sources.items():
        sql = _flat_sql(EVENT_MODELS[event_type], f"read_parquet('{_sql_path(path / file)}')")
        _append_stream(
            engine,
            con,
            sql,
            event_type,
            summary,
            batch_size=batch_size,
            total=counts[event_type],
            progress=progress,
        )
    con.close()
    if (path / "request_stats.parquet").exists():
        log = pl.read_parquet(path / "request_stats.parquet").with_columns(
            pl.col("bucket_start").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        )
        summary.request_stats = merge_request_stats(engine, log.to_dicts(), replace=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


# --- a CSV of daily sales ---------------------------------------------------------------------------


def _read_csv(csv_path: Path) -> pl.DataFrame:
    """Every column as text (values are parsed and checked one column at a time later)."""
    if csv_path.suffix.lower() == ".zip":
        with zipfile.ZipFile(csv_path) as archive:
            members = [n for n in archive.namelist() if n.lower().endswith(".csv")] or archive.namelist()
            if not members:
                raise ImportFormatError(f"{csv_path} holds no file", param_hint="PATH")
            data = archive.read(members[0])
        return pl.read_csv(io.BytesIO(data), infer_schema=False)
    return pl.read_csv(csv_path, infer_schema=False)


def import_daily_sales_csv(
    engine: Engine,
    csv_path: Path,
    *,
    store_col: str = "store_id",
    product_col: str = "product_id",
    date_col: str = "date",
    units_col: str = "units",
    revenue_col: str = "revenue_cents",
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import historical daily sales (one row per store, product and day; a ``.zip`` holding the CSV
    is accepted) as one synthetic sale event per row.

    Each event has a deterministic ``event_id`` (uuid5 of store, product and date, so re-imports are
    duplicates), device and cashier ``import``, ``occurred_at`` at noon UTC of the date, and one line with
    ``quantity = units`` and ``unit_price_cents = round(revenue_cents / units)``. Rows with a missing or
    unparsable value, ``units <= 0``, fractional units, negative revenue or an invalid id are skipped and
    counted by reason, as is a repeat of a (store, product, date) already seen in the file. Stores and
    products not yet in the catalog are added with placeholder names."""
    t0 = time.perf_counter()
    csv_path = Path(csv_path)
    raw = _read_csv(csv_path)
    wanted = {
        "--store-col": store_col,
        "--product-col": product_col,
        "--date-col": date_col,
        "--units-col": units_col,
        "--revenue-col": revenue_col,
    }
    for option, column in wanted.items():
        if column not in raw.columns:
            raise ImportFormatError(
                f"column {column!r} not found in {csv_path.name}; its columns are: {', '.join(raw.columns)}",
                param_hint=f"'{option}'",
            )
    summary = ImportSummary(source=csv_path)

    frame = raw.select(
        pl.col(store_col).str.strip_chars().alias("store_id"),
        pl.col(product_col).str.strip_chars().alias("product_id"),
        pl.col(date_col).str.strip_chars().alias("date_text"),
        pl.col(units_col).str.strip_chars().cast(pl.Float64, strict=False).alias("units"),
        pl.col(revenue_col).str.strip_chars().cast(pl.Float64, strict=False).alias("revenue"),
        pl.col(units_col).str.strip_chars().alias("units_text"),
        pl.col(revenue_col).str.strip_chars().alias("revenue_text"),
    ).with_columns(
        pl.coalesce(
            pl.col("date_text").str.to_date(fmt, strict=False) for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y")
        ).alias("date"),
        ((pl.col("revenue") / pl.col("units")) + 0.5).floor().alias("unit_price"),
    )
    blank = pl.any_horizontal(
        pl.col(c).is_null() | (pl.col(c) == "")
        for c in ("store_id", "product_id", "date_text", "units_text", "revenue_text")
    )
    id_ok = pl.col("store_id").str.contains(_ID_RE.pattern) & pl.col("product_id").str.contains(
        _ID_RE.pattern
    )
    reason = (
        pl.when(blank)
        .then(pl.lit("missing value"))
        .when(pl.col("date").is_null())
        .then(pl.lit("unparsable date"))
        .when(pl.col("units").is_null() | pl.col("revenue").is_null())
        .then(pl.lit("unparsable number"))
        .when(pl.col("units") <= 0)
        .then(pl.lit("units <= 0"))
        .when(pl.col("units") != pl.col("units").round())
        .then(pl.lit("fractional units"))
        .when(pl.col("revenue") < 0)
        .then(pl.lit("negative revenue"))
        .when(~id_ok)
        .then(pl.lit("invalid store or product id"))
        .when((pl.col("units") > MAX_QUANTITY) | (pl.col("unit_price") > MAX_CENTS))
        .then(pl.lit("value out of range"))
    )
    # A key seen earlier in the file would become a second event with the same id: keep the first.
    repeated = pl.struct("store_id", "product_id", "date").is_first_distinct().not_()
    frame = frame.with_columns(reason.alias("reason")).with_columns(
        pl.when(pl.col("reason").is_null() & repeated.over("reason"))
        .then(pl.lit("repeated store, product and date"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
    skipped = frame.filter(pl.col("reason").is_not_null()).group_by("reason").len()
    summary.skipped = dict(skipped.iter_rows())
    good = frame.filter(pl.col("reason").is_null())

    keys = good.select(pl.concat_str("store_id", "product_id", pl.col("date").cast(pl.String), separator="|"))
    event_ids = [str(uuid.uuid5(DAILY_SALES_NAMESPACE, key)) for key in keys.to_series()]
    lines = good.select(
        pl.Series("event_id", event_ids, dtype=pl.String),
        pl.concat_str(
            pl.lit("IMP-"),
            pl.col("date").dt.strftime("%Y%m%d"),
            pl.lit("-"),
            pl.Series(event_ids).str.replace_all("-", "").str.slice(0, 16),
        ).alias("transaction_id"),
        (pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=12))
        .dt.replace_time_zone("UTC")
        .alias("occurred_at"),
        "store_id",
        pl.lit(IMPORT_DEVICE).alias("device_id"),
        pl.lit(IMPORT_DEVICE).alias("cashier_id"),
        pl.lit("sale").alias("kind"),
        pl.lit("other").alias("payment_type"),
        pl.lit(1, pl.Int32).alias("line_no"),
        "product_id",
        pl.col("units").cast(pl.Int64).alias("quantity"),
        pl.col("unit_price").cast(pl.Int64).alias("unit_price_cents"),
        pl.lit(0, pl.Int64).alias("discount_cents"),
    )

    summary.stores, summary.products = _add_missing_catalog(engine, lines)

    con = _connect()
    con.register("daily_sales_lines", lines.to_arrow())
    _append_stream(
        engine,
        con,
        _sale_sql("daily_sales_lines"),
        "sale",
        summary,
        batch_size=batch_size,
        total=lines.select(pl.col("event_id").n_unique()).item(),
        progress=progress,
    )
    con.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _add_missing_catalog(engine: Engine, lines: pl.DataFrame) -> tuple[int, int]:
    """Add stores and products the catalog does not know yet, with placeholder names (known ones are
    left untouched)."""
    with engine.connect() as conn:
        known_stores: set[str] = set(conn.execute(select(stores_table.c.store_id)).scalars())
        known_products: set[str] = set(conn.execute(select(products_table.c.product_id)).scalars())
    new_stores = sorted(set(lines["store_id"].unique()) - known_stores)
    prices = lines.group_by("product_id").agg(pl.col("unit_price_cents").median().round().cast(pl.Int64))
    new_products = prices.filter(~pl.col("product_id").is_in(list(known_products))).sort("product_id")
    n_stores = upsert_stores(
        engine,
        [
            {
                "store_id": s,
                "name": f"Imported store {s}",
                "region": "unknown",
                "city": "unknown",
                "opened_on": None,
                "timezone": "UTC",
            }
            for s in new_stores
        ],
    )
    n_products = upsert_products(
        engine,
        [
            {
                "product_id": p,
                "name": f"Imported product {p}",
                "category": "unknown",
                "unit_cost_cents": 0,
                "price_cents": int(price),
                "lead_time_days": 7,
                "is_active": True,
            }
            for p, price in new_products.iter_rows()
        ],
    )
    return n_stores, n_products

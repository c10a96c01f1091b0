"""What a terminal's sale may claim about the store's own records: products the catalog holds, refunds of
sales that happened.

Applied to terminals' events only (event ingest and offline-sync uploads), inside the transaction that
stores them, so two refunds of one sale racing each other cannot both pass:

* **Known products.** Every line names a product in the catalog (``products``). An ops store with no
  catalog at all (a fresh install before its first catalog import) takes any product id: there is
  nothing to check against yet.
* **Refunds name their sale.** A ``refund`` carries ``refund_of``, the ``transaction_id`` of a sale of the
  same store stored before it (or earlier in the same request), and returns per product no more units than
  that sale sold less what earlier refunds of it returned. ``sale_refundable`` keeps one row per stored
  sale: units sold per product, and units returned so far. Only a refund carries ``refund_of``.
  Transaction ids are the till's, unique per store: a reused one keeps the first sale's lines. Sales stored
  by the historical import are not in it (history is not refunded at a till).

Each refusal is a validation error naming the field, like every other (the API answers 422). Imported
history (``chainsync import``) does not pass here.

This runs for every ingested sale, so its statements are few and sent as the driver takes them: on
PostgreSQL whole columns as binary arrays (a statement with one placeholder per value cost the driver
more than the database's work), on SQLite ``executemany``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine

from chainsync.ops_store import events as inbox
from chainsync.ops_store.events import InboxRow
from chainsync.schemas.events import SaleEvent

Outcome = tuple[str, list[dict[str, str]]]
"""``(status, errors)``: ``applied`` or ``duplicate`` with no errors, or ``rejected`` with the reasons."""

Key = tuple[str, str]  # (store_id, transaction_id)

# The figures are stored as JSON text; msgspec writes it several times faster than json.dumps (this runs
# once per ingested sale) and json.loads reads either spelling.
_JSON = msgspec.json.Encoder().encode


def append_terminal(
    engine: Engine, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[Outcome]:
    """:func:`append_terminal_events` in one committed transaction (the event ingest's writer)."""
    with engine.begin() as conn:
        return append_terminal_events(conn, rows, received_at=received_at)


def append_terminal_events(
    conn: Connection, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[Outcome]:
    """Check the sales among ``rows`` against the catalog and the refundable figures, append the rows
    that pass (:func:`chainsync.ops_store.events.append_in_transaction`) and record what the newly stored
    sales sold and refunds returned, inside the caller's transaction. One outcome per row, in order."""
    outcomes: list[Outcome | None] = [None] * len(rows)
    sales = {i: _sale(r) for i, r in enumerate(rows) if r.event_type == "sale" and r.store_id is not None}
    returned: dict[int, tuple[Key, dict[str, int]]] = {}
    if sales:
        _check(conn, rows, sales, outcomes, returned)
    keep = [i for i, outcome in enumerate(outcomes) if outcome is None]
    statuses = inbox.append_in_transaction(conn, [rows[i] for i in keep], received_at=received_at)
    for i, status in zip(keep, statuses, strict=True):
        outcomes[i] = (status, [])
    if sales:
        _record(conn, rows, sales, outcomes, returned)
    return [outcome or ("rejected", []) for outcome in outcomes]


def _sale(row: InboxRow) -> Any:
    return row.event if row.event is not None else SaleEvent.model_validate_json(row.payload)


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _select_in(conn: Connection, sql: str, values: list[str]) -> list[Any]:
    """``sql`` with ``{in}`` standing for "the column is one of ``values``"."""
    if not values:
        return []
    if _pg(conn):
        return list(conn.exec_driver_sql(sql.format(in_="= ANY(%b::varchar[])"), (values,)))
    return list(conn.exec_driver_sql(sql.format(in_=f"IN ({', '.join('?' * len(values))})"), tuple(values)))


def _check(
    conn: Connection,
    rows: Sequence[InboxRow],
    sales: dict[int, Any],
    outcomes: list[Outcome | None],
    returned: dict[int, tuple[Key, dict[str, int]]],
) -> None:
    products = sorted({line.product_id for sale in sales.values() for line in sale.lines})
    known = {
        str(p)
        for (p,) in _select_in(conn, "SELECT product_id FROM products WHERE product_id {in_}", products)
    }
    has_catalog = (
        len(known) == len(products) or conn.exec_driver_sql("SELECT 1 FROM products LIMIT 1").first()
    )
    refunds = [i for i, sale in sales.items() if sale.kind == "refund"]
    figures: dict[Key, tuple[dict[str, int], dict[str, int]]] = {}
    stored: set[str] = set()
    if refunds:
        targets = {(str(rows[i].store_id), str(sales[i].refund_of)) for i in refunds if sales[i].refund_of}
        figures = _refundable(conn, sorted(targets))
        # Refunds already stored (retries) and sales of this request they may return: duplicates are
        # answered as such by the append, never checked or counted again.
        asked = [rows[i].event_id for i in refunds] + [
            rows[i].event_id
            for i, sale in sales.items()
            if sale.kind == "sale" and (str(rows[i].store_id), sale.transaction_id) in targets
        ]
        stored = {
            str(e)
            for (e,) in _select_in(conn, "SELECT event_id FROM event_inbox WHERE event_id {in_}", asked)
        }
    seen: set[str] = set()
    for i, sale in sales.items():
        row = rows[i]
        if row.event_id in stored or row.event_id in seen:
            continue  # a duplicate (the append says so)
        store = str(row.store_id)
        errors: list[dict[str, str]] = []
        if has_catalog:
            errors += [
                {
                    "field": f"lines.{n}.product_id",
                    "message": f"is not a product in the catalog ({line.product_id})",
                }
                for n, line in enumerate(sale.lines)
                if line.product_id not in known
            ]
        if sale.kind == "refund":
            errors += _refund_errors(store, sale, figures)
        elif sale.refund_of is not None:
            errors.append(
                {"field": "refund_of", "message": f"only a refund names a sale it returns, not a {sale.kind}"}
            )
        if errors:
            outcomes[i] = ("rejected", errors)
            continue
        seen.add(row.event_id)
        if refunds and sale.kind == "sale" and (store, sale.transaction_id) not in figures:
            figures[(store, sale.transaction_id)] = (_units(sale), {})  # a refund later in this request
        elif sale.kind == "refund":
            key = (store, str(sale.refund_of))
            back = _units(sale)
            for product, units in back.items():
                figures[key][1][product] = figures[key][1].get(product, 0) + units
            returned[i] = (key, back)


def _units(sale: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in sale.lines:
        out[line.product_id] = out.get(line.product_id, 0) + line.quantity
    return out


def _refund_errors(
    store: str, refund: Any, figures: dict[Key, tuple[dict[str, int], dict[str, int]]]
) -> list[dict[str, str]]:
    if refund.refund_of is None:
        return [{"field": "refund_of", "message": "a refund names the sale it returns (its transaction_id)"}]
    found = figures.get((store, refund.refund_of))
    if found is None:
        return [{"field": "refund_of", "message": f"names no sale of store {store} ({refund.refund_of})"}]
    sold, back = found
    errors = []
    returning: dict[str, int] = {}
    for n, line in enumerate(refund.lines):
        if line.product_id not in sold:
            errors.append(
                {
                    "field": f"lines.{n}.product_id",
                    "message": f"was not sold in transaction {refund.refund_of}",
                }
            )
            continue
        returning[line.product_id] = returning.get(line.product_id, 0) + line.quantity
        units, already = sold[line.product_id], back.get(line.product_id, 0)
        if already + returning[line.product_id] > units:
            errors.append(
                {
                    "field": f"lines.{n}.quantity",
                    "message": f"returns more than was sold (sold {units}, returned already {already})",
                }
            )
    return errors


def _refundable(conn: Connection, keys: list[Key]) -> dict[Key, tuple[dict[str, int], dict[str, int]]]:
    out: dict[Key, tuple[dict[str, int], dict[str, int]]] = {}
    mark = "%s" if _pg(conn) else "?"
    for store, transaction in keys:
        found = conn.exec_driver_sql(
            f"SELECT sold, refunded FROM sale_refundable WHERE store_id = {mark} AND transaction_id = {mark}",
            (store, transaction),
        ).first()
        if found is not None:
            out[(store, transaction)] = (json.loads(str(found[0])), json.loads(str(found[1])))
    return out


def _record(
    conn: Connection,
    rows: Sequence[InboxRow],
    sales: dict[int, Any],
    outcomes: list[Outcome | None],
    returned: dict[int, tuple[Key, dict[str, int]]],
) -> None:
    """What the newly stored sales sold (one row each) and refunds returned (their sale's row updated)."""
    sold: dict[Key, str] = {}
    for i, sale in sales.items():
        outcome = outcomes[i]
        if sale.kind == "sale" and outcome is not None and outcome[0] == "applied":
            sold.setdefault((str(rows[i].store_id), sale.transaction_id), _JSON(_units(sale)).decode())
    if sold:
        keys = list(sold)
        if _pg(conn):
            conn.exec_driver_sql(
                "INSERT INTO sale_refundable (store_id, transaction_id, sold) "
                "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::text[]) ON CONFLICT DO NOTHING",
                ([k[0] for k in keys], [k[1] for k in keys], list(sold.values())),
            )
        else:
            conn.exec_driver_sql(
                "INSERT OR IGNORE INTO sale_refundable (store_id, transaction_id, sold) VALUES (?, ?, ?)",
                [(k[0], k[1], v) for k, v in sold.items()],
            )
    back: dict[Key, dict[str, int]] = {}
    for i, (key, units) in returned.items():
        outcome = outcomes[i]
        if outcome is not None and outcome[0] == "applied":
            total = back.setdefault(key, {})
            for product, n in units.items():
                total[product] = total.get(product, 0) + n
    mark = "%s" if _pg(conn) else "?"
    for (store, transaction), units in back.items():
        found = conn.exec_driver_sql(
            f"SELECT refunded FROM sale_refundable WHERE store_id = {mark} AND transaction_id = {mark}",
            (store, transaction),
        ).first()
        already: dict[str, int] = json.loads(str(found[0])) if found is not None else {}
        for product, n in units.items():
            already[product] = already.get(product, 0) + n
        conn.exec_driver_sql(
            f"UPDATE sale_refundable SET refunded = {mark} "
            f"WHERE store_id = {mark} AND transaction_id = {mark}",
            (_JSON(already).decode(), store, transaction),
        )

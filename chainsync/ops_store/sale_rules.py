"""What a terminal's sale may claim about the store's own records: products the catalog holds, refunds of
sales that happened.

Applied to terminals' events only (event ingest and offline-sync uploads), inside the transaction that
stores them, so two refunds of one sale racing each other cannot both pass:

* **Known products.** Every line names a product in the catalog (``products``). An ops store with no
  catalog at all (a fresh install before its first catalog import) takes any product id: there is
  nothing to check against yet.
* **Refunds name their sale.** A ``refund`` carries ``refund_of``, the ``transaction_id`` of a sale of the
  same store stored before it (or earlier in the same request), and returns per product no more units than
  that sale sold less what earlier refunds of it returned. ``sale_refundable`` keeps those figures:
  sales add to ``sold_units``, refunds to ``refunded_units``. Sales stored by the historical import are
  not in it (history is not refunded at a till).

Each refusal is a validation error naming the field, like every other (the API answers 422). Imported
history (``chainsync import``) does not pass here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from chainsync.ops_store import events as inbox
from chainsync.ops_store.events import InboxRow
from chainsync.schemas.events import SaleEvent

Outcome = tuple[str, list[dict[str, str]]]
"""``(status, errors)``: ``applied`` or ``duplicate`` with no errors, or ``rejected`` with the reasons."""


def append_terminal(
    engine: Engine, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[Outcome]:
    """:func:`append_terminal_events` in one committed transaction (the event ingest's writer)."""
    with engine.begin() as conn:
        return append_terminal_events(conn, rows, received_at=received_at)


def append_terminal_events(
    conn: Connection, rows: Sequence[InboxRow], *, received_at: datetime | None = None
) -> list[Outcome]:
    """Check the sales among ``rows`` against the catalog and the refundable figures, then append the
    rows that pass (:func:`chainsync.ops_store.events.append_in_transaction`) inside the caller's
    transaction. One outcome per row, in order."""
    outcomes: list[Outcome | None] = [None] * len(rows)
    sales = [(i, r) for i, r in enumerate(rows) if r.event_type == "sale" and r.store_id is not None]
    if sales:
        _check_sales(conn, rows, sales, outcomes)
    keep = [i for i, outcome in enumerate(outcomes) if outcome is None]
    statuses = inbox.append_in_transaction(conn, [rows[i] for i in keep], received_at=received_at)
    for i, status in zip(keep, statuses, strict=True):
        outcomes[i] = (status, [])
    return [outcome or ("rejected", []) for outcome in outcomes]


def _sale(row: InboxRow) -> Any:
    return row.event if row.event is not None else SaleEvent.model_validate_json(row.payload)


def _marks(conn: Connection, n: int) -> str:
    return ", ".join(["%s" if conn.dialect.name == "postgresql" else "?"] * n)


def _check_sales(
    conn: Connection,
    rows: Sequence[InboxRow],
    sales: list[tuple[int, InboxRow]],
    outcomes: list[Outcome | None],
) -> None:
    events = {i: _sale(r) for i, r in sales}
    # Events already stored are duplicates: answered as such by the append, never checked again.
    ids = sorted({r.event_id for _, r in sales})
    stored = {
        str(e)
        for (e,) in conn.exec_driver_sql(
            f"SELECT event_id FROM event_inbox WHERE event_id IN ({_marks(conn, len(ids))})", tuple(ids)
        )
    }
    products = sorted({line.product_id for e in events.values() for line in e.lines})
    known = {
        str(p)
        for (p,) in conn.exec_driver_sql(
            f"SELECT product_id FROM products WHERE product_id IN ({_marks(conn, len(products))})",
            tuple(products),
        )
    }
    has_catalog = len(known) == len(products) or bool(
        conn.exec_driver_sql("SELECT 1 FROM products LIMIT 1").first()
    )
    wanted = sorted({(r.store_id, e.refund_of) for i, r in sales if (e := events[i]).refund_of is not None})
    figures = _refundable(conn, wanted)  # (store, transaction, product) -> [sold, refunded]
    added: dict[tuple[str, str, str], list[int]] = {}  # what this request adds: [sold, refunded]
    seen: set[str] = set()
    for i, row in sales:
        if row.event_id in stored or row.event_id in seen:
            continue  # a duplicate (the append says so)
        sale = events[i]
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
        if sale.kind in ("sale", "refund"):
            column = 0 if sale.kind == "sale" else 1
            transaction = sale.transaction_id if sale.kind == "sale" else str(sale.refund_of)
            for line in sale.lines:
                key = (store, transaction, line.product_id)
                figures.setdefault(key, [0, 0])[column] += line.quantity
                added.setdefault(key, [0, 0])[column] += line.quantity
    if added:
        _add_refundable(conn, sorted(added.items()))


def _refund_errors(
    store: str, refund: Any, figures: dict[tuple[str, str, str], list[int]]
) -> list[dict[str, str]]:
    if refund.refund_of is None:
        return [{"field": "refund_of", "message": "a refund names the sale it returns (its transaction_id)"}]
    sold = {p: f for (s, t, p), f in figures.items() if s == store and t == refund.refund_of}
    if not sold:
        return [{"field": "refund_of", "message": f"names no sale of store {store} ({refund.refund_of})"}]
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
        units, already = sold[line.product_id]
        if already + returning[line.product_id] > units:
            errors.append(
                {
                    "field": f"lines.{n}.quantity",
                    "message": f"returns more than was sold (sold {units}, returned already {already})",
                }
            )
    return errors


def _refundable(conn: Connection, wanted: list[tuple[Any, Any]]) -> dict[tuple[str, str, str], list[int]]:
    out: dict[tuple[str, str, str], list[int]] = {}
    for store, transaction in wanted:
        found = conn.exec_driver_sql(
            "SELECT product_id, sold_units, refunded_units FROM sale_refundable "
            f"WHERE store_id = {_marks(conn, 1)} AND transaction_id = {_marks(conn, 1)}",
            (store, transaction),
        )
        for product, sold, refunded in found.tuples():
            out[(str(store), str(transaction), str(product))] = [int(str(sold)), int(str(refunded))]
    return out


def _add_refundable(conn: Connection, figures: list[tuple[tuple[str, str, str], list[int]]]) -> None:
    values = "(" + _marks(conn, 5) + ")"
    params: list[object] = []
    for (store, transaction, product), (sold, refunded) in figures:
        params += [store, transaction, product, sold, refunded]
    conn.exec_driver_sql(
        "INSERT INTO sale_refundable (store_id, transaction_id, product_id, sold_units, refunded_units) "
        f"VALUES {', '.join([values] * len(figures))} ON CONFLICT (store_id, transaction_id, product_id) "
        "DO UPDATE SET sold_units = sale_refundable.sold_units + excluded.sold_units, "
        "refunded_units = sale_refundable.refunded_units + excluded.refunded_units",
        tuple(params),
    )

"""Landing by ``seq`` is exactly-once on both engines, even when writers' transactions overlap.

On PostgreSQL, a ``seq`` drawn by one transaction can commit after a higher one drawn by another; a landing
in between would move its watermark past the late one and skip it for good. These tests hold real writer
transactions open on separate connections while the real landing (``land_events`` into a DuckDB file)
runs, and check that every event lands exactly once. The same goes for the sync change log that devices
read by cursor, and the audit chain.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Connection, Engine, select, text

from chainsync.ops_store import get_engine
from chainsync.ops_store.audit_log import append_audit, verify_audit_chain
from chainsync.ops_store.catalog import upsert_products
from chainsync.ops_store.events import InboxRow, append_events, append_in_transaction
from chainsync.ops_store.sync.uploads import write_override
from chainsync.ops_store.tables import event_inbox, sync_changes
from chainsync.schemas.events import SaleEvent, SaleLine
from chainsync.settings import Settings
from pipelines.defs.ingest.warehouse import ensure_schema, land_events

DEADLINE_S = 30.0


def _sale(store: str = "S01") -> InboxRow:
    event = SaleEvent(
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        store_id=store,
        device_id=f"{store}-T1",
        transaction_id=f"T-{uuid.uuid4().hex[:12]}",
        kind="sale",
        cashier_id="C1",
        payment_type="card",
        lines=[SaleLine(product_id="P001", quantity=1, unit_price_cents=250, discount_cents=0)],
    )
    return InboxRow.from_event(event)


def _poll(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Warehouse:
    """The real landing into a DuckDB file; remembers every event id it landed, in order."""

    def __init__(self, path: Path, engine: Engine) -> None:
        self.con = duckdb.connect(str(path))
        ensure_schema(self.con)
        self.engine = engine

    def land(self) -> list[str]:
        before = self.con.execute("select count(*) from raw.sales_events").fetchone()[0]  # type: ignore[index]
        land_events(self.con, self.engine, "sale")
        return [
            r[0]
            for r in self.con.execute(
                "select event_id from raw.sales_events order by seq offset ?", [before]
            ).fetchall()
        ]

    def landed(self) -> list[str]:
        return [r[0] for r in self.con.execute("select event_id from raw.sales_events").fetchall()]


@pytest.fixture
def warehouse(settings: Settings, tmp_path: Path) -> Iterator[Warehouse]:
    wh = Warehouse(tmp_path / "warehouse.duckdb", get_engine(settings.ops_store))
    yield wh
    wh.con.close()


class OpenWriter:
    """A writer on its own connection whose transaction stays open until :meth:`commit`."""

    def __init__(self, engine: Engine, work: Callable[[Connection], None], *, before: bool = False) -> None:
        self.engine, self.work, self.before = engine, work, before
        self.started = threading.Event()  # the transaction is open (and, with ``before``, has written)
        self.wrote = threading.Event()  # ``work`` returned: its seq values are drawn, not committed
        self.go_on = threading.Event()  # ``before``: now do the work
        self.release = threading.Event()  # commit now
        self.error: BaseException | None = None
        self.pid: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    self.pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                if self.before:
                    # The transaction begins (and writes something unrelated) before it appends.
                    conn.execute(text("SELECT 1"))
                    self.started.set()
                    assert self.go_on.wait(DEADLINE_S)
                else:
                    self.started.set()
                self.work(conn)
                self.wrote.set()
                assert self.release.wait(DEADLINE_S)
        except BaseException as exc:  # reported by commit()
            self.error = exc

    def commit(self) -> None:
        self.release.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive(), "writer did not finish"
        if self.error is not None:
            raise self.error


def _waits_on_advisory_lock(engine: Engine, pid: int | None) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE pid = :pid AND locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"pid": pid},
            ).scalar()
        )


@pytest.mark.parametrize("ops_backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("order", ["first_begun_commits_first", "first_begun_commits_last"])
def test_landing_never_skips_a_late_commit(
    settings: Settings, warehouse: Warehouse, order: str, ops_backend: str
) -> None:
    engine = get_engine(settings.ops_store)
    append_events(engine, [_sale() for _ in range(3)])
    assert len(warehouse.land()) == 3
    a_rows, b_rows = [_sale() for _ in range(4)], [_sale() for _ in range(5)]

    def appender(rows: list[InboxRow]) -> Callable[[Connection], None]:
        return lambda conn: append_in_transaction(conn, rows) and None

    if order == "first_begun_commits_first":
        a = OpenWriter(engine, appender(a_rows))
        assert a.wrote.wait(DEADLINE_S)
        b = OpenWriter(engine, appender(b_rows))
        _poll(lambda: _waits_on_advisory_lock(engine, b.pid), "the second writer to queue on the inbox lock")
        assert warehouse.land() == []  # A has drawn its seqs but not committed: nothing to land yet
        a.commit()
        assert b.wrote.wait(DEADLINE_S)  # B draws its seqs only now, above A's
        assert warehouse.land() == [r.event_id for r in a_rows]
        b.commit()
        assert warehouse.land() == [r.event_id for r in b_rows]
    else:
        # A's transaction begins first but appends last: B, begun later, commits first.
        a = OpenWriter(engine, appender(a_rows), before=True)
        assert a.started.wait(DEADLINE_S)
        b = OpenWriter(engine, appender(b_rows))
        assert b.wrote.wait(DEADLINE_S)
        a.go_on.set()
        _poll(lambda: _waits_on_advisory_lock(engine, a.pid), "the first writer to queue on the inbox lock")
        assert warehouse.land() == []
        b.commit()
        assert a.wrote.wait(DEADLINE_S)
        assert warehouse.land() == [r.event_id for r in b_rows]
        a.commit()
        assert warehouse.land() == [r.event_id for r in a_rows]

    landed = warehouse.landed()
    assert len(landed) == len(set(landed)) == 3 + 4 + 5
    with engine.connect() as conn:
        assert set(conn.execute(select(event_inbox.c.event_id)).scalars()) == set(landed)


def test_many_writers_and_a_landing_loop_land_every_event_once(
    settings: Settings, warehouse: Warehouse, ops_backend: str
) -> None:
    """Writers append batches (with replays of earlier events) on their own connections while the
    landing runs in a loop; afterwards the warehouse holds exactly the inbox, each event once."""
    engine = get_engine(settings.ops_store)
    writers, batches, size = 6, 15, 12
    sent: list[list[InboxRow]] = [[] for _ in range(writers)]
    errors: list[BaseException] = []
    landed_once = threading.Event()  # writers pause half-way until a landing has run amid them

    def write(w: int) -> None:
        try:
            for b in range(batches):
                if b == batches // 2:
                    landed_once.wait(timeout=60)
                rows = [_sale(f"S{w:02d}") for _ in range(size)]
                if sent[w] and b % 3 == 0:
                    rows += sent[w][-2:]  # a device retrying what it sent before: duplicates
                append_events(engine, rows)
                sent[w].extend(rows)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    landings = 0
    deadline = time.monotonic() + 120
    while any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, "writers did not finish"
        warehouse.land()
        landings += 1
        landed_once.set()
    for t in threads:
        t.join()
    assert not errors, errors
    warehouse.land()

    landed = warehouse.landed()
    unique_sent = {r.event_id for rows in sent for r in rows}
    assert len(unique_sent) == writers * batches * size
    assert len(landed) == len(set(landed)), "an event landed twice"
    assert set(landed) == unique_sent, "an event was skipped"
    assert landings >= 1 and landed_once.is_set()  # a landing ran while writers were half-way through


@pytest.mark.parametrize("ops_backend", ["postgresql"], indirect=True)
def test_change_log_cursor_never_skips_a_late_commit(settings: Settings, ops_backend: str) -> None:
    """A store override's change-log row drawn first but committed last is still after a device's
    cursor: the trigger of migration 0008 draws ``seq`` under the change log's lock."""
    engine = get_engine(settings.ops_store)
    product = {
        "product_id": "P001",
        "name": "Tea",
        "category": "drinks",
        "unit_cost_cents": 100,
        "price_cents": 250,
        "lead_time_days": 7,
        "is_active": True,
    }
    upsert_products(engine, [product])

    def read_after(cursor: int) -> list[tuple[int, str]]:
        with engine.connect() as conn:
            return [
                (int(r.seq), str(r.entity))
                for r in conn.execute(
                    select(sync_changes.c.seq, sync_changes.c.entity)
                    .where(sync_changes.c.seq > cursor)
                    .order_by(sync_changes.c.seq)
                )
            ]

    cursor = max(seq for seq, _ in read_after(0))
    now = datetime.now(UTC)
    a = OpenWriter(
        engine,
        lambda conn: write_override(conn, "S01", "P001", {"shelf_label": "A-1"}, actor="t", now=now) and None,
    )
    assert a.wrote.wait(DEADLINE_S)
    # A catalog change through the products trigger, on another connection: queues behind A.
    b = threading.Thread(target=upsert_products, args=(engine, [{**product, "price_cents": 275}]))
    b.start()
    _poll(lambda: bool(_advisory_waiters(engine)), "the catalog change to queue on the change-log lock")
    assert read_after(cursor) == []
    a.commit()
    b.join(DEADLINE_S)
    seen = read_after(cursor)
    assert [entity for _, entity in seen] == ["product_override", "product"]
    assert seen[0][0] < seen[1][0]


def _advisory_waiters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
        )


def test_concurrent_audit_writers_keep_one_chain(settings: Settings, ops_backend: str) -> None:
    engine = get_engine(settings.ops_store)

    def write(w: int) -> None:
        for i in range(15):
            append_audit(
                engine,
                {
                    "category": "authentication",
                    "action": "login_failure",
                    "outcome": "failure",
                    "actor": f"u{w}-{i}",
                },
            )

    threads = [threading.Thread(target=write, args=(w,)) for w in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    report = verify_audit_chain(engine)
    assert report.ok, report
    assert report.checked == 5 * 15

"""Tier 2: the ingest assets and their great-expectations check on a real SQLite ops store and DuckDB file."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest
from sqlalchemy import Engine

from chainsync.ops_store.events import InboxRow, append_events, max_seq
from chainsync.settings import Settings
from pipelines.defs.ingest.assets import raw_products, raw_sales_events, raw_stores
from pipelines.defs.ingest.checks import raw_sale_lines_expectations, validate_sale_lines
from pipelines.defs.ingest.warehouse import ensure_schema, land_events, refresh_catalog, watermarks
from pipelines.resources import OpsStoreResource, PipelineConfig, Warehouse, build_resources
from tests.pipelines.chain import append, other_events, sale_events
from tests.pipelines.conftest import START


def _resources(settings: Settings) -> dict[str, object]:
    return {
        "ops_store": OpsStoreResource(url=settings.ops_store),
        "warehouse": Warehouse(database=str(settings.warehouse)),
    }


def _land_all(settings: Settings, engine: Engine) -> dict[str, int]:
    """Call the ingest asset functions directly, as Dagster would, and return the events landed."""
    resources = _resources(settings)
    for asset in (raw_stores, raw_products):
        asset(**resources)  # type: ignore[operator]
    result = raw_sales_events(  # type: ignore[operator]
        context=dg.build_asset_context(),
        pipeline_config=PipelineConfig(serving_dir=str(settings.serving)),
        **resources,
    )
    return {k: v for k, v in result.metadata.items() if isinstance(v, int)}  # type: ignore[union-attr]


def test_ingest_lands_only_events_above_the_watermark(
    settings: Settings, ops_engine: Engine, catalog
) -> None:  # type: ignore[no-untyped-def]
    stores, prices = catalog
    first = sale_events(stores, prices, START, days=5, seed=1)
    append(ops_engine, first)
    landed = _land_all(settings, ops_engine)
    assert landed["events_landed"] == len(first)
    assert landed["watermark"] == max_seq(ops_engine)
    assert landed["sale_lines_quarantined"] == 0

    second = sale_events(stores, prices, START + timedelta(days=5), days=2, seed=2)
    append(ops_engine, second)
    landed = _land_all(settings, ops_engine)
    assert landed["events_landed"] == len(second)
    assert landed["watermark_before"] == len(first)

    assert _land_all(settings, ops_engine)["events_landed"] == 0  # nothing new: nothing landed

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert con.execute("select count(*), count(distinct event_id) from raw.sales_events").fetchone() == (
            len(first) + len(second),
            len(first) + len(second),
        )
        lines = sum(len(e.lines) for e in first + second)
        assert con.execute("select count(*) from raw.sale_lines").fetchone() == (lines,)
        assert watermarks(con)["sale"] == max_seq(ops_engine)


def test_other_event_types_land_with_their_own_watermarks(
    settings: Settings, ops_engine: Engine, catalog
) -> None:  # type: ignore[no-untyped-def]
    stores, prices = catalog
    append(ops_engine, sale_events(stores, prices, START, days=1, seed=1))
    others = other_events(stores, prices, START, days=14, seed=1)
    append(ops_engine, others)
    with duckdb.connect(str(settings.warehouse)) as con:
        ensure_schema(con)
        counts = {t: land_events(con, ops_engine, t).events for t in ("inventory", "security", "sync")}
        assert sum(counts.values()) == len(others)
        assert counts["inventory"] == 2 * len(stores) * len(prices)
        assert "sale" not in watermarks(con)  # sales were not landed yet; their watermark is untouched
        assert land_events(con, ops_engine, "sync").events == 0


def _raw_sale(store: str, product: str, **line: object) -> InboxRow:
    occurred = line.pop("occurred_at", datetime(2026, 1, 2, 10, tzinfo=UTC))
    payload = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": occurred.isoformat(),  # type: ignore[attr-defined]
        "store_id": store,
        "device_id": "T1",
        "transaction_id": f"tx-{uuid.uuid4().hex[:8]}",
        "kind": line.pop("kind", "sale"),
        "cashier_id": "C1",
        "payment_type": line.pop("payment_type", "card"),
        "lines": [
            {"product_id": product, "quantity": 1, "unit_price_cents": 500, "discount_cents": 0, **line}
        ],
    }
    return InboxRow(payload["event_id"], "sale", store, "T1", occurred, json.dumps(payload))  # type: ignore[arg-type]


def test_bad_lines_are_quarantined_with_a_reason(settings: Settings, ops_engine: Engine, catalog) -> None:  # type: ignore[no-untyped-def]
    # Rows written past the API's validation (an old importer, a manual fix) must not reach the marts.
    stores, prices = catalog
    product = next(iter(prices))
    received = datetime(2026, 1, 2, 12, tzinfo=UTC)
    rows = [
        _raw_sale(stores[0], product),
        _raw_sale(stores[0], "P-UNKNOWN"),
        _raw_sale("S-UNKNOWN", product),
        _raw_sale(stores[0], product, quantity=0),
        _raw_sale(stores[0], product, discount_cents=900),
        _raw_sale(stores[0], product, kind="gift"),
        _raw_sale(stores[0], product, unit_price_cents=None),
        _raw_sale(stores[0], product, payment_type="bitcoin"),
        _raw_sale(stores[0], product, occurred_at=datetime(2026, 3, 1, tzinfo=UTC)),
    ]
    append_events(ops_engine, rows, received_at=received)
    landed = _land_all(settings, ops_engine)
    assert landed["sale_lines_landed"] == 1
    assert landed["sale_lines_quarantined"] == 8
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        reasons = dict(
            con.execute("select reason, count(*) from raw.sale_lines_quarantine group by 1").fetchall()
        )
    assert reasons == {
        "unknown product": 1,
        "unknown store": 1,
        "non-positive quantity": 1,
        "discount exceeds amount": 1,
        "unknown kind": 1,
        "unknown payment type": 1,
        "missing field": 1,
        "occurred_at in the future": 1,
    }

    # The blocking GX check passes on what was kept and reports the quarantine.
    check = raw_sale_lines_expectations(  # type: ignore[operator]
        warehouse=Warehouse(database=str(settings.warehouse)),
        pipeline_config=PipelineConfig(serving_dir=str(settings.serving)),
    )
    assert check.passed
    assert check.metadata["quarantined_in_batch"].value == 8
    assert check.metadata["lines_validated"].value == 1


@pytest.mark.parametrize("source", ["pandas", "warehouse"])
def test_gx_suite_fails_on_bad_lines(source: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from pipelines.defs.ingest.checks import read_new_lines

    def frame(rows: list[dict]) -> pd.DataFrame:  # type: ignore[type-arg]
        plain = pd.DataFrame(rows)
        if source == "pandas":
            return plain
        # As the check reads them: from raw.sale_lines (microsecond timestamps), the suite's columns, text
        # as categoricals. The verdicts must not change.
        with duckdb.connect(str(tmp_path / f"warehouse-{uuid.uuid4().hex}.duckdb")) as con:
            ensure_schema(con)
            con.register("rows", plain)
            con.execute("insert into raw.sale_lines by name select * from rows")
            return read_new_lines(con, 0, 10**9)

    good = {
        "event_id": "e1",
        "line_no": 1,
        "transaction_id": "t1",
        "kind": "sale",
        "cashier_id": "c",
        "payment_type": "card",
        "product_id": "P1",
        "quantity": 2,
        "unit_price_cents": 100,
        "discount_cents": 0,
        "occurred_at": pd.Timestamp("2026-01-01"),
        "store_id": "S1",
        "device_id": "T1",
        "received_at": pd.Timestamp("2026-01-01"),
        "seq": 1,
    }
    assert validate_sale_lines(frame([good]), ["S1"], ["P1"])["success"]
    bad = frame(
        [
            good,
            {**good, "line_no": 2, "quantity": 0, "store_id": "S9", "kind": "gift"},
            {**good, "line_no": 3, "product_id": None, "payment_type": "barter"},
            {**good, "line_no": 4, "occurred_at": pd.Timestamp("1999-12-31")},
            {**good, "line_no": 5, "occurred_at": pd.Timestamp("2099-01-01")},
            {**good, "line_no": 6, "transaction_id": None},
            {**good, "line_no": 7, "event_id": None},
            good,  # the same (event_id, line_no) twice
        ]
    )
    if source == "warehouse":
        assert isinstance(bad["store_id"].dtype, pd.CategoricalDtype)
        assert "cashier_id" not in bad.columns  # no expectation reads it
        assert pd.api.types.is_numeric_dtype(bad["event_id"])  # ids as codes: null and uniqueness kept
    outcome = validate_sale_lines(bad, ["S1"], ["P1"])
    assert not outcome["success"]
    failed = set(outcome["failed"])
    assert {
        "expect_column_values_to_be_between(quantity)",
        "expect_column_values_to_be_in_set(store_id)",
        "expect_column_values_to_be_in_set(kind)",
        "expect_column_values_to_be_in_set(payment_type)",
        "expect_column_values_to_not_be_null(product_id)",
        "expect_column_values_to_not_be_null(transaction_id)",
        "expect_column_values_to_not_be_null(event_id)",
        "expect_column_values_to_be_between(occurred_at)",
        "expect_column_values_to_be_between(seconds_ahead_of_receipt)",
        "expect_compound_columns_to_be_unique(['event_id', 'line_no'])",
    } <= failed, failed
    if source == "warehouse":
        # A date pandas cannot hold in nanoseconds is still judged, not a crash.
        ancient = frame([good, {**good, "line_no": 2, "occurred_at": datetime(1, 1, 1)}])
        assert set(validate_sale_lines(ancient, ["S1"], ["P1"])["failed"]) == {
            "expect_column_values_to_be_between(occurred_at)"
        }


@pytest.mark.parametrize("change", [False, True])
def test_catalog_refresh_only_when_changed(
    settings: Settings, ops_engine: Engine, catalog, change: bool
) -> None:  # type: ignore[no-untyped-def]
    from chainsync.ops_store.catalog import upsert_stores
    from chainsync.ops_store.tables import stores as stores_table

    with duckdb.connect(str(settings.warehouse)) as con:
        ensure_schema(con)
        assert refresh_catalog(con, ops_engine, stores_table) == (2, True)
        if change:
            upsert_stores(
                ops_engine,
                [
                    {
                        "store_id": "S99",
                        "name": "New",
                        "region": "South",
                        "city": "Bergen",
                        "opened_on": None,
                        "timezone": "UTC",
                    }
                ],
            )
        rows, changed = refresh_catalog(con, ops_engine, stores_table)
        assert changed is change
        assert con.execute("select count(*) from raw.stores").fetchone() == (rows,)


def test_sensor_requests_a_run_only_for_unlanded_events(
    settings: Settings, ops_engine: Engine, catalog
) -> None:  # type: ignore[no-untyped-def]
    from pipelines.sensors import new_events_sensor

    stores, prices = catalog
    # The sensor also reads the dbt vars (a changed risk setting plans the whole marts cadence).
    resources = {**_resources(settings), "dbt": build_resources(settings)["dbt"]}
    with duckdb.connect(str(settings.warehouse)) as con:
        ensure_schema(con)
    assert isinstance(new_events_sensor(dg.build_sensor_context(resources=resources)), dg.SkipReason)

    append(ops_engine, sale_events(stores, prices, START, days=1, seed=3))
    result = new_events_sensor(dg.build_sensor_context(resources=resources))
    assert isinstance(result, dg.SensorResult) and len(result.run_requests or []) == 1
    assert result.cursor == str(max_seq(ops_engine))

    _land_all(settings, ops_engine)
    assert isinstance(new_events_sensor(dg.build_sensor_context(resources=resources)), dg.SkipReason)


def test_landing_reads_committed_rows_while_the_api_holds_a_write_transaction(
    settings: Settings, ops_engine: Engine, catalog
) -> None:  # type: ignore[no-untyped-def]
    # WAL: the pipeline's read-only connection neither waits for nor sees an uncommitted API transaction.
    from chainsync.ops_store.events import append_in_transaction

    stores, prices = catalog
    append(ops_engine, sale_events(stores, prices, START, days=1, seed=4))
    committed = max_seq(ops_engine)
    pending = sale_events(stores, prices, START + timedelta(days=1), days=1, seed=5)
    with ops_engine.begin() as conn:  # BEGIN IMMEDIATE: holds the write lock until the block ends
        append_in_transaction(conn, [InboxRow.from_event(e) for e in pending])
        started = time.perf_counter()
        landed = _land_all(settings, ops_engine)
        assert time.perf_counter() - started < 10
        assert landed["watermark"] == committed
    assert _land_all(settings, ops_engine)["events_landed"] == len(pending)


@pytest.mark.slow
def test_a_failing_suite_blocks_the_dbt_build(settings: Settings, ops_engine: Engine, catalog) -> None:  # type: ignore[no-untyped-def]
    from pipelines.run import run_pipeline

    stores, prices = catalog
    append(ops_engine, sale_events(stores, prices, START, days=2, seed=6))
    _land_all(settings, ops_engine)
    with duckdb.connect(str(settings.warehouse)) as con:
        # A bad line that got past the quarantine rules (a rule missing for a new field, say).
        con.execute("update raw.sale_lines set quantity = 0 where line_no = 1 and seq = 1")
    result = run_pipeline(settings, selection="key:raw_sales_events,key:stg_pos__sale_lines")
    assert not result.success
    assert result.failed_checks == ["raw_sales_events:raw_sale_lines_expectations"]
    assert "stg_pos__sale_lines" not in result.materialized


def test_an_imported_chain_lands_every_event_once(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`chainsync import` of a tiny generated chain, then the landing: every event of every type is in the
    warehouse once, and the live figures of the imported sales add up to the landed ones."""
    from datetime import date

    from sqlalchemy import func, select

    from chainsync.ops_store import get_engine
    from chainsync.ops_store.tables import live_store_sales
    from tools.generator import generate_chain
    from tools.importer import import_generated

    chain = tmp_path / "chain"
    generate_chain(chain, stores=2, products=8, days=28, seed=5, end=date(2026, 11, 30))
    engine = get_engine(settings.ops_store)
    summary = import_generated(engine, chain, batch_size=400)
    with duckdb.connect(str(settings.warehouse)) as con:
        ensure_schema(con)
        for event_type, applied in summary.applied.items():
            assert land_events(con, engine, event_type).events == applied > 0
            table = {"sale": "sales_events", "inventory": "inventory_events"}.get(
                event_type, f"{event_type}_events"
            )
            assert con.execute(f"select count(*), count(distinct event_id) from raw.{table}").fetchone() == (
                applied,
                applied,
            )
        landed_net = con.execute(
            "select sum(case kind when 'sale' then 1 when 'refund' then -1 else 0 end"
            " * (quantity * unit_price_cents - discount_cents))"
            # (the catalog is not refreshed here, so lines wait in quarantine as of unknown products)
            " from (from raw.sale_lines union all by name from raw.sale_lines_quarantine)"
        ).fetchone()[0]  # type: ignore[index]
    with engine.connect() as conn:
        live_net = conn.execute(select(func.sum(live_store_sales.c.net_revenue_cents))).scalar_one()
    assert int(live_net) == landed_net != 0


def test_bulk_reader_returns_what_the_watermark_read_returns(
    settings: Settings, ops_engine: Engine, catalog
) -> None:  # type: ignore[no-untyped-def]
    """``export.read_events_after`` (raw sqlite3 / COPY into Arrow) against ``iter_events_after``
    (SQLAlchemy) on the same ops store: the same rows, values and order, for every event type and
    watermark, across chunk boundaries, with awkward values (nulls, empty strings, quotes, commas, raw
    newlines and non-ASCII text in payloads, whole-second and microsecond timestamps)."""
    from chainsync.ops_store.events import iter_events_after
    from chainsync.ops_store.export import EVENT_SCHEMA, read_events_after

    stores, prices = catalog
    append(ops_engine, sale_events(stores, prices, START, days=3, seed=11))
    append(ops_engine, other_events(stores, prices, START, days=3, seed=11))
    odd = [
        InboxRow(str(uuid.uuid4()), "sale", None, None, datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC), "{}"),
        InboxRow(
            str(uuid.uuid4()),
            "sale",
            "",
            'T,"1"',
            datetime(2026, 1, 5, 10, 0, 0, 1, tzinfo=UTC),
            '{"note": "a, \\"quoted\\"\nline", "name": "Crème brûlée ☕", "empty": ""}',
        ),
        InboxRow(
            str(uuid.uuid4()),
            "inventory",
            stores[0],
            "NULL",
            datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            '{"x": "\\\\N"}',
        ),
    ]
    append_events(ops_engine, odd, received_at=datetime(2026, 1, 6, 0, 0, tzinfo=UTC))
    top = max_seq(ops_engine)

    def as_rows(batches: list) -> list[tuple]:  # type: ignore[type-arg]
        assert all(b.schema == EVENT_SCHEMA for b in batches)
        return [tuple(r.values()) for b in batches for r in b.to_pylist()]

    checked = 0
    for event_type in ("sale", "inventory", "security", "sync", "nothing"):
        for after in (0, 7, top - 2, top):
            expected = [row for chunk in iter_events_after(ops_engine, event_type, after) for row in chunk]
            got = as_rows(list(read_events_after(ops_engine, event_type, after, chunk_rows=5)))
            assert got == expected, (event_type, after)
            checked += len(got)
    assert checked > 100
    odd_rows = {r[0]: r for r in as_rows(list(read_events_after(ops_engine, "sale", top - 3)))}
    assert odd_rows[odd[0].event_id][2:4] == (None, None)
    assert odd_rows[odd[1].event_id][2:4] == ("", 'T,"1"')
    assert odd_rows[odd[1].event_id][6] == odd[1].payload
    assert odd_rows[odd[1].event_id][4] == datetime(2026, 1, 5, 10, 0, 0, 1)

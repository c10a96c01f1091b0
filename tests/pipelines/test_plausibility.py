"""Plausible sale lines for imported data: a real import (``chainsync import`` of a daily-sales CSV) into a
real ops store, landed by the real Dagster assets with their blocking great-expectations check."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
from sqlalchemy import Engine

from chainsync.settings import Settings
from pipelines.defs.ingest.checks import validate_sale_lines
from pipelines.defs.ingest.plausibility import (
    BEFORE_EARLIEST,
    IN_THE_FUTURE,
    PRICE_ABOVE_BOUND,
    QUANTITY_ABOVE_BOUND,
    LineRules,
)
from pipelines.run import run_pipeline
from tests.pipelines.chain import seed_catalog
from tests.pipelines.conftest import make_settings
from tools.importer import import_daily_sales_csv

CSV = """store_id,product_id,date,units,revenue_cents
S01,P001,2026-01-05,3,1050
S01,P002,2026-01-05,5000,2500000
S01,P001,2099-01-01,2,700
S01,P001,1999-12-31,1,350
S02,P001,2026-01-06,4,1400
S02,P002,2026-01-06,1,20000000
S02,P002,2026-01-07,6,3000
"""


def _landed(settings: Settings) -> tuple[list[tuple], dict[str, int]]:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        kept = con.execute(
            "select store_id, product_id, cast(occurred_at as date), quantity"
            " from raw.sale_lines order by all"
        ).fetchall()
        reasons = dict(
            con.execute("select reason, count(*) from raw.sale_lines_quarantine group by all").fetchall()
        )
    return kept, reasons


def test_imported_lines_outside_the_bounds_are_quarantined_with_reasons(
    settings: Settings, ops_engine: Engine, tmp_path: Path
) -> None:
    seed_catalog(ops_engine, stores=2, products=2)
    csv = tmp_path / "history.csv"
    csv.write_text(CSV)
    summary = import_daily_sales_csv(ops_engine, csv)
    assert summary.applied["sale"] == 7  # the importer takes history as it is; the pipeline judges it
    result = run_pipeline(settings, selection="raw_stores,raw_products,raw_sales_events")
    assert result.success and not result.failed_checks, result
    kept, reasons = _landed(settings)
    assert reasons == {
        QUANTITY_ABOVE_BOUND: 1,  # 5,000 units on one line
        IN_THE_FUTURE: 1,  # dated 2099: beyond the clock skew past the import time
        BEFORE_EARLIEST: 1,  # dated 1999
        PRICE_ABOVE_BOUND: 1,  # 200,000.00 a unit
    }
    # The rest lands, old history included (imports are not held to the terminals' 30-day window).
    assert [(s, p, str(d), q) for s, p, d, q in kept] == [
        ("S01", "P001", "2026-01-05", 3),
        ("S02", "P001", "2026-01-06", 4),
        ("S02", "P002", "2026-01-07", 6),
    ]
    landed = result.metadata["raw_sales_events"]
    assert landed["sale_lines_quarantined"] == 4 and landed["sale_lines_landed"] == 3


def test_the_bounds_follow_the_settings(tmp_path: Path, ops_engine: Engine) -> None:
    # A chain that sells by the pallet raises the per-line bound once, for the API and the pipeline alike.
    seed_catalog(ops_engine, stores=2, products=2)
    csv = tmp_path / "history.csv"
    csv.write_text(CSV)
    import_daily_sales_csv(ops_engine, csv)
    wide = make_settings(
        tmp_path / "data",
        ops_store_url=ops_engine.url.render_as_string(hide_password=False),
        event_max_line_quantity=10_000,
    )
    assert run_pipeline(wide, selection="raw_stores,raw_products,raw_sales_events").success
    _kept, reasons = _landed(wide)
    assert QUANTITY_ABOVE_BOUND not in reasons and reasons[IN_THE_FUTURE] == 1


def test_the_gx_suite_fails_on_lines_that_break_the_bounds() -> None:
    # The suite guards the same rules in case a line gets past the quarantine (a rule dropped, say).
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
        "occurred_at": pd.Timestamp("2026-01-01 10:00"),
        "store_id": "S1",
        "device_id": "T1",
        "received_at": pd.Timestamp("2026-01-01 10:05"),
        "seq": 1,
    }
    assert validate_sale_lines(pd.DataFrame([good]), ["S1"], ["P1"])["success"]
    for change, expectation in (
        ({"quantity": 5000}, "quantity"),
        ({"unit_price_cents": 10_000_001}, "unit_price_cents"),
        ({"occurred_at": pd.Timestamp("2099-01-01")}, "seconds_ahead_of_receipt"),
        ({"occurred_at": pd.Timestamp(datetime(1999, 12, 31))}, "occurred_at"),
    ):
        outcome = validate_sale_lines(pd.DataFrame([good, {**good, "line_no": 2, **change}]), ["S1"], ["P1"])
        assert not outcome["success"], change
        assert any(expectation in failed for failed in outcome["failed"]), (change, outcome["failed"])
    # Looser settings, looser suite.
    big = pd.DataFrame([{**good, "quantity": 5000}])
    assert validate_sale_lines(big, ["S1"], ["P1"], LineRules(max_line_quantity=10_000))["success"]

"""The two cadences, for real (ingest, GX, dbt, anomaly scoring, snapshots): marts runs that follow new
events build only what the new data touches and end row for row where a rebuild from scratch ends; the
daily forecast run adds the forecasts; each snapshot carries over what its run did not change."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chainsync.ops_store import get_engine
from chainsync.schemas.events import InventoryEvent
from chainsync.serving import current_snapshot
from chainsync.settings import Settings
from pipelines.run import run_pipeline
from tests.pipelines.chain import append, other_events, sale_events, seed_catalog
from tests.pipelines.conftest import make_settings

pytestmark = pytest.mark.slow

START = date(2026, 1, 5)
DAYS = 42  # six weeks of history, then three more days and a late offline batch


def _batches(settings: Settings) -> tuple[list, list]:  # type: ignore[type-arg]
    """The first load (six weeks of sales plus stock, security and sync events) and what arrives later:
    three new days of sales, an offline till's sales of an earlier week, new shelf counts and receipts."""
    stores, prices = seed_catalog(get_engine(settings.ops_store), stores=2, products=6)
    first = sale_events(stores, prices, START, DAYS, seed=1) + other_events(
        stores, prices, START, DAYS, seed=1
    )
    later = sale_events(stores, prices, START + timedelta(days=DAYS), 3, seed=2)
    late = sale_events(stores[:1], prices, START + timedelta(days=20), 2, seed=3)
    # New shelf counts and receipts too (the incremental staging of movements appends them).
    stock = [
        e
        for e in other_events(stores, prices, START + timedelta(days=DAYS), 3, seed=2)
        if isinstance(e, InventoryEvent)
    ]
    return first, later + late + stock


def _tables(settings: Settings) -> dict[str, pl.DataFrame]:
    """Every mart (table or view), anomaly table and incremental staging or intermediate table of the
    warehouse, rows in a canonical order."""
    out = {}
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        names = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables"
            " where table_schema in ('marts', 'analytics')"
            " or (table_schema in ('staging', 'intermediate') and table_type = 'BASE TABLE') order by 1"
        ).fetchall()
        for (name,) in names:
            frame = pl.from_arrow(con.sql(f"select * from {name}").to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            out[name] = frame.sort(frame.columns, nulls_last=True)
    return out


@pytest.fixture(scope="module")
def incremental(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list]:  # type: ignore[type-arg]
    settings = make_settings(tmp_path_factory.mktemp("incremental") / "data")
    first, later = _batches(settings)
    engine = get_engine(settings.ops_store)
    append(engine, first)
    results = [run_pipeline(settings, job="marts_job")]
    append(engine, later)
    results.append(run_pipeline(settings, job="marts_job"))
    results.append(run_pipeline(settings, job="marts_job"))
    return settings, results


def test_incremental_marts_runs_equal_a_rebuild_from_scratch(
    incremental: tuple[Settings, list],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    settings, results = incremental
    assert all(r.success for r in results)
    scratch = make_settings(tmp_path / "data")
    first, later = _batches(scratch)
    engine = get_engine(scratch.ops_store)
    append(engine, first)  # the same events, received at the same times: only the runs differ
    append(engine, later)
    assert run_pipeline(scratch, job="marts_job").success

    built, rebuilt = _tables(settings), _tables(scratch)
    assert set(built) == set(rebuilt)
    assert {
        "marts.fct_sales_daily",
        "marts.fct_stock_levels",
        "intermediate.int_stock_levels",
        "staging.stg_pos__inventory_movements",
        "analytics.sales_anomalies",
        "analytics.cashier_anomalies",
    } <= set(built)
    assert "analytics.demand_forecast" not in built  # forecasts keep their own cadence
    for name in built:
        assert_frame_equal(built[name], rebuilt[name], check_exact=False, rel_tol=1e-9), name
    # And what readers read: every table of the last snapshot (fct_sales_daily in monthly parts, some
    # carried over from earlier publishes) equals the rebuild's.
    _assert_same_snapshots(settings, scratch)
    # The late offline batch landed on its own (earlier) days, not on the day it arrived.
    late_day = START + timedelta(days=20)
    assert built["marts.fct_sales_daily"].filter(pl.col("sale_date") == late_day).height > 0


def _assert_same_snapshots(settings: Settings, scratch: Settings) -> None:
    served, served_scratch = current_snapshot(settings.serving), current_snapshot(scratch.serving)
    assert served is not None and served_scratch is not None
    assert set(served.tables) == set(served_scratch.tables)
    for table in served.tables:
        frame, expected = served.read(table), served_scratch.read(table)
        (
            assert_frame_equal(
                frame.sort(frame.columns, nulls_last=True),
                expected.sort(expected.columns, nulls_last=True),
                check_exact=False,
                rel_tol=1e-9,
            ),
            table,
        )


def test_a_marts_run_builds_only_what_new_sales_touch(incremental: tuple[Settings, list]) -> None:  # type: ignore[type-arg]
    settings, (first, second, idle) = incremental
    assert {"raw_sales_events", "fct_security_events", "fct_sync_sessions", "serving_snapshot"} <= set(
        first.materialized
    )
    assert {"raw_sales_events", "stg_pos__sale_lines", "fct_sales_daily", "sales_anomalies"} <= set(
        second.materialized
    )
    # The scores read their features from the warehouse: the second run re-aggregated only the store-days
    # its lines touched (three new days of two stores, two late days of one), not the six weeks before.
    for detector in ("sales_anomalies", "cashier_anomalies"):
        assert first.metadata[detector]["features_rebuilt"] is True
        refresh = second.metadata[detector]
        assert refresh["features_rebuilt"] is False and refresh["store_days_refreshed"] == 2 * 3 + 2
    untouched = {"raw_security_events", "fct_security_events", "fct_sync_sessions", "security_anomalies"}
    assert not untouched & set(second.materialized)
    assert not {"demand_forecast", "reorder_suggestions"} & set(first.materialized + second.materialized)
    # The second snapshot rewrote the sales tables and kept the security ones from the first.
    published = second.metadata["serving_snapshot"]["tables_published"]
    assert "fct_sales_daily" in published and "fct_security_events" not in published
    # The new days fall in February, the late batch in January: both months rewritten.
    assert second.metadata["serving_snapshot"]["parts_fct_sales_daily"] == "2026-01, 2026-02"
    snapshot = current_snapshot(settings.serving)
    assert snapshot is not None and "fct_security_events" in snapshot.tables
    # Nothing new: no run at all.
    assert idle.success and idle.run_id == "" and idle.materialized == []
    # dbt's unit tests (fixtures, not warehouse data) ran in the first build of the project, not again.
    builds = [
        event["data"]["args"]["invocation_command"]
        for event in map(json.loads, (settings.data_dir / "dbt_target" / "dbt.log").read_text().splitlines())
        if event["info"]["name"] == "MainReportArgs"
    ]
    assert len(builds) == 2
    assert "unit_test" not in builds[0] and "--exclude-resource-type unit_test" in builds[1]


def test_the_forecast_run_adds_forecasts_and_keeps_the_marts(incremental: tuple[Settings, list]) -> None:  # type: ignore[type-arg]
    settings, _ = incremental
    before = current_snapshot(settings.serving)
    assert before is not None and "demand_forecast" not in before.tables
    result = run_pipeline(settings, job="forecast_job")
    assert result.success
    assert {"demand_forecast", "forecast_accuracy", "reorder_suggestions", "serving_snapshot"} <= set(
        result.materialized
    )
    assert "raw_sales_events" not in result.materialized and "fct_sales_daily" not in result.materialized
    after = current_snapshot(settings.serving)
    assert after is not None and {"demand_forecast", "fct_sales_daily"} <= set(after.tables)
    assert after.read("demand_forecast").height == 12 * 90
    assert_frame_equal(after.read("fct_sales_daily"), before.read("fct_sales_daily"))


def test_sales_after_every_shelf_count_leave_the_inventory_scores_standing(tmp_path: Path) -> None:
    """New sales after every pair's last count change no count interval: the shrinkage scores are not
    recomputed, the snapshot carries their published copy over, and both equal a rebuild from scratch."""
    settings = make_settings(tmp_path / "incremental" / "data")
    stores, prices = seed_catalog(get_engine(settings.ops_store), stores=2, products=6)
    # Shelf counts on day 0 and day 30 (an interval to score), then three days of sales after both.
    recount = [
        e
        for e in other_events(stores, prices, START + timedelta(days=30), 2, seed=4)
        if isinstance(e, InventoryEvent)
    ]
    first = (
        sale_events(stores, prices, START, DAYS, seed=1)
        + other_events(stores, prices, START, DAYS, seed=1)
        + recount
    )
    later = sale_events(stores, prices, START + timedelta(days=DAYS), 3, seed=2)
    engine = get_engine(settings.ops_store)
    append(engine, first)
    assert run_pipeline(settings, job="marts_job").success
    append(engine, later)
    second = run_pipeline(settings, job="marts_job")
    assert second.success
    inventory = second.metadata["inventory_anomalies"]
    assert inventory["unchanged"] is True and inventory["pairs_refreshed"] == 0
    published = second.metadata["serving_snapshot"]["tables_published"]
    assert "inventory_anomalies" not in published and "fct_sales_daily" in published
    # Three new days of February: January's sales are carried over, not rewritten.
    assert second.metadata["serving_snapshot"]["parts_fct_sales_daily"] == "2026-02"

    scratch = make_settings(tmp_path / "scratch" / "data")
    seed_catalog(get_engine(scratch.ops_store), stores=2, products=6)
    append(get_engine(scratch.ops_store), first)
    append(get_engine(scratch.ops_store), later)
    assert run_pipeline(scratch, job="marts_job").success
    built, rebuilt = _tables(settings), _tables(scratch)
    assert built["analytics.inventory_anomalies"].height > 0
    for name in ("analytics.inventory_anomalies", "analytics.shrinkage_features", "marts.fct_stock_levels"):
        assert_frame_equal(built[name], rebuilt[name], check_exact=False, rel_tol=1e-9), name
    _assert_same_snapshots(settings, scratch)

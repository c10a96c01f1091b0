"""Tier 3: real materializations of the whole graph (ingest, GX, dbt build, statsforecast, pyod, snapshot)
on a small chain, run once per module and then incrementally."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest
from sqlalchemy import Engine

from chainsync.ops_store import get_engine
from chainsync.ops_store.events import max_seq
from chainsync.serving import current_snapshot
from chainsync.settings import Settings
from pipelines.run import PipelineResult, run_pipeline
from tests.pipelines.chain import ChainTotals, append, sale_events
from tests.pipelines.conftest import make_settings
from tests.pipelines.test_analytics import assert_coherent
from tools.generator import generate_chain
from tools.importer import import_generated

pytestmark = pytest.mark.slow

STORES, PRODUCTS, DAYS = 3, 12, 60
END = date(2026, 3, 1)
SNAPSHOT_TABLES = {
    "fct_sales_daily",
    "dim_store",
    "dim_product",
    "fct_stock_levels",
    "demand_forecast",
    "forecast_accuracy",
    "demand_forecast_totals",
    "reorder_suggestions",
    "sales_anomalies",
    "cashier_anomalies",
    "security_anomalies",
    "inventory_anomalies",
    "business_insights",
    "fct_security_events",
    "fct_ip_risk",
    "fct_sync_sessions",
    "fct_api_performance",
    "performance_anomalies",
    "access_anomalies",
}


@dataclass
class Chain:
    settings: Settings
    engine: Engine
    stores: list[str]
    zones: dict[str, str]
    prices: dict[str, int]
    totals: ChainTotals
    store_days: int
    last_day: date
    first: PipelineResult
    chain_dir: Path


def _expected(chain_dir: Path) -> tuple[ChainTotals, int, date]:
    """Totals over the generated sale lines (refunds subtract, voids excluded), store-days and the last
    sale day, on each store's local business day."""
    zones = dict(pl.read_parquet(chain_dir / "stores.parquet").select("store_id", "timezone").iter_rows())
    lines = pl.read_parquet(chain_dir / "sales_lines" / "*.parquet")
    lines = pl.concat(
        [
            lines.filter(pl.col("store_id") == store).with_columns(
                day=pl.col("occurred_at").dt.convert_time_zone(zone).dt.date()
            )
            for store, zone in zones.items()
        ]
    ).with_columns(
        sign=pl.when(pl.col("kind") == "sale").then(1).when(pl.col("kind") == "refund").then(-1).otherwise(0)
    )
    counted = lines.filter(pl.col("kind") != "void")
    totals = ChainTotals(
        units=int((counted["sign"] * counted["quantity"]).sum()),
        net_revenue_cents=int(
            (
                counted["sign"]
                * (counted["quantity"] * counted["unit_price_cents"] - counted["discount_cents"])
            ).sum()
        ),
        series=set(counted.select("store_id", "product_id").unique().iter_rows()),
    )
    store_days = lines.select("store_id", "day").unique().height
    return totals, store_days, counted["day"].max()  # type: ignore[return-value]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = Path(tmp_path_factory.mktemp("pipeline"))
    settings = make_settings(root / "data")
    engine = get_engine(settings.ops_store)
    generate_chain(root / "chain", stores=STORES, products=PRODUCTS, days=DAYS, seed=7, end=END)
    imported = import_generated(engine, root / "chain")
    assert not any(imported.skipped.values()), imported.skipped
    totals, store_days, last_day = _expected(root / "chain")
    catalog = pl.read_parquet(root / "chain" / "products.parquet")
    prices = dict(zip(catalog["product_id"], catalog["price_cents"], strict=True))
    store_frame = pl.read_parquet(root / "chain" / "stores.parquet")
    stores = store_frame["store_id"].to_list()
    zones = dict(store_frame.select("store_id", "timezone").iter_rows())
    first = run_pipeline(settings)
    yield Chain(settings, engine, stores, zones, prices, totals, store_days, last_day, first, root / "chain")
    engine.dispose()


def _warehouse(chain: Chain) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(chain.settings.warehouse), read_only=True)


def _mart_totals(chain: Chain) -> tuple[int, int]:
    with _warehouse(chain) as con:
        return con.execute(
            "select sum(units_sold), sum(net_revenue_cents) from marts.fct_sales_daily"
        ).fetchone()  # type: ignore[return-value]


def test_full_materialization_publishes_every_table(chain: Chain) -> None:
    assert chain.first.success, chain.first
    assert chain.first.failed_checks == []  # GX suite and every dbt test passed
    assert {
        "raw_sales_events",
        "fct_sales_daily",
        "demand_forecast",
        "sales_anomalies",
        "serving_snapshot",
    } <= set(chain.first.materialized)
    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None
    assert set(snapshot.tables) == SNAPSHOT_TABLES
    assert snapshot.manifest["run_id"] == chain.first.run_id
    assert snapshot.manifest["pipeline"]["events_seq"] == max_seq(chain.engine)
    assert snapshot.read("dim_store").height == STORES
    assert snapshot.read("dim_product").height == PRODUCTS
    assert snapshot.read("fct_stock_levels").height > 0
    assert snapshot.read("fct_security_events").height > 0
    # Every address seen in the security events has its risk row for the dashboards.
    ips = snapshot.read("fct_security_events")["source_ip"].drop_nulls().unique()
    assert set(snapshot.read("fct_ip_risk")["source_ip"].to_list()) >= set(ips.to_list())


def test_marts_total_the_events_appended(chain: Chain) -> None:
    assert _mart_totals(chain) == (chain.totals.units, chain.totals.net_revenue_cents)
    sales = current_snapshot(chain.settings.serving).read("fct_sales_daily")  # type: ignore[union-attr]
    assert sales["net_revenue_cents"].sum() == chain.totals.net_revenue_cents


def test_forecast_covers_every_series_for_the_horizon(chain: Chain) -> None:
    forecast = current_snapshot(chain.settings.serving).read("demand_forecast")  # type: ignore[union-attr]
    horizon = chain.settings.forecast_horizon_days
    series = forecast.select("store_id", "product_id").unique().height
    assert series == len(chain.totals.series)
    assert forecast.height == series * horizon
    assert sorted(forecast["horizon_day"].unique().to_list()) == list(range(1, horizon + 1))
    in_order = (
        (pl.col("lo_95") <= pl.col("lo_80"))
        & (pl.col("lo_80") <= pl.col("yhat"))
        & (pl.col("yhat") <= pl.col("hi_80"))
        & (pl.col("hi_80") <= pl.col("hi_95"))
        & (pl.col("lo_95") >= 0)
    )
    assert forecast.filter(~in_order).is_empty()
    assert (forecast["cutoff"] == chain.last_day).all()
    assert forecast["confidence"].is_between(0, 1).all() and forecast["pattern"].null_count() == 0

    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None
    accuracy = snapshot.read("forecast_accuracy")
    assert accuracy.filter(pl.col("level") == "series").height == series
    chain_row = accuracy.filter(pl.col("level") == "chain").row(0, named=True)
    assert chain_row["n_series"] == series and chain_row["mase"] > 0
    assert 0 <= chain_row["coverage_80"] <= chain_row["coverage_95"] <= 1
    # The 7-day band's factor on independent-days half-widths, measured on the hold-out weeks.
    assert chain_row["weekly_band_factor"] > 0
    # Reconciled (MinTrace wls_struct, the default), and exactly coherent: every store's, category's and the
    # chain's total is the sum of its published series on every day of the horizon.
    assert chain.first.metadata["demand_forecast"]["reconciliation"] == "wls_struct"
    assert_coherent(forecast, snapshot.read("demand_forecast_totals"), snapshot.read("dim_product"))
    reorder = snapshot.read("reorder_suggestions")
    assert reorder.height == series
    assert (reorder["reorder_point"] >= reorder["safety_stock"]).all()
    assert (reorder.filter(~pl.col("needs_reorder"))["reorder_quantity"] == 0).all()
    ordered = reorder.filter(pl.col("needs_reorder"))
    assert (ordered["on_hand_units"] + ordered["reorder_quantity"] >= ordered["reorder_point"] - 1e-9).all()


def test_anomalies_score_every_store_day(chain: Chain) -> None:
    anomalies = current_snapshot(chain.settings.serving).read("sales_anomalies")  # type: ignore[union-attr]
    assert anomalies.height == chain.store_days
    assert anomalies["threshold"].n_unique() == 1
    assert set(anomalies["severity"].unique()) <= {"low", "medium", "high", "critical"}


def test_performance_anomalies_flag_the_planted_degradations_only(chain: Chain) -> None:
    """The generator's request log reaches the ops store, the hourly mart and the detector: every planted
    latency regression and error burst is flagged on its endpoint and hours, and nothing else is."""
    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None
    hourly = snapshot.read("fct_api_performance")
    with chain.engine.connect() as conn:
        logged = conn.exec_driver_sql("select sum(requests), sum(errors_5xx) from request_stats").one()
    assert (hourly["requests"].sum(), hourly["errors_5xx"].sum()) == tuple(logged)

    truth = pl.read_parquet(chain.chain_dir / "ground_truth.parquet").filter(pl.col("route").is_not_null())
    assert set(truth["anomaly_type"]) == {"latency_regression", "error_burst"}
    scores = snapshot.read("performance_anomalies")
    assert scores.height == hourly.height  # every endpoint-hour scored (quiet ones never flagged)
    flagged = scores.filter(pl.col("is_anomaly"))
    planted = flagged.join(
        truth.select(endpoint="route", start="start_at", end="end_at"), on="endpoint"
    ).filter(
        (pl.col("hour_start").dt.replace_time_zone("UTC") >= pl.col("start"))
        & (pl.col("hour_start").dt.replace_time_zone("UTC") < pl.col("end"))
    )
    assert planted.select("endpoint", "start").unique().height == truth.height  # every incident found
    assert planted.height == flagged.height  # and no normal hour flagged
    for row in truth.iter_rows(named=True):
        hit = planted.filter(pl.col("start") == row["start_at"]).row(0, named=True)
        driver = "latency_p95" if row["anomaly_type"] == "latency_regression" else "error_rate"
        assert driver in hit["drivers"].split(","), (row, hit)
        assert hit["severity"] in {"medium", "high", "critical"} and hit["max_z"] >= hit["z_threshold"]
        if driver == "latency_p95":
            assert hit["latency_ms_p95"] > hit["expected_latency_p95_hi_ms"] > hit["expected_latency_p95_ms"]
        else:
            assert hit["error_rate_5xx"] > hit["expected_error_rate_hi"]
    quiet = scores.filter(pl.col("requests") < 20)
    assert quiet.height > 0 and not quiet["is_anomaly"].any()


def test_second_run_without_new_events_changes_nothing(chain: Chain) -> None:
    version = current_snapshot(chain.settings.serving).version  # type: ignore[union-attr]
    before = _mart_totals(chain)
    second = run_pipeline(chain.settings)
    assert second.success
    assert all(second.metadata[k].get("events_landed", 0) == 0 for k in second.materialized)
    assert "serving_snapshot" not in second.materialized and "fct_sales_daily" not in second.materialized
    assert second.seconds < 15
    assert current_snapshot(chain.settings.serving).version == version  # type: ignore[union-attr]
    assert _mart_totals(chain) == before


def test_third_run_picks_up_exactly_the_new_events(chain: Chain) -> None:
    before_seq = max_seq(chain.engine, "sale")  # each event type has its own watermark
    new = sale_events(chain.stores, chain.prices, chain.last_day + timedelta(days=1), days=2, seed=8)
    # An offline till syncing late: a sale on an old day, already built into the marts.
    late = sale_events(chain.stores[:1], chain.prices, END - timedelta(days=30), days=1, seed=9, per_day=1)
    for event in new + late:
        chain.totals.add(event)
    append(chain.engine, new + late)

    third = run_pipeline(chain.settings)
    assert third.success, third
    sales_meta = third.metadata["raw_sales_events"]
    assert sales_meta["events_landed"] == len(new) + len(late)
    assert sales_meta["watermark_before"] == before_seq
    assert sales_meta["watermark"] == max_seq(chain.engine)
    assert _mart_totals(chain) == (chain.totals.units, chain.totals.net_revenue_cents)
    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None and snapshot.manifest["run_id"] == third.run_id
    forecast = snapshot.read("demand_forecast")
    local_days = [
        e.occurred_at.astimezone(ZoneInfo(chain.zones[e.store_id])).date() for e in new if e.kind != "void"
    ]
    assert (forecast["cutoff"] == max(local_days)).all()


def test_bottom_up_reconciliation_is_a_per_run_setting_and_coherent(chain: Chain) -> None:
    """FORECAST_RECONCILIATION reaches the asset per run, and bottom_up publishes totals that are exactly the
    sums of the series too. (Sixty days of history give every level a seasonal-naive base forecast, whose
    totals already add up, so MinTrace moves no point here; the totals' bounds tell the runs apart: their
    own conformal half-widths with MinTrace, independent-error sums bottom-up.)"""
    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None
    reconciled_totals = snapshot.read("demand_forecast_totals")
    bottom_up = chain.settings.model_copy(update={"forecast_reconciliation": "bottom_up"})
    result = run_pipeline(bottom_up, selection="demand_forecast,demand_forecast_totals,serving_snapshot")
    assert result.success, result
    assert result.metadata["demand_forecast"]["reconciliation"] == "bottom_up"
    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None and snapshot.manifest["run_id"] == result.run_id
    forecast, totals = snapshot.read("demand_forecast"), snapshot.read("demand_forecast_totals")
    assert forecast.height == len(chain.totals.series) * chain.settings.forecast_horizon_days
    assert_coherent(forecast, totals, snapshot.read("dim_product"))
    both = totals.join(reconciled_totals, on=["level", "key", "ds"], suffix="_mintrace")
    assert both.height == totals.height
    assert (both["hi_80"] - both["hi_80_mintrace"]).abs().max() > 1e-3  # type: ignore[operator]


def test_ai_disabled_publishes_empty_scores(chain: Chain) -> None:
    disabled = chain.settings.model_copy(update={"ai_analytics_enabled": False})
    result = run_pipeline(
        disabled,
        selection="demand_forecast,sales_anomalies,cashier_anomalies,security_anomalies,inventory_anomalies,"
        "performance_anomalies,serving_snapshot",
    )
    assert result.success
    snapshot = current_snapshot(chain.settings.serving)
    assert snapshot is not None
    assert snapshot.read("demand_forecast").is_empty()
    assert snapshot.read("sales_anomalies").is_empty()
    for name in ("cashier_anomalies", "security_anomalies", "inventory_anomalies", "performance_anomalies"):
        scores = snapshot.read(name)
        assert scores.is_empty() and "is_anomaly" in scores.columns, name
    assert set(snapshot.read("demand_forecast").columns) >= {"store_id", "ds", "horizon_day", "yhat", "hi_95"}
    assert snapshot.read("fct_sales_daily").height > 0


def test_the_risk_half_life_reaches_the_ip_risk_mart_per_run(chain: Chain) -> None:
    """CHAINSYNC_RISK_HALF_LIFE_MINUTES reaches fct_ip_risk as a dbt var on each run (chainsync/risk.py's
    model, passed by the dbt resource): a shorter half-life forgets an address's earlier signals sooner."""
    before = current_snapshot(chain.settings.serving).read("fct_ip_risk")  # type: ignore[union-attr]
    short = chain.settings.model_copy(update={"risk_half_life_minutes": 0.5})
    result = run_pipeline(short, selection="fct_ip_risk,serving_snapshot")
    assert result.success, result
    after = current_snapshot(chain.settings.serving).read("fct_ip_risk")  # type: ignore[union-attr]
    both = before.join(after, on="source_ip", suffix="_short")
    assert both.height == before.height > 0
    assert (both["risk_score_short"] <= both["risk_score"]).all()
    assert (both["risk_score_short"] < both["risk_score"]).any()

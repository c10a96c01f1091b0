"""Sales anomalies: the retrospective view (chainsync.anomalies, the method of `chainsync detect`), the
pyod ensemble, one row per store-day, and thresholds that re-flag stored scores without refitting — on sale
lines run through the pipeline's own feature SQL (DuckDB) and, last, a real materialization of the assets
with thresholds from the settings."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

import pipelines.defs.anomalies.scoring as scoring
from chainsync.anomalies import score_panel
from chainsync.settings import Settings
from pipelines.defs.anomalies.scoring import (
    ANOMALY_SCHEMA,
    FEATURES_SQL,
    SalesThresholds,
    flag_store_days,
    score_store_days,
    store_day_scores,
)
from pipelines.resources import build_resources
from tests.pipelines.conftest import make_settings

START = date(2025, 1, 6)  # a Monday
DAYS = 140
STORES = 8
SPIKE = ("S02", START + timedelta(days=110), 3.5)  # store, day, demand multiplier
DROP = ("S05", START + timedelta(days=124), 0.15)
HOLIDAY = (START + timedelta(days=100), 1.7)  # every store busier: not a store anomaly


def sale_lines(seed: int = 7) -> pl.DataFrame:
    """The columns of intermediate.int_sale_lines_localized for ``STORES`` x ``DAYS``: one line per
    transaction, a weekly pattern, 2 % refunds, 1 % voids, a planted spike and drop and a chain holiday."""
    rng = np.random.default_rng(seed)
    weekly = np.array([0.8, 0.85, 0.9, 1.0, 1.3, 1.5, 0.7])
    rows: dict[str, list] = {k: [] for k in ("store_id", "sale_date", "transaction_id", "sale_kind")}
    quantity, price, discount, cashier = [], [], [], []
    for s in range(STORES):
        store = f"S{s + 1:02d}"
        level = 100 + 20 * s
        for d in range(DAYS):
            day = START + timedelta(days=d)
            mean = level * weekly[day.weekday()]
            mean *= HOLIDAY[1] if day == HOLIDAY[0] else 1.0
            for planted in (SPIKE, DROP):
                mean *= planted[2] if (store, day) == planted[:2] else 1.0
            n = int(rng.poisson(mean))
            kinds = rng.choice(["sale", "refund", "void"], size=n, p=[0.97, 0.02, 0.01])
            rows["store_id"] += [store] * n
            rows["sale_date"] += [day] * n
            rows["transaction_id"] += [f"{store}-{d}-{i}" for i in range(n)]
            rows["sale_kind"] += kinds.tolist()
            quantity.append(1 + rng.poisson(1.0, n))
            price.append(rng.integers(300, 1500, n))
            discount.append(np.where(rng.random(n) < 0.1, 50, 0))
            cashier += [f"{store}-C{1 + i % 3:02d}" for i in range(n)]
    return pl.DataFrame(
        {
            **rows,
            "quantity": np.concatenate(quantity),
            "unit_price_cents": np.concatenate(price),
            "discount_cents": np.concatenate(discount),
            "cashier_id": cashier,
        }
    ).with_columns(pl.col("sale_date").cast(pl.Date))


def load_lines(con: duckdb.DuckDBPyConnection, lines: pl.DataFrame) -> None:
    con.execute("create schema if not exists intermediate")
    if "seq" not in lines.columns:  # the landing order, which the stored features follow
        lines = lines.with_row_index("seq", offset=1).with_columns(pl.col("seq").cast(pl.Int64))
    if "occurred_at" not in lines.columns:  # UTC time of the sale: midday of its business day here
        lines = lines.with_columns(
            occurred_at=pl.col("sale_date").cast(pl.Datetime("us")) + pl.duration(hours=12)
        )
    con.register("lines", lines.to_arrow())
    con.execute("create or replace table intermediate.int_sale_lines_localized as select * from lines")
    con.unregister("lines")


@pytest.fixture(scope="module")
def features() -> pl.DataFrame:
    con = duckdb.connect()
    load_lines(con, sale_lines())
    return pl.from_arrow(con.sql(FEATURES_SQL).to_arrow_table())  # type: ignore[return-value]


@pytest.fixture(scope="module")
def raw(features: pl.DataFrame) -> pl.DataFrame:
    return score_store_days(features, store_day_scores(features))


def _row(frame: pl.DataFrame, store: str, day: date) -> dict:
    return frame.filter((pl.col("store_id") == store) & (pl.col("sale_date") == day)).row(0, named=True)


def test_store_day_scores_are_the_core_method_on_the_store_day_panel(features: pl.DataFrame) -> None:
    scores = store_day_scores(features)
    assert set(scores["target"].unique()) == {"units", "revenue"}
    assert scores.select("store_id", "sale_date", "target").is_unique().all()
    # One method, two entry points: the revenue rows are score_panel on the stores' daily revenue.
    panel = features.select(
        unique_id="store_id", ds="sale_date", y=pl.col("net_revenue_cents").cast(pl.Float64)
    )
    direct = score_panel(panel, freq="D", config=scoring.STORE_DAY_CONFIG)
    revenue = scores.filter(pl.col("target") == "revenue").sort("store_id", "sale_date")
    assert revenue.height == direct.height
    assert np.allclose(revenue["z"].to_numpy(), direct.sort("unique_id", "ds")["z"].to_numpy())
    ordered = scores.select((pl.col("lo") <= pl.col("expected")) & (pl.col("expected") <= pl.col("hi")))
    assert ordered.to_series().all()
    # Leave-one-out: the spike's expected value does not contain the spike (it sits near the store's usual).
    spike_units = _row(features, *SPIKE[:2])["units"]
    expected = scores.filter(
        (pl.col("store_id") == SPIKE[0]) & (pl.col("sale_date") == SPIKE[1]) & (pl.col("target") == "units")
    ).row(0, named=True)
    assert expected["hi"] < spike_units / 1.5 and expected["z"] > 0


def test_a_spike_is_one_row_with_both_views_and_the_forecast_range(raw: pl.DataFrame) -> None:
    flagged = flag_store_days(raw, SalesThresholds())
    assert flagged.schema == pl.Schema(ANOMALY_SCHEMA) and flagged.height == raw.height
    assert flagged.select("store_id", "sale_date").is_unique().all()  # one row per store-day
    spike = _row(flagged, *SPIKE[:2])
    assert spike["is_anomaly"] and spike["detectors"] == "features,retrospective"
    drivers = spike["drivers"].split(",")
    assert len(drivers) == len(set(drivers))  # both views, no duplicates
    assert {"units_residual", "revenue_residual"} <= set(drivers) and drivers[0] in scoring.FEATURES
    # The residual score is the method's robust z; a 3.5x day is far beyond 4x its threshold.
    assert spike["units"] > spike["forecast_units_hi_95"] > spike["forecast_units"]
    assert spike["units_residual"] >= 4 * scoring.RESIDUAL_THRESHOLD and spike["severity"] == "critical"
    # Expected range = the method's range for the day; the day's revenue is above it.
    assert spike["expected_revenue_hi_cents"] == spike["forecast_revenue_hi_95_cents"]
    assert spike["expected_revenue_lo_cents"] == spike["forecast_revenue_lo_95_cents"]
    assert spike["net_revenue_cents"] > spike["expected_revenue_hi_cents"]
    drop = _row(flagged, *DROP[:2])
    assert drop["is_anomaly"] and drop["units_residual"] < 0 and drop["units"] < drop["forecast_units_lo_95"]
    # A holiday lifts every store: the chain's shock that day is taken out, nothing fires.
    holiday = flagged.filter(pl.col("sale_date") == HOLIDAY[0])
    assert holiday.height == STORES and not holiday["is_anomaly"].any()
    assert (holiday["units_residual"].abs() < scoring.RESIDUAL_THRESHOLD).all()
    # Unflagged days are low and carry no detector.
    calm = flagged.filter(~pl.col("is_anomaly"))
    assert set(calm["severity"]) == {"low"} and set(calm["detectors"]) == {""}
    assert set(flagged.filter("is_anomaly")["detectors"]) <= {
        "features",
        "retrospective",
        "features,retrospective",
    }


def test_the_retrospective_view_alone_flags_the_planted_days(raw: pl.DataFrame) -> None:
    """By default the method decides alone (residual_min_z = 0): the planted spike and drop and at most three
    ordinary days of the 1,120 (Poisson days of +40-50 % revenue); asking a feature to confirm keeps the
    planted days (they move the features too) and drops those."""
    alone = flag_store_days(raw, SalesThresholds())
    confirmed = flag_store_days(raw, SalesThresholds(residual_min_z=4.5))
    planted = {SPIKE[:2], DROP[:2]}

    def days(flagged: pl.DataFrame) -> set[tuple[str, date]]:
        by_residual = flagged.filter(pl.col("detectors").str.contains("retrospective"))
        return {(r["store_id"], r["sale_date"]) for r in by_residual.iter_rows(named=True)}

    assert planted <= days(alone) and len(days(alone) - planted) <= 3
    assert days(confirmed) == planted


def test_a_threshold_change_reflags_stored_scores_without_refitting(
    raw: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The raw scores as stored (a real DuckDB file), read back.
    path = tmp_path / "scores.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("raw", raw.to_arrow())
        con.execute("create table sales_scores as select * from raw")
    with duckdb.connect(str(path), read_only=True) as con:
        stored = pl.from_arrow(con.sql("select * from sales_scores").to_arrow_table())
    assert isinstance(stored, pl.DataFrame)

    def no_refit(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was fitted while re-flagging")

    monkeypatch.setattr(scoring, "ensemble_scores", no_refit)
    monkeypatch.setattr(scoring, "store_day_scores", no_refit)
    monkeypatch.setattr(scoring, "score_panel", no_refit)
    strict = flag_store_days(stored, SalesThresholds(z=6.0, residual=4.0))
    loose = flag_store_days(stored, SalesThresholds(z=3.0, residual=1.5))
    scores = ["anomaly_score", "ecod_score", "iforest_score", "max_abs_z", "units_residual"]
    assert strict.select(scores).equals(loose.select(scores))  # same scores ...
    strict_days = set(strict.filter("is_anomaly").select("store_id", "sale_date").iter_rows())
    loose_days = set(loose.filter("is_anomaly").select("store_id", "sale_date").iter_rows())
    assert strict_days < loose_days  # ... different flags: a lower bar flags more, and all of the strict
    assert {SPIKE[:2], DROP[:2]} <= strict_days


def test_the_ensemble_is_deterministic_and_ranks_combined(features: pl.DataFrame) -> None:
    first = score_store_days(features)
    second = score_store_days(features)
    assert first["iforest_score"].equals(second["iforest_score"])  # IForest is seeded
    assert first["anomaly_score"].equals(second["anomaly_score"])
    # Rank average: each detector's rank / n, averaged.
    n = first.height
    expected = (first["ecod_score"].rank("average") / n + first["iforest_score"].rank("average") / n) / 2
    assert np.allclose(first["anomaly_score"].to_numpy(), expected.to_numpy())
    assert first["anomaly_score"].min() > 0 and first["anomaly_score"].max() <= 1  # type: ignore[operator]
    # Without forecasts the residual columns are null and the range is the store-weekday norm.
    assert first["units_residual"].is_null().all() and first["forecast_units"].is_null().all()
    flagged = flag_store_days(first, SalesThresholds())
    assert flagged["expected_revenue_hi_cents"].is_not_null().all()
    assert set(flagged.filter("is_anomaly")["detectors"]) <= {"features"}


def test_assets_take_their_thresholds_from_the_settings(tmp_path: Path) -> None:
    from pipelines.defs.anomalies.assets import cashier_anomalies, sales_anomalies

    def materialize(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        resources = build_resources(settings)
        with resources["warehouse"].get_connection() as con:
            load_lines(con, sale_lines())
        result = dg.materialize([sales_anomalies, cashier_anomalies], resources=resources)
        materialization = result.asset_materializations_for_node("sales_anomalies")[0]
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        read = resources["warehouse"].read_frame
        return (
            read("select * from analytics.sales_anomalies"),
            read("select * from analytics.cashier_anomalies"),
            metadata,
        )

    default, cashiers, metadata = materialize(make_settings(tmp_path / "default"))
    assert default.height == STORES * DAYS and metadata["rows"] == default.height
    assert metadata["z_threshold"] == 6.0 and metadata["residual_threshold"] == scoring.RESIDUAL_THRESHOLD
    assert metadata["retrospective_store_days"] == int(default["units_residual"].is_not_null().sum())
    assert metadata["retrospective_store_days"] >= STORES * (DAYS - 28)  # all but a store's first weeks
    assert metadata["flagged_by_retrospective"] >= 2
    assert set(cashiers["z_threshold"]) == {6.0}
    spike = _row(default, *SPIKE[:2])
    assert spike["is_anomaly"] and "retrospective" in spike["detectors"]

    loose, loose_cashiers, loose_meta = materialize(
        make_settings(
            tmp_path / "loose",
            anomaly_z_threshold=3.0,
            anomaly_residual_threshold=1.5,
            anomaly_min_cashier_events=0,
        )
    )
    assert loose_meta["z_threshold"] == 3.0 and set(loose_cashiers["z_threshold"]) == {3.0}
    assert loose_meta["anomalies"] > metadata["anomalies"]
    assert loose["anomaly_score"].equals(default["anomaly_score"])  # same data, same seeded scores


def test_stored_features_refresh_only_touched_store_days_and_equal_a_rebuild() -> None:
    from pipelines.defs.anomalies.assets import CASHIER_FEATURES, SALES_FEATURES
    from pipelines.defs.anomalies.features import read_features, refresh_features

    lines = sale_lines().with_row_index("seq", offset=1).with_columns(pl.col("seq").cast(pl.Int64))
    cutoff = START + timedelta(days=DAYS - 7)
    late_day = START + timedelta(days=30)  # an offline till's batch for an early day arrives last
    late = (pl.col("store_id") == "S03") & (pl.col("sale_date") == late_day) & (pl.col("seq") % 2 == 0)
    first = lines.filter((pl.col("sale_date") < cutoff) & ~late)
    later = pl.concat([lines.filter(pl.col("sale_date") >= cutoff), lines.filter(late)])
    later = later.with_columns(seq=pl.col("seq") + lines.height)  # landed after everything in `first`

    incremental = duckdb.connect()
    load_lines(incremental, first)
    for table in (SALES_FEATURES, CASHIER_FEATURES):
        assert refresh_features(incremental, table).rebuilt
    load_lines(incremental, pl.concat([first, later]))
    refreshed = {t.table: refresh_features(incremental, t) for t in (SALES_FEATURES, CASHIER_FEATURES)}

    scratch = duckdb.connect()
    load_lines(scratch, pl.concat([first, later]))
    for table in (SALES_FEATURES, CASHIER_FEATURES):
        assert refresh_features(scratch, table).rebuilt
        # Row for row what a rebuild from scratch holds, in the same order.
        assert read_features(incremental, table).equals(read_features(scratch, table)), table.table
        refresh = refreshed[table.table]
        assert not refresh.rebuilt
        assert refresh.store_days == STORES * 7 + 1  # the last week of every store and the late day
    # Nothing new: nothing recomputed.
    assert refresh_features(incremental, SALES_FEATURES).store_days == 0


def test_shrinkage_features_refresh_only_touched_pairs_and_equal_a_rebuild() -> None:
    """The stored shelf-count interval features: a refresh recomputes the pairs with a new movement or a new
    sale line at or before their last count (a late batch), leaves pairs whose new lines fall after their
    last count alone, and ends row for row where a rebuild from scratch ends."""
    from datetime import datetime

    from pipelines.defs.anomalies.detectors import SHRINKAGE_FEATURES_SQL
    from pipelines.defs.anomalies.features import SHRINKAGE_TABLE, refresh_shrinkage_features

    day = datetime(2026, 3, 1, 12)
    rng = np.random.default_rng(7)
    pairs = [(f"S{s}", f"P{p}") for s in range(2) for p in range(4)]  # 8 pairs
    moves: list[tuple] = []  # type: ignore[type-arg]
    lines: list[tuple] = []  # type: ignore[type-arg]
    seq = 0

    def move(store: str, product: str, kind: str, delta: int | None, level: int | None, at: datetime) -> None:
        nonlocal seq
        seq += 1
        moves.append((store, product, kind, delta, level, at, seq))

    def sell(store: str, product: str, units: int, at: datetime, kind: str = "sale") -> None:
        nonlocal seq
        seq += 1
        lines.append((store, product, kind, units, at, seq))

    for store, product in pairs:
        for week in range(4):
            move(store, product, "count", None, int(rng.integers(20, 60)), day + timedelta(days=7 * week))
            move(store, product, "receipt", 10, None, day + timedelta(days=7 * week + 2))
            for d in range(1, 7):
                sell(store, product, int(rng.integers(0, 5)), day + timedelta(days=7 * week + d, hours=1))

    def load(con: duckdb.DuckDBPyConnection, m: list[tuple], s: list[tuple]) -> None:  # type: ignore[type-arg]
        con.execute("create schema if not exists staging")
        con.execute(
            "create or replace table staging.stg_pos__inventory_movements (store_id varchar, product_id"
            " varchar, movement_kind varchar, quantity_delta bigint, counted_level bigint,"
            " occurred_at timestamp, seq bigint)"
        )
        con.executemany("insert into staging.stg_pos__inventory_movements values (?, ?, ?, ?, ?, ?, ?)", m)
        con.execute(
            "create or replace table staging.stg_pos__sale_lines (store_id varchar, product_id varchar,"
            " sale_kind varchar, quantity bigint, occurred_at timestamp, seq bigint)"
        )
        con.executemany("insert into staging.stg_pos__sale_lines values (?, ?, ?, ?, ?, ?)", s)

    incremental = duckdb.connect()
    load(incremental, moves, lines)
    assert refresh_shrinkage_features(incremental, SHRINKAGE_FEATURES_SQL).rebuilt
    last_count = day + timedelta(days=21)
    for store, product in pairs:  # tomorrow's trade, after every pair's last count: no interval changes
        sell(store, product, 3, last_count + timedelta(days=1))
    sell("S0", "P1", 7, day + timedelta(days=9))  # a late offline batch inside an earlier interval
    move("S1", "P2", "count", None, 5, last_count + timedelta(days=3))  # a new count: a new interval
    move("S1", "P3", "shrinkage", -4, None, day + timedelta(days=3))  # a late movement
    load(incremental, moves, lines)
    refresh = refresh_shrinkage_features(incremental, SHRINKAGE_FEATURES_SQL)
    assert not refresh.rebuilt and refresh.store_days == 3  # the pairs recomputed

    scratch = duckdb.connect()
    load(scratch, moves, lines)
    assert refresh_shrinkage_features(scratch, SHRINKAGE_FEATURES_SQL).rebuilt
    order = f"select * from {SHRINKAGE_TABLE} order by store_id, product_id, counted_at"
    built = incremental.sql(order).pl()
    assert built.equals(scratch.sql(order).pl())
    assert built.height == 8 * 3 + 1
    late = built.filter((pl.col("store_id") == "S0") & (pl.col("product_id") == "P1"))
    assert late["sold_units"].to_list()[1] >= 7  # the late line is in its interval
    # Nothing new: nothing recomputed.
    assert refresh_shrinkage_features(incremental, SHRINKAGE_FEATURES_SQL).store_days == 0

"""Tier 2: the forecasting and anomaly functions on small real frames."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines.defs.anomalies.scoring import ANOMALY_SCHEMA, FEATURES, score_sales_anomalies
from pipelines.defs.forecasting.demand import (
    ACCURACY_SCHEMA,
    FORECAST_SCHEMA,
    TOTALS_SCHEMA,
    forecast_accuracy,
    forecast_demand,
    forecast_totals,
    reconcile_forecast,
    store_weeks,
    weekly_band_factor,
)


def _history(series: int, days: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    start = date(2025, 1, 1)
    frames = []
    for i in range(series):
        level = rng.uniform(0.3, 12)
        weekly = 1 + 0.4 * np.sin(np.arange(days) * 2 * np.pi / 7)
        frames.append(
            pl.DataFrame(
                {
                    "store_id": f"S{i % 2}",
                    "product_id": f"P{i}",
                    "ds": [start + timedelta(days=d) for d in range(days)],
                    "y": rng.poisson(level * weekly).astype(float),
                }
            )
        )
    return pl.concat(frames)


def test_forecast_has_the_served_shape() -> None:
    history = _history(series=4, days=120)
    forecast = forecast_demand(history, horizon=30, n_jobs=1)
    assert forecast.schema == pl.Schema(FORECAST_SCHEMA)
    assert forecast.height == 4 * 30
    assert forecast.group_by("store_id", "product_id").agg(pl.col("horizon_day").sort()).height == 4
    assert forecast["horizon_day"].min() == 1 and forecast["horizon_day"].max() == 30
    assert (forecast["cutoff"] == date(2025, 1, 1) + timedelta(days=119)).all()
    assert (
        forecast.select((pl.col("ds") - pl.col("cutoff")).dt.total_days() == pl.col("horizon_day"))
        .to_series()
        .all()
    )
    ordered = forecast.filter(
        (pl.col("lo_95") <= pl.col("lo_80"))
        & (pl.col("lo_80") <= pl.col("yhat"))
        & (pl.col("yhat") <= pl.col("hi_80"))
        & (pl.col("hi_80") <= pl.col("hi_95"))
        & (pl.col("lo_95") >= 0)
    )
    assert ordered.height == forecast.height


def test_intermittent_series_get_an_intermittent_model() -> None:
    rng = np.random.default_rng(2)
    days = 120
    sparse = pl.DataFrame(
        {
            "store_id": "S1",
            "product_id": "P-slow",
            "ds": [date(2025, 1, 1) + timedelta(days=d) for d in range(days)],
            "y": (rng.random(days) < 0.15).astype(float) * rng.integers(1, 4, days),
        }
    )
    history = pl.concat([_history(series=1, days=days), sparse])
    forecast = forecast_demand(history, horizon=30, n_jobs=1)
    models = dict(forecast.select("product_id", "model").unique().iter_rows())
    patterns = dict(forecast.select("product_id", "pattern").unique().iter_rows())
    assert patterns["P0"] in {"smooth", "erratic"} and patterns["P-slow"] in {"intermittent", "lumpy"}
    assert models["P0"].startswith("Seasonal")
    assert models["P-slow"] in {"CrostonOptimized", "ADIDA", "IMAPA", "TSB", "SeasonalLevel"}
    assert forecast["confidence"].min() > 0 and forecast["confidence"].max() <= 1
    slow = forecast.filter(pl.col("product_id") == "P-slow")
    assert slow.height == 30
    assert 0 < slow["yhat"].mean() < 1  # a rate of units per day, not a spike
    assert (slow["hi_95"] >= slow["yhat"]).all() and (slow["lo_95"] >= 0).all()


def test_accuracy_and_totals_add_up() -> None:
    history = _history(series=6, days=150)
    categories = pl.DataFrame({"product_id": [f"P{i}" for i in range(6)], "category": ["a", "b"] * 3})
    accuracy = forecast_accuracy(history, categories)
    assert accuracy.schema == pl.Schema(ACCURACY_SCHEMA)
    levels = accuracy.group_by("level").agg(pl.len(), pl.col("n_series").sum()).sort("level")
    assert dict(levels.select("level", "len").iter_rows()) == {
        "category": 2,
        "chain": 1,
        "series": 6,
        "store": 2,
    }
    chain = accuracy.filter(pl.col("level") == "chain").row(0, named=True)
    assert chain["n_series"] == 6 and 0 < chain["mase"] < 1.5 and 0.5 < chain["coverage_80"] <= 1
    series_mase = accuracy.filter(pl.col("level") == "series")["mase"].mean()
    assert abs(chain["mase"] - series_mase) < 1e-9  # type: ignore[operator]
    # The weekly band factor is pooled over the stores' hold-out weeks: on store and chain rows only.
    factors = accuracy.group_by("level").agg(pl.col("weekly_band_factor").unique()).sort("level")
    assert dict(factors.iter_rows()) == {
        "category": [None],
        "chain": [chain["weekly_band_factor"]],
        "series": [None],
        "store": [chain["weekly_band_factor"]],
    }
    assert chain["weekly_band_factor"] is not None and chain["weekly_band_factor"] > 0

    forecast = forecast_demand(history, horizon=14, accuracy=accuracy)
    totals = forecast_totals(forecast, categories)
    assert totals.schema == pl.Schema(TOTALS_SCHEMA)
    day1 = totals.filter(pl.col("horizon_day") == 1)
    chain_total = day1.filter(pl.col("level") == "chain")["yhat"].item()
    assert abs(day1.filter(pl.col("level") == "store")["yhat"].sum() - chain_total) < 1e-6
    assert abs(day1.filter(pl.col("level") == "category")["yhat"].sum() - chain_total) < 1e-6
    expected = forecast.filter(pl.col("horizon_day") == 1)["yhat"].sum()
    assert abs(chain_total - expected) < 1e-6
    assert (totals["lo_95"] <= totals["yhat"]).all() and (totals["yhat"] <= totals["hi_95"]).all()


def test_reconciled_totals_are_coherent_and_sensible() -> None:
    history = _history(series=8, days=150, seed=4)
    categories = pl.DataFrame(
        {"product_id": [f"P{i}" for i in range(8)], "category": ["a", "b", "c", "d"] * 2}
    )
    forecast = forecast_demand(history, horizon=14)
    bottom_up = forecast_totals(forecast, categories)
    for method in ("ols", "wls_struct"):
        totals = forecast_totals(forecast, categories, history=history, method=method)
        assert totals.schema == pl.Schema(TOTALS_SCHEMA)
        assert totals.height == bottom_up.height == (2 + 4 + 1) * 14
        assert set(totals.filter(pl.col("level") == "store")["key"]) == {"S0", "S1"}
        assert dict(totals.filter(pl.col("horizon_day") == 1).select("key", "n_series").iter_rows()) == {
            "S0": 4,
            "S1": 4,
            "a": 2,
            "b": 2,
            "c": 2,
            "d": 2,
            "chain": 8,
        }
        # Children add up to their parent on every day, within rounding.
        chain = totals.filter(pl.col("level") == "chain").select("ds", chain="yhat")
        for level in ("store", "category"):
            summed = totals.filter(pl.col("level") == level).group_by("ds").agg(pl.col("yhat").sum())
            joined = summed.join(chain, on="ds")
            assert joined.height == 14
            assert ((joined["yhat"] - joined["chain"]).abs() < 1e-6 * joined["chain"].abs().max()).all()
        # Reconciled totals stay near the bottom-up sums and keep ordered, non-negative bounds.
        near = totals.join(bottom_up, on=["level", "key", "ds"], suffix="_bu")
        assert ((near["yhat"] - near["yhat_bu"]).abs() <= 0.25 * near["yhat_bu"] + 1).all()
        assert (totals["lo_95"] >= 0).all()
        assert (totals["lo_95"] <= totals["lo_80"]).all() and (totals["lo_80"] <= totals["yhat"]).all()
        assert (totals["yhat"] <= totals["hi_80"]).all() and (totals["hi_80"] <= totals["hi_95"]).all()
        assert (totals["hi_80"] > totals["lo_80"]).all()
    with pytest.raises(ValueError, match="unknown reconciliation"):
        forecast_totals(forecast, categories, history=history, method="top_down")


def assert_coherent(series: pl.DataFrame, totals: pl.DataFrame, categories: pl.DataFrame) -> None:
    """Every store's and category's total and the chain's equal the sum of their published series on every
    day (within float rounding: 1e-6 of the sum), and the chain's equals the stores' and the categories' sums;
    ``n_series`` counts the series."""
    keyed = series.join(
        categories.select("product_id", "category"), on="product_id", how="left"
    ).with_columns(pl.col("category").fill_null("unknown"), chain=pl.lit("chain"))

    def close(a: pl.Series, b: pl.Series) -> bool:
        return bool(((a - b).abs() <= 1e-6 * b.abs().clip(lower_bound=1.0)).all())

    for level, column in (("store", "store_id"), ("category", "category"), ("chain", "chain")):
        sums = keyed.group_by(pl.col(column).alias("key"), "ds").agg(summed=pl.col("yhat").sum(), n=pl.len())
        level_totals = totals.filter(pl.col("level") == level)
        joined = level_totals.join(sums, on=["key", "ds"])
        assert joined.height == level_totals.height == sums.height, level
        assert close(joined["yhat"], joined["summed"]), level
        assert (joined["n_series"] == joined["n"]).all(), level
    chain = totals.filter(pl.col("level") == "chain").select("ds", chain="yhat")
    for level in ("store", "category"):
        summed = (
            totals.filter(pl.col("level") == level)
            .group_by("ds")
            .agg(pl.col("yhat").sum())
            .join(chain, on="ds")
        )
        assert summed.height == chain.height and close(summed["yhat"], summed["chain"]), level


def _in_order(frame: pl.DataFrame) -> bool:
    return (
        frame.filter(
            (pl.col("lo_95") <= pl.col("lo_80"))
            & (pl.col("lo_80") <= pl.col("yhat"))
            & (pl.col("yhat") <= pl.col("hi_80"))
            & (pl.col("hi_80") <= pl.col("hi_95"))
            & (pl.col("lo_95") >= 0)
        ).height
        == frame.height
    )


def test_reconciled_series_are_published_coherent_ordered_and_non_negative() -> None:
    history = _history(series=6, days=120, seed=5)
    categories = pl.DataFrame({"product_id": [f"P{i}" for i in range(6)], "category": ["a", "b", "c"] * 2})
    base = forecast_demand(history, horizon=10)
    # Series forecasts far above their history (the totals' own forecasts pull them down) and one tiny one:
    # reconciliation takes the tiny series below 0, where it must clip without breaking coherence.
    bounds = ["yhat", "lo_80", "hi_80", "lo_95", "hi_95"]
    inflated = base.with_columns(
        pl.when(pl.col("product_id") == "P0").then(pl.col(c) * 0.01).otherwise(pl.col(c) * 3 + 5).alias(c)
        for c in bounds
    )
    assert _in_order(inflated)
    for method in ("ols", "wls_struct"):
        published = reconcile_forecast(inflated, categories, history=history, method=method)
        series, totals = published.series, published.totals
        assert series.schema == pl.Schema(FORECAST_SCHEMA) and totals.schema == pl.Schema(TOTALS_SCHEMA)
        assert series.height == inflated.height and totals.height == (2 + 3 + 1) * 10
        assert _in_order(series) and _in_order(totals)
        assert_coherent(series, totals, categories)
        moved = series.join(inflated, on=["store_id", "product_id", "ds"], suffix="_base")
        # Reconciled: the inflated series come down, and the tiny one is clipped at 0 on some days.
        assert (
            (moved.filter(pl.col("product_id") != "P0").select(pl.col("yhat") < pl.col("yhat_base")))
            .to_series()
            .all()
        )
        assert (moved.filter(pl.col("product_id") == "P0")["yhat"] == 0).any()
        # Bounds moved with the point where nothing was clipped.
        unclipped = moved.filter(pl.col("lo_95") > 0)
        assert unclipped.height > 0
        for bound in ("lo_80", "hi_80", "lo_95", "hi_95"):
            shift = (unclipped[bound] - unclipped[f"{bound}_base"]) - (
                unclipped["yhat"] - unclipped["yhat_base"]
            )
            assert (shift.abs() < 1e-9).all(), bound
        # A lower bound clipped at 0 in the base forecast stays at 0, whichever way the point moved.
        for bound in ("lo_80", "lo_95"):
            assert (moved.filter(pl.col(f"{bound}_base") == 0)[bound] == 0).all(), bound
        # model, pattern, confidence and cutoff are the base forecast's.
        for column in ("model", "pattern", "confidence", "cutoff", "horizon_day"):
            assert (moved[column] == moved[f"{column}_base"]).all(), column
        assert forecast_totals(inflated, categories, history=history, method=method).equals(totals)

    # Series forecasts below their history come up; their lower bounds clipped at 0 stay at 0 (a day without
    # a sale stays inside the interval), the others move with the point.
    deflated = base.with_columns(pl.col(c) * 0.3 for c in bounds)
    raised = reconcile_forecast(deflated, categories, history=history, method="wls_struct")
    assert_coherent(raised.series, raised.totals, categories)
    assert _in_order(raised.series)
    up = raised.series.join(deflated, on=["store_id", "product_id", "ds"], suffix="_base")
    assert (up["yhat"] > up["yhat_base"]).all()
    at_zero = up.filter(pl.col("lo_80_base") == 0)
    assert (
        at_zero.height > 0
        and (at_zero["lo_80"] == 0).all()
        and (at_zero["hi_80"] > at_zero["hi_80_base"]).all()
    )
    above = up.filter(pl.col("lo_95_base") > 0)
    assert above.height > 0 and (above["lo_95"] > above["lo_95_base"]).all()

    bottom_up = reconcile_forecast(inflated, categories, history=history, method="bottom_up")
    assert bottom_up.series.equals(inflated)  # bottom-up publishes the base series unchanged
    assert_coherent(bottom_up.series, bottom_up.totals, categories)
    assert _in_order(bottom_up.totals)
    empty = reconcile_forecast(inflated.clear(), categories, history=history, method="wls_struct")
    assert empty.series.is_empty() and empty.totals.is_empty()


def test_forecast_puts_last_years_holidays_on_the_horizon() -> None:
    # Closed on Christmas Day, double demand on Christmas Eve, in 2024: the forecast from 10 December 2025
    # repeats both (the history holds last year's holidays), and without holiday effects it does not.
    rng = np.random.default_rng(2)
    days = [date(2024, 11, 1) + timedelta(days=d) for d in range(405)]
    planted = {date(2024, 12, 24): 2.0, date(2024, 12, 25): 0.0}
    rate = np.array([10 * planted.get(d, 1.0) for d in days])
    history = pl.concat(
        pl.DataFrame(
            {"store_id": "S0", "product_id": f"P{i}", "ds": days, "y": rng.poisson(rate).astype(float)}
        )
        for i in range(6)
    )
    assert history["ds"].max() == date(2025, 12, 10)

    def on(forecast: pl.DataFrame, day: date) -> float:
        return float(forecast.filter(pl.col("ds") == day)["yhat"].mean())  # type: ignore[arg-type]

    with_holidays = forecast_demand(history, horizon=21)
    without = forecast_demand(history, horizon=21, holidays=None)
    assert on(with_holidays, date(2025, 12, 25)) < 1.0 < 5.0 < on(without, date(2025, 12, 25))
    assert on(with_holidays, date(2025, 12, 24)) > 1.5 * on(without, date(2025, 12, 24))
    assert on(with_holidays, date(2025, 12, 12)) == pytest.approx(on(without, date(2025, 12, 12)), rel=0.15)


def test_forecast_of_nothing_is_empty() -> None:
    empty = pl.DataFrame(
        schema={"store_id": pl.String, "product_id": pl.String, "ds": pl.Date, "y": pl.Float64}
    )
    assert forecast_demand(empty, horizon=90).is_empty()


def test_a_planted_revenue_spike_is_flagged_with_its_driver() -> None:
    rng = np.random.default_rng(1)
    days = [date(2025, 1, 1) + timedelta(days=d) for d in range(200)]
    rows = []
    for store, scale in (("S1", 1.0), ("S2", 5.0)):  # stores of very different size
        for day in days:
            transactions = int(rng.normal(100, 5) * scale)
            rows.append(
                {
                    "store_id": store,
                    "sale_date": day,
                    "net_revenue_cents": int(transactions * rng.normal(2500, 100)),
                    "transactions": transactions,
                    "avg_basket_cents": 2500.0,
                    "refund_rate": float(rng.uniform(0.01, 0.03)),
                    "void_rate": float(rng.uniform(0.0, 0.01)),
                    "discount_rate": float(rng.uniform(0.04, 0.06)),
                }
            )
    features = pl.DataFrame(rows)
    spike = (pl.col("store_id") == "S1") & (pl.col("sale_date") == date(2025, 5, 1))
    features = features.with_columns(
        net_revenue_cents=pl.when(spike).then(pl.col("net_revenue_cents") * 6).otherwise("net_revenue_cents"),
        void_rate=pl.when(spike).then(0.3).otherwise("void_rate"),
    )
    scored = score_sales_anomalies(features, threshold_quantile=0.99)
    assert scored.schema == pl.Schema(ANOMALY_SCHEMA)
    assert scored.height == features.height
    flagged = scored.filter(pl.col("is_anomaly"))
    assert flagged.height >= 1 and (flagged["max_abs_z"] >= 6).all()
    top = flagged.sort("max_abs_z", descending=True).row(0, named=True)
    assert top["expected_revenue_hi_cents"] < top["net_revenue_cents"]
    assert (top["store_id"], top["sale_date"]) == ("S1", date(2025, 5, 1))
    assert top["is_anomaly"] and top["severity"] in {"high", "critical"}
    assert set(top["drivers"].split(",")) >= {"net_revenue_cents", "void_rate"}
    assert set(top["drivers"].split(",")) <= set(FEATURES)
    assert scored["is_anomaly"].mean() <= 0.02  # the threshold is the 99th percentile of the scores
    assert set(scored["severity"].unique()) <= {"low", "medium", "high", "critical"}


def test_reorder_suggestions_follow_lead_time_demand_and_safety_stock() -> None:
    from pipelines.defs.inventory.reorder import REORDER_SCHEMA, reorder_suggestions

    days = 30
    forecast = pl.DataFrame(
        {
            "store_id": ["S1"] * days * 2,
            "product_id": ["P1"] * days + ["P2"] * days,
            "horizon_day": list(range(1, days + 1)) * 2,
            "yhat": [10.0] * days + [2.0] * days,
            "lo_80": [10.0 - 1.2816 * 3] * days + [2.0] * days,
            "hi_80": [10.0 + 1.2816 * 3] * days + [2.0] * days,
            "confidence": [0.8] * days + [0.6] * days,
        }
    )
    stock = pl.DataFrame({"store_id": ["S1", "S1"], "product_id": ["P1", "P2"], "on_hand_units": [35, 500]})
    products = pl.DataFrame({"product_id": ["P1", "P2"], "category": ["c", "c"], "lead_time_days": [4, 4]})
    out = reorder_suggestions(forecast, stock, products)
    assert out.schema == pl.Schema(REORDER_SCHEMA)
    p1 = out.filter(pl.col("product_id") == "P1").row(0, named=True)
    # Lead-time demand 40, sigma over 4 days = 3 * sqrt(4) = 6, z(95 %) = 1.645.
    assert abs(p1["lead_time_demand"] - 40) < 1e-9
    assert abs(p1["safety_stock"] - 1.6449 * 6) < 1e-2
    assert abs(p1["reorder_point"] - (40 + 1.6449 * 6)) < 1e-2
    assert p1["needs_reorder"] and p1["stockout_risk"]
    assert p1["reorder_quantity"] == int(np.ceil(40 + 1.6449 * 6 + 70 - 35))  # + 7 review days of demand
    assert abs(p1["days_of_cover"] - 3.5) < 1e-9
    p2 = out.filter(pl.col("product_id") == "P2").row(0, named=True)
    assert not p2["needs_reorder"] and p2["reorder_quantity"] == 0 and p2["days_of_cover"] == 250


def test_a_refund_abusing_cashier_and_an_attacking_ip_are_flagged() -> None:
    from pipelines.defs.anomalies.detectors import score_cashier_shifts, score_security

    rng = np.random.default_rng(4)
    shifts = []
    for c in range(6):
        for d in range(60):
            abusive = c == 2 and 30 <= d < 40
            shifts.append(
                {
                    "store_id": "S1",
                    "cashier_id": f"S1-C{c}",
                    "sale_date": date(2025, 1, 1) + timedelta(days=d),
                    "transactions": int(rng.integers(80, 120)),
                    "refunds": int(rng.integers(0, 3)) + (12 if abusive else 0),
                    "refund_cents": int(rng.integers(0, 3000)) + (60_000 if abusive else 0),
                    "voids": int(rng.integers(0, 3)),
                    "discount_rate": float(rng.uniform(0.03, 0.06)),
                }
            )
    scored = score_cashier_shifts(pl.DataFrame(shifts))
    flagged = scored.filter(pl.col("is_anomaly"))
    assert set(flagged["cashier_id"]) == {"S1-C2"}
    assert flagged.height == 10 and (flagged["max_z"] >= 6).all()
    assert all("refund" in d for d in flagged["drivers"])
    assert (flagged["refunds"] >= 12).all() and flagged["expected_refunds_hi"].is_not_null().all()

    ips = [
        {
            "source_ip": f"10.0.0.{i}",
            "event_date": date(2025, 1, 1),
            "events": 20,
            "failures": int(rng.integers(0, 3)),
            "distinct_users": 1,
            "failed_users": 1,
            "events_per_minute": 0.1,
            "failure_rate": 0.05,
        }
        for i in range(50)
    ]
    ips.append(
        {
            "source_ip": "203.0.113.9",
            "event_date": date(2025, 1, 1),
            "events": 400,
            "failures": 395,
            "distinct_users": 120,
            "failed_users": 120,
            "events_per_minute": 8.0,
            "failure_rate": 0.99,
        }
    )
    security = score_security(pl.DataFrame(ips))
    assert security.filter(pl.col("is_anomaly"))["source_ip"].to_list() == ["203.0.113.9"]
    assert security.filter(pl.col("is_anomaly"))["severity"].item() == "critical"


def test_ordinary_refunds_on_mostly_refund_free_shifts_are_not_cashier_anomalies() -> None:
    """Refund value is in cents: its noise floor is one ordinary refund, not one cent. Most shifts have no
    refund (MAD 0), so with a 1-cent floor a single $8 refund scored z = 800 and every busy refund day was
    'critical' on refund value alone."""
    from pipelines.defs.anomalies.detectors import score_cashier_shifts

    rng = np.random.default_rng(7)
    shifts = []
    for c in range(8):
        for d in range(90):
            refunds = int(rng.random() < 0.15)  # mostly no refund, now and then one of about $8
            shifts.append(
                {
                    "store_id": "S1",
                    "cashier_id": f"S1-C{c}",
                    "sale_date": date(2025, 1, 1) + timedelta(days=d),
                    "transactions": int(rng.integers(80, 120)),
                    "refunds": refunds,
                    "refund_cents": refunds * int(rng.integers(600, 1100)),
                    "voids": int(rng.random() < 0.1),
                    "discount_rate": float(rng.uniform(0.03, 0.06)),
                }
            )
    # A busy but ordinary day: three refunds of the usual size and two voids (5 >= min_count).
    shifts.append(
        {
            "store_id": "S1",
            "cashier_id": "S1-C1",
            "sale_date": date(2025, 4, 1),
            "transactions": 110,
            "refunds": 3,
            "refund_cents": 2_500,
            "voids": 2,
            "discount_rate": 0.04,
        }  # fmt: skip
    )
    # Refund abuse: few refunds, each far larger than usual.
    shifts.append(
        {
            "store_id": "S1",
            "cashier_id": "S1-C2",
            "sale_date": date(2025, 4, 1),
            "transactions": 100,
            "refunds": 5,
            "refund_cents": 90_000,
            "voids": 0,
            "discount_rate": 0.04,
        }  # fmt: skip
    )
    scored = score_cashier_shifts(pl.DataFrame(shifts))

    single = scored.filter(pl.col("refunds") == 1)
    assert single["max_z"].max() < 6, "one ordinary refund must not pass the threshold"
    assert not single["drivers"].str.contains("refund_cents").any()
    flagged = scored.filter(pl.col("is_anomaly"))
    assert flagged.select("cashier_id", "refund_cents").rows() == [("S1-C2", 90_000)]
    # z in units of one ordinary refund: 90,000 cents is about a hundred of them, not 90,000.
    assert 30 < flagged["max_z"][0] < 300
    assert flagged["drivers"][0] == "refund_cents"


def test_insights_rank_by_impact_confidence_and_urgency() -> None:
    from pipelines.defs.insights.insights import INSIGHT_SCHEMA, build_insights

    as_of = date(2025, 3, 31)
    sales = pl.DataFrame(
        {
            "store_id": ["S1"] * 28,
            "product_id": ["P1"] * 28,
            "sale_date": [as_of - timedelta(days=d) for d in range(28)],
            "units_sold": [10] * 28,
            "net_revenue_cents": [1000] * 28,  # 100 cents a unit
        }
    )
    forecast = pl.DataFrame(
        {
            "store_id": "S1",
            "product_id": "P1",
            "horizon_day": list(range(1, 8)),
            "yhat": 10.0,
            "confidence": 0.8,
        }
    )
    reorder = pl.DataFrame(
        {
            "store_id": ["S1"],
            "product_id": ["P1"],
            "on_hand_units": [20.0],
            "avg_daily_demand": [10.0],
            "days_of_cover": [2.0],
            "lead_time_days": [5],
            "reorder_point": [60.0],
            "reorder_quantity": [110],
            "needs_reorder": [True],
            "stockout_risk": [True],
            "confidence": [0.8],
        }
    )
    security = pl.DataFrame(
        {
            "source_ip": ["203.0.113.9"],
            "event_date": [as_of],
            "failures": [300],
            "failed_users": [90],
            "max_z": [60.0],
            "z_threshold": [6.0],
            "is_anomaly": [True],
        }
    )
    empty = pl.DataFrame()
    out = build_insights(
        sales=sales, forecast=forecast, reorder=reorder, store_days=empty, cashiers=empty, security=security
    )
    assert out.schema == pl.Schema(INSIGHT_SCHEMA)
    assert set(out["category"]) == {"inventory", "operations"}
    inventory = out.filter(pl.col("category") == "inventory").row(0, named=True)
    # Three days short of the five-day lead time x 10 units a day x 100 cents.
    assert inventory["impact_cents"] == 3_000
    assert inventory["urgency"] == pytest.approx(1 - 2 / 5)
    assert inventory["priority"] == pytest.approx(round(inventory["impact"] * 0.8 * 0.6, 4))
    assert "Order 110 units of P1" in inventory["action"]
    assert json.loads(inventory["evidence"])["days_of_cover"] == 2.0
    attack = out.filter(pl.col("category") == "operations").row(0, named=True)
    assert attack["impact"] == 1.0 and attack["urgency"] == 1.0 and attack["confidence"] == 1.0
    assert out["priority"].to_list() == sorted(out["priority"].to_list(), reverse=True)
    assert out["insight_id"].to_list() == ["I0001", "I0002"]


def test_revenue_and_basket_shifts_are_one_rule_shape() -> None:
    """The two window-against-window families (revenue outlook, basket shift) report a move of at least
    their threshold either way, with its direction in words, and stay quiet below it."""
    from pipelines.defs.insights.insights import BASKET_CHANGE, REVENUE_CHANGE, RULES, Shift, build_insights

    assert sum(isinstance(rule, Shift) for rule in RULES) == 2
    as_of = date(2025, 3, 31)
    days = [as_of - timedelta(days=d) for d in range(56)]
    # S1 sells 1,000 cents a day, forecast to sell 13 units (1,300 cents) a day: +30 %. S2 flat.
    sales = pl.DataFrame(
        {
            "store_id": ["S1"] * 56 + ["S2"] * 56,
            "product_id": "P1",
            "sale_date": days * 2,
            "units_sold": 10,
            "net_revenue_cents": 1000,
        }
    )
    forecast = pl.DataFrame(
        {
            "store_id": ["S1"] * 7 + ["S2"] * 7,
            "product_id": "P1",
            "horizon_day": list(range(1, 8)) * 2,
            "yhat": [13.0] * 7 + [10.0 + REVENUE_CHANGE / 2] * 7,
            "confidence": 0.7,
        }
    )
    # S1's basket fell from 2,000 to 1,500 cents (-25 %); S2's moved less than the threshold.
    store_days = pl.DataFrame(
        {
            "store_id": ["S1"] * 56 + ["S2"] * 56,
            "sale_date": days * 2,
            "net_revenue_cents": [1500] * 28
            + [2000] * 28
            + [1000] * 28
            + [round(1000 * (1 + BASKET_CHANGE / 2))] * 28,
            "transactions": 1,
            "is_anomaly": False,
        }
    )
    empty = pl.DataFrame()
    out = build_insights(
        sales=sales, forecast=forecast, reorder=empty, store_days=store_days, cashiers=empty, security=empty
    )
    assert sorted(zip(out["category"], out["store_id"], strict=True)) == [
        ("customer_behaviour", "S1"),
        ("revenue", "S1"),
    ]
    revenue = out.filter(pl.col("category") == "revenue").row(0, named=True)
    assert revenue["title"] == "Revenue at S1 expected to rise 30% next week"
    assert revenue["impact_cents"] == pytest.approx(7 * 300)
    assert revenue["confidence"] == pytest.approx(0.7) and revenue["urgency"] == 0.6
    assert json.loads(revenue["evidence"]) == {
        "forecast_7d_cents": 9100,
        "last_7d_cents": 7000,
        "change": 0.3,
    }
    basket = out.filter(pl.col("category") == "customer_behaviour").row(0, named=True)
    assert basket["title"] == "Average basket at S1 down 25% over the last 28 days"
    assert basket["action"] == "Review bundles and cross-sell at the till"
    assert basket["impact_cents"] == pytest.approx(500 * 28)


def test_insights_from_the_windows_the_asset_reads_equal_those_from_the_whole_tables() -> None:
    """business_insights reads the last SALES_WINDOW_DAYS of sales, the first FORECAST_WINDOW_DAYS of the
    forecast and the flagged anomalies (sales_window_sql, forecast_window_sql, flagged_sql): the rules see
    no difference."""
    import duckdb
    from polars.testing import assert_frame_equal

    from pipelines.defs.insights.insights import (
        build_insights,
        flagged_sql,
        forecast_window_sql,
        sales_window_sql,
    )

    as_of = date(2025, 3, 31)
    rng = np.random.default_rng(7)
    keys = [(s, p) for s in ("S1", "S2") for p in ("P1", "P2", "P3")]
    days = [as_of - timedelta(days=d) for d in range(120)]
    units = rng.integers(1, 20, len(keys) * len(days))
    sales = pl.DataFrame(
        {
            "store_id": [s for s, _ in keys for _ in days],
            "product_id": [p for _, p in keys for _ in days],
            "sale_date": days * len(keys),
            "units_sold": units,
            # Prices drift over the months: a window wider or narrower than the rules' would show.
            "net_revenue_cents": units * (100 + np.arange(len(units)) % 120),
        }
    )
    forecast = pl.DataFrame(
        {
            "store_id": [s for s, _ in keys for _ in range(30)],
            "product_id": [p for _, p in keys for _ in range(30)],
            "horizon_day": list(range(1, 31)) * len(keys),
            "yhat": rng.uniform(5, 40, 30 * len(keys)),
            "confidence": 0.7,
        }
    )
    reorder = pl.DataFrame(
        {
            "store_id": ["S1", "S2"],
            "product_id": ["P1", "P2"],
            "on_hand_units": [20.0, 5.0],
            "avg_daily_demand": [10.0, 3.0],
            "days_of_cover": [2.0, 1.5],
            "lead_time_days": [5, 4],
            "reorder_point": [60.0, 20.0],
            "reorder_quantity": [110, 30],
            "needs_reorder": [True, True],
            "stockout_risk": [True, True],
            "confidence": [0.8, 0.6],
        }
    )
    security = pl.DataFrame(
        {
            "source_ip": ["203.0.113.9", "203.0.113.10", "198.51.100.7"],
            "event_date": [as_of, as_of - timedelta(days=40), as_of],
            "failures": [300, 40, 2],
            "failed_users": [90, 12, 1],
            "max_z": [60.0, 9.0, 0.5],
            "z_threshold": [6.0, 6.0, 6.0],
            "is_anomaly": [True, True, False],
        }
    )
    empty = pl.DataFrame()
    with duckdb.connect() as con:
        con.execute("create schema marts; create schema analytics")
        con.register("security_frame", security.to_arrow())
        con.execute("create table analytics.security_anomalies as select * from security_frame")
        flagged = pl.from_arrow(con.sql(flagged_sql("analytics.security_anomalies")).to_arrow_table())
        con.register("sales_frame", sales.to_arrow())
        con.register("forecast_frame", forecast.to_arrow())
        con.execute("create table marts.fct_sales_daily as select * from sales_frame")
        con.execute("create table analytics.demand_forecast as select * from forecast_frame")
        sales_window = pl.from_arrow(con.sql(sales_window_sql("marts.fct_sales_daily")).to_arrow_table())
        forecast_window = pl.from_arrow(
            con.sql(forecast_window_sql("analytics.demand_forecast")).to_arrow_table()
        )
    assert isinstance(sales_window, pl.DataFrame) and isinstance(forecast_window, pl.DataFrame)
    assert isinstance(flagged, pl.DataFrame) and flagged.height == 2
    assert 0 < sales_window.height < sales.height and 0 < forecast_window.height < forecast.height

    def insights(sales: pl.DataFrame, forecast: pl.DataFrame, security: pl.DataFrame) -> pl.DataFrame:
        return build_insights(
            sales=sales,
            forecast=forecast,
            reorder=reorder,
            store_days=empty,
            cashiers=empty,
            security=security,
        )

    whole = insights(sales, forecast, security)
    assert {"inventory", "revenue", "operations"} <= set(whole["category"])
    assert_frame_equal(insights(sales_window, forecast_window, flagged), whole)


def test_last_years_anomaly_does_not_outrank_todays_stockout() -> None:
    """An anomaly's urgency fades with its age: a 400-day-old attack (the largest impact) ranks below a
    product running out now; one from 10 days ago keeps most of the 0.5 of 'not this week'."""
    from pipelines.defs.insights.insights import build_insights

    as_of = date(2025, 3, 31)
    sales = pl.DataFrame(
        {
            "store_id": ["S1"] * 28,
            "product_id": ["P1"] * 28,
            "sale_date": [as_of - timedelta(days=d) for d in range(28)],
            "units_sold": [10] * 28,
            "net_revenue_cents": [1000] * 28,
        }
    )
    forecast = pl.DataFrame(
        {
            "store_id": "S1",
            "product_id": "P1",
            "horizon_day": list(range(1, 8)),
            "yhat": 10.0,
            "confidence": 0.8,
        }
    )
    reorder = pl.DataFrame(
        {
            "store_id": ["S1"], "product_id": ["P1"], "on_hand_units": [20.0], "avg_daily_demand": [10.0],
            "days_of_cover": [2.0], "lead_time_days": [5], "reorder_point": [60.0], "reorder_quantity": [110],
            "needs_reorder": [True], "stockout_risk": [True], "confidence": [0.8],
        }
    )  # fmt: skip
    security = pl.DataFrame(
        {
            "source_ip": ["203.0.113.9", "198.51.100.7"],
            "event_date": [as_of - timedelta(days=400), as_of - timedelta(days=10)],
            "failures": [300, 200],
            "failed_users": [90, 60],
            "max_z": [60.0, 60.0],
            "z_threshold": [6.0, 6.0],
            "is_anomaly": [True, True],
        }
    )
    empty = pl.DataFrame()
    out = build_insights(
        sales=sales, forecast=forecast, reorder=reorder, store_days=empty, cashiers=empty, security=security
    )
    urgency = dict(zip(out["subject"], out["urgency"], strict=True))
    assert urgency["198.51.100.7"] == pytest.approx(0.5 * 0.5 ** (3 / 30))
    assert urgency["203.0.113.9"] < 0.001
    ranked = out["subject"].to_list()
    assert ranked.index("P1") < ranked.index("203.0.113.9")
    assert ranked.index("198.51.100.7") < ranked.index("P1")  # ten days old and the largest impact: first


def test_stock_missing_at_a_count_is_flagged_as_shrinkage() -> None:
    from pipelines.defs.anomalies.detectors import score_shrinkage

    rows = []
    for p in range(40):
        for c in range(6):
            expected = 50 + p
            missing = 30 if (p == 7 and c == 4) else (1 if (p + c) % 13 == 0 else 0)
            rows.append(
                {
                    "store_id": "S1",
                    "product_id": f"P{p}",
                    "counted_at": date(2025, 1, 1) + timedelta(days=28 * c),
                    "previous_level": 40,
                    "moved_units": 60,
                    "sold_units": 50 - p + 40,
                    "expected_level": expected,
                    "counted_level": expected - missing,
                }
            )
    scored = score_shrinkage(pl.DataFrame(rows))
    flagged = scored.filter(pl.col("is_anomaly"))
    assert flagged.select("product_id", "missing_units").rows() == [("P7", 30)]
    assert flagged["severity"].item() in {"high", "critical"}


def test_store_weeks_are_out_of_sample_7_day_totals() -> None:
    history = _history(series=4, days=120)
    weeks = store_weeks(history, origins=4)
    assert weeks.height == 2 * 4  # two stores x four weekly origins
    last = date(2025, 1, 1) + timedelta(days=119)
    assert sorted(weeks["origin"].unique()) == [last - timedelta(days=7 * k) for k in (4, 3, 2, 1)]
    first = weeks.filter((pl.col("store_id") == "S0") & (pl.col("origin") == last - timedelta(days=7)))
    actual = history.filter((pl.col("store_id") == "S0") & (pl.col("ds") > last - timedelta(days=7)))
    assert first["actual"][0] == actual["y"].sum()
    # Root sum of squares of 7 positive half-widths: at least the largest, at most their sum.
    assert ((weeks["lo_rss"] <= weeks["lo_sum"] + 1e-9) & (weeks["hi_rss"] <= weeks["hi_sum"] + 1e-9)).all()
    assert ((weeks["lo_rss"] >= weeks["lo_sum"] / 7) & (weeks["hi_rss"] > 0)).all()
    assert store_weeks(history.clear(), origins=4).is_empty()


def test_weekly_band_factor_is_the_conformal_quantile_of_the_error_ratios() -> None:
    # Nine weeks whose |error| / half-width on the error's side is 0.1 ... 0.9; errors alternate in sign, and
    # the other side's half-width is huge so that taking the wrong side would shrink the ratio.
    ratios = [0.1 * (i + 1) for i in range(9)]
    weeks = pl.DataFrame(
        {
            "actual": [100.0 + (10 * r if i % 2 == 0 else -10 * r) for i, r in enumerate(ratios)],
            "yhat": [100.0] * 9,
            "lo_rss": [10.0 if i % 2 else 1e6 for i in range(9)],
            "hi_rss": [1e6 if i % 2 else 10.0 for i in range(9)],
        }
    )
    # ceil((9 + 1) x 0.8) = 8th smallest ratio: 0.8, so 8 of the 9 weeks fall inside yhat +- 0.8 x rss.
    assert weekly_band_factor(weeks) == pytest.approx(0.8)
    assert weekly_band_factor(weeks, level=0.5) == pytest.approx(0.5)
    assert weekly_band_factor(weeks.clear()) is None


def test_insights_drop_priority_zero_cap_per_store_and_category_and_speak_in_words() -> None:
    from pipelines.defs.insights.insights import MAX_PER_STORE_CATEGORY, build_insights

    as_of = date(2025, 3, 31)
    products = [f"P{i:02d}" for i in range(15)]
    # P00 ... P13 sell at 100 cents a unit; P14 has sold nothing lately, so no price and no money at stake.
    sales = pl.DataFrame(
        {
            "store_id": "S1",
            "product_id": [p for p in products[:-1] for _ in range(28)],
            "sale_date": [as_of - timedelta(days=d) for _ in products[:-1] for d in range(28)],
            "units_sold": 10,
            "net_revenue_cents": 1000,
        }
    )
    reorder = pl.DataFrame(
        {
            "store_id": "S1",
            "product_id": products,
            "on_hand_units": 0.0,
            "avg_daily_demand": [1.0 + i for i in range(15)],  # P14 the most demand, but no price
            "days_of_cover": 1.0,
            "lead_time_days": 5,
            "reorder_point": 30.0,
            "reorder_quantity": 40,
            "needs_reorder": True,
            "stockout_risk": True,
            "confidence": 0.8,
        }
    )
    cashiers = pl.DataFrame(
        {
            "store_id": ["S1", "S1"],
            "cashier_id": ["S1-C1", "S1-C1"],
            "sale_date": [as_of, as_of - timedelta(days=1)],
            "refunds": [12, 3],
            "refund_cents": [60_000, 9_000],
            "voids": [0, 14],
            "max_z": [40.0, 20.0],
            "z_threshold": [6.0, 6.0],
            "is_anomaly": [True, True],
            "drivers": ["refund_cents,refunds", "voids"],
        }
    )
    empty = pl.DataFrame()
    out = build_insights(
        sales=sales, forecast=empty, reorder=reorder, store_days=empty, cashiers=cashiers, security=empty
    )
    inventory = out.filter(pl.col("category") == "inventory")
    # 15 at risk; P14's priority is 0 (dropped); of the other 14 the 10 with the most money at stake stay.
    assert MAX_PER_STORE_CATEGORY == 10 and inventory.height == 10
    assert sorted(inventory["subject"]) == products[4:14]
    assert (out["priority"] > 0).all()
    assert out["priority"].to_list() == sorted(out["priority"].to_list(), reverse=True)
    assert out["insight_id"].to_list() == [f"I{i:04d}" for i in range(1, out.height + 1)]
    cashier = out.filter(pl.col("category") == "operations").row(0, named=True)
    assert cashier["title"] == "Cashier S1-C1: unusual refund value, refunds, voids on 2 shifts"
    assert json.loads(cashier["evidence"])["drivers"] == ["refund value", "refunds", "voids"]
    assert "_" not in cashier["title"].replace("S1-C1", "")


def test_insight_drivers_are_words() -> None:
    from chainsync.snapshot_contract import driver_words

    assert driver_words("transactions,net_revenue_cents,units_residual") == [
        "transactions",
        "net revenue",
        "units against forecast",
    ]
    assert driver_words("refund_cents,refund_cents,new_feature") == ["refund value", "new feature"]
    assert driver_words(None) == [] and driver_words("") == []


@pytest.mark.parametrize(
    ("method", "processes"),
    [("wls_struct", 1), ("bottom_up", 1), pytest.param("wls_struct", 2, marks=pytest.mark.slow)],
)
def test_partitioned_forecast_run_equals_the_in_memory_functions(
    tmp_path, method: str, processes: int
) -> None:  # type: ignore[no-untyped-def]
    """``run_forecasts`` (history partitions read from Parquet one at a time, forecasts written out per
    partition, MinTrace on arrays, the published rows and totals made by DuckDB) gives the rows of
    ``forecast_accuracy`` -> ``forecast_demand`` -> ``reconcile_forecast`` on the whole history in memory,
    with the same partitions: accuracy and series exactly, totals within float summation order; and so it
    does with the partitions spread over two spawned worker processes."""
    import duckdb
    from polars.testing import assert_frame_equal

    from pipelines.defs.forecasting.demand import history_sql
    from pipelines.defs.forecasting.partitioned import run_forecasts

    rng = np.random.default_rng(3)
    rows = []
    for s in range(3):
        for p in range(5):
            first = int(rng.integers(0, 40))  # series start on different days
            for d in range(first, 150):
                units = int(rng.poisson(2 + p) * (d % 7 != 3 or p % 2))  # zero days: the grid fills them
                if units or rng.uniform() < 0.3:
                    rows.append((f"S{s}", f"P{p:02d}", date(2025, 6, 1) + timedelta(days=d), units))
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("create schema marts; create schema analytics")
    con.execute(
        "create table marts.fct_sales_daily"
        " (store_id varchar, product_id varchar, sale_date date, units_sold bigint)"
    )
    con.executemany("insert into marts.fct_sales_daily values (?, ?, ?, ?)", rows)
    # P04 has no catalog row: its category is 'unknown' in the hierarchy.
    con.execute(
        "create table marts.dim_product as select * from (values ('P00', 'a'), ('P01', 'b'), ('P02', 'a'),"
        " ('P03', 'c')) as t(product_id, category)"
    )
    history = pl.from_arrow(con.sql(history_sql()).to_arrow_table())
    categories = pl.from_arrow(con.sql("select product_id, category from marts.dim_product").to_arrow_table())
    assert isinstance(history, pl.DataFrame) and isinstance(categories, pl.DataFrame)
    per_part = 4  # 15 series: 4 partitions
    accuracy = forecast_accuracy(history, categories, holidays="US", series_per_partition=per_part)
    base = forecast_demand(
        history, horizon=14, accuracy=accuracy, holidays="US", series_per_partition=per_part
    )
    published = reconcile_forecast(base, categories, history=history, method=method, holidays="US")

    run = run_forecasts(
        con,
        tmp_path / "work",
        horizon=14,
        holidays="US",
        method=method,
        series_per_partition=per_part,
        processes=processes,
    )
    assert not (tmp_path / "work").exists()
    assert (run.series, run.forecast_rows) == (15, 15 * 14)

    def table(name: str) -> pl.DataFrame:
        frame = pl.from_arrow(con.sql(f"select * from analytics.{name}").to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    keys = ["level", "store_id", "product_id", "category"]
    assert_frame_equal(table("forecast_accuracy").sort(keys), accuracy.sort(keys))
    assert_frame_equal(run.accuracy.sort(keys), accuracy.sort(keys))
    assert_frame_equal(table("demand_forecast"), published.series, check_exact=True)
    assert_frame_equal(table("demand_forecast_totals"), published.totals, check_exact=False, rtol=1e-9)
    if method != "bottom_up":  # the reconciliation moved the series: the comparison says something
        assert not published.series["yhat"].equals(base["yhat"])

"""GET /api/ai/forecast and /api/ai/anomalies on a small real serving snapshot."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from api.main import create_app
from chainsync.serving import publish_snapshot
from chainsync.settings import get_settings
from tests.api.conftest import (
    MANAGER_STORES,
    SNAPSHOT_PRODUCTS,
    SNAPSHOT_STORES,
    TestClient,
    anomaly_frame,
    bearer,
    forecast_frame,
)

FORECAST = "/api/ai/forecast"
ANOMALIES = "/api/ai/anomalies"


@pytest.mark.parametrize("horizon", [7, 14, 30, 90])
def test_forecast_returns_exactly_what_the_snapshot_holds(client, tokens, snapshot, horizon) -> None:
    resp = client.get(
        FORECAST, params={"store_id": "S002", "horizon": horizon}, headers=bearer(tokens["manager"])
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["snapshot_version"] == snapshot.version
    assert (body["store_id"], body["horizon"]) == ("S002", horizon)

    expected = (
        snapshot.read("demand_forecast")
        .filter((pl.col("store_id") == "S002") & (pl.col("horizon_day") <= horizon))
        .sort("product_id", "ds")
    )
    assert [p["product_id"] for p in body["series"]] == list(SNAPSHOT_PRODUCTS)
    for product in body["series"]:
        rows = expected.filter(pl.col("product_id") == product["product_id"])
        assert len(product["points"]) == rows.height == horizon
        assert product["model"] == rows["model"][0]
        assert product["cutoff"] == rows["cutoff"][0].isoformat()
        for point, row in zip(product["points"], rows.iter_rows(named=True), strict=True):
            assert point["ds"] == row["ds"].isoformat()
            for col in ("yhat", "lo_80", "hi_80", "lo_95", "hi_95"):
                assert point[col] == row[col]


def test_forecast_defaults_to_30_days_and_filters_one_product(client, tokens, snapshot) -> None:
    body = client.get(
        FORECAST, params={"store_id": "S001", "product_id": "P002"}, headers=bearer(tokens["admin"])
    ).json()
    assert body["horizon"] == 30
    assert [p["product_id"] for p in body["series"]] == ["P002"]
    assert len(body["series"][0]["points"]) == 30


def test_forecast_rejects_other_horizons(client, tokens, snapshot) -> None:
    for horizon in (0, 8, 31, 365):
        resp = client.get(
            FORECAST, params={"store_id": "S001", "horizon": horizon}, headers=bearer(tokens["admin"])
        )
        assert resp.status_code == 422
        assert resp.json()["errors"][0]["field"] == "query.horizon"


def test_forecast_product_without_store_is_a_422_naming_the_field(client, tokens, snapshot) -> None:
    # The documented 422 body (api.openapi.VALIDATION_ERROR_SCHEMA), as schemathesis checks it.
    resp = client.get(FORECAST, params={"product_id": "P001"}, headers=bearer(tokens["admin"]))
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"field": "query.product_id", "message": "product_id needs a store_id"}]


def _totals_frame() -> pl.DataFrame:
    keys = [("chain", "chain", 30.0), *[("store", s, 10.0 + i) for i, s in enumerate(SNAPSHOT_STORES)]]
    rows = []
    for level, key, scale in keys:
        for h in range(1, 91):
            yhat = scale + h / 10
            day = date(2026, 11, 27) + timedelta(days=h)
            rows.append(
                {
                    "level": level, "key": key, "ds": day, "horizon_day": h, "yhat": yhat,
                    "lo_80": yhat - 2, "hi_80": yhat + 2, "lo_95": yhat - 4, "hi_95": yhat + 4, "n_series": 3,
                }
            )  # fmt: skip
    return pl.DataFrame(rows)


def test_forecast_without_a_store_is_every_visible_store_total(client, tokens, settings) -> None:
    publish_snapshot(
        settings.serving,
        {"demand_forecast": forecast_frame(), "demand_forecast_totals": _totals_frame()},
        run_id="run-totals",
    )
    admin = client.get(FORECAST, params={"horizon": 7}, headers=bearer(tokens["admin"])).json()
    assert admin["store_id"] is None and admin["series"] == []
    assert [(t["level"], t["key"]) for t in admin["totals"]] == [
        ("chain", "chain"),
        *[("store", s) for s in SNAPSHOT_STORES],
    ]
    assert all(len(t["points"]) == 7 for t in admin["totals"])
    manager = client.get(FORECAST, params={"horizon": 14}, headers=bearer(tokens["manager"])).json()
    assert [t["key"] for t in manager["totals"]] == sorted(MANAGER_STORES)  # no chain, no S003
    assert all(len(t["points"]) == 14 for t in manager["totals"])
    one = client.get(FORECAST, params={"product_id": "P001"}, headers=bearer(tokens["manager"]))
    assert one.status_code == 422


def test_forecast_unknown_store_or_product_is_404(client, tokens, snapshot) -> None:
    assert (
        client.get(FORECAST, params={"store_id": "S999"}, headers=bearer(tokens["admin"])).status_code == 404
    )
    resp = client.get(
        FORECAST, params={"store_id": "S001", "product_id": "P999"}, headers=bearer(tokens["admin"])
    )
    assert resp.status_code == 404


def test_manager_of_another_store_gets_403(client, tokens, snapshot) -> None:
    resp = client.get(FORECAST, params={"store_id": "S003"}, headers=bearer(tokens["manager"]))
    assert resp.status_code == 403
    assert "S003" in resp.json()["detail"]
    resp = client.get(ANOMALIES, params={"store_id": "S003"}, headers=bearer(tokens["manager"]))
    assert resp.status_code == 403


def test_cashier_and_devices_get_403(client, tokens, device_keys, snapshot) -> None:
    for headers in (bearer(tokens["cashier"]), {"X-API-Key": device_keys["S001"]}):
        assert client.get(FORECAST, params={"store_id": "S001"}, headers=headers).status_code == 403
        assert client.get(ANOMALIES, headers=headers).status_code == 403


def test_no_snapshot_is_503(client, tokens) -> None:
    resp = client.get(FORECAST, params={"store_id": "S001"}, headers=bearer(tokens["manager"]))
    assert resp.status_code == 503
    assert "snapshot" in resp.json()["detail"]
    assert client.get(ANOMALIES, headers=bearer(tokens["manager"])).status_code == 503


def test_snapshot_without_the_table_is_503(client, tokens, settings) -> None:
    publish_snapshot(settings.serving, {"sales_anomalies": anomaly_frame()})
    resp = client.get(FORECAST, params={"store_id": "S001"}, headers=bearer(tokens["admin"]))
    assert resp.status_code == 503 and "demand_forecast" in resp.json()["detail"]


def test_a_new_snapshot_is_served_on_the_next_request(client, tokens, settings, snapshot) -> None:
    first = client.get(
        FORECAST, params={"store_id": "S001", "horizon": 7}, headers=bearer(tokens["admin"])
    ).json()
    newer = publish_snapshot(
        settings.serving, {"demand_forecast": forecast_frame().with_columns(pl.col("yhat") + 100)}
    )
    second = client.get(
        FORECAST, params={"store_id": "S001", "horizon": 7}, headers=bearer(tokens["admin"])
    ).json()
    assert second["snapshot_version"] == newer.version != first["snapshot_version"]
    assert math.isclose(
        second["series"][0]["points"][0]["yhat"], first["series"][0]["points"][0]["yhat"] + 100
    )


def test_nan_bounds_are_sent_as_null(client, tokens, settings) -> None:
    publish_snapshot(
        settings.serving,
        {"demand_forecast": forecast_frame().with_columns(lo_95=pl.lit(float("nan")))},
    )
    body = client.get(
        FORECAST, params={"store_id": "S001", "horizon": 7}, headers=bearer(tokens["admin"])
    ).json()
    assert body["series"][0]["points"][0]["lo_95"] is None


def test_ai_disabled_is_503(settings, tokens, snapshot, monkeypatch) -> None:
    monkeypatch.setenv("AI_ANALYTICS_ENABLED", "false")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        for path, params in ((FORECAST, {"store_id": "S001"}), (ANOMALIES, {})):
            resp = c.get(path, params=params, headers=bearer(tokens["admin"]))
            assert resp.status_code == 503
            assert resp.json()["detail"] == "AI analytics disabled"
        # Authentication still comes first.
        assert c.get(ANOMALIES).status_code == 401
        # The status answers, so an admin can see the switch is off; still admin-only.
        status = c.get("/api/ai/status", headers=bearer(tokens["admin"]))
        assert status.status_code == 200 and status.json()["enabled"] is False
        assert c.get("/api/ai/status", headers=bearer(tokens["manager"])).status_code == 403


# --- anomalies -----------------------------------------------------------------------------------


def test_anomalies_manager_sees_only_flagged_days_of_their_stores(client, tokens, snapshot) -> None:
    body = client.get(ANOMALIES, headers=bearer(tokens["manager"])).json()
    expected = anomaly_frame().filter(pl.col("is_anomaly") & pl.col("store_id").is_in(["S001", "S002"]))
    assert body["count"] == expected.height == 6
    assert {a["store_id"] for a in body["anomalies"]} == {"S001", "S002"}
    dates = [a["sale_date"] for a in body["anomalies"]]
    assert dates == sorted(dates, reverse=True)
    first = body["anomalies"][0]
    assert first["drivers"] == ["refund_rate", "void_rate"]
    assert first["severity"] == "high" and first["threshold"] == 0.8


def test_anomalies_admin_sees_all_and_filters_apply(client, tokens, snapshot) -> None:
    admin = bearer(tokens["admin"])
    assert client.get(ANOMALIES, headers=admin).json()["count"] == 9
    assert client.get(ANOMALIES, params={"store_id": "S003"}, headers=admin).json()["count"] == 3
    assert client.get(ANOMALIES, params={"severity": "high"}, headers=admin).json()["count"] == 3
    since = client.get(ANOMALIES, params={"since": "2026-11-20"}, headers=admin).json()
    assert since["count"] == 3 and all(
        date.fromisoformat(a["sale_date"]) >= date(2026, 11, 20) for a in since["anomalies"]
    )
    assert client.get(ANOMALIES, params={"limit": 2}, headers=admin).json()["count"] == 2
    assert client.get(ANOMALIES, params={"limit": 0}, headers=admin).status_code == 422
    assert client.get(ANOMALIES, params={"severity": "apocalyptic"}, headers=admin).status_code == 422
    assert client.get(ANOMALIES, params={"store_id": "S999"}, headers=admin).status_code == 404


def _accuracy_frame() -> pl.DataFrame:
    rows = [
        {
            "level": "series",
            "store_id": s,
            "product_id": p,
            "category": "c",
            "n_series": 1,
            "mase": 0.5 + i / 10,
            "wape": 0.2,
            "bias": -0.01 * i,
            "coverage_80": 0.8,
            "coverage_95": 0.95,
            "holdout_days": 28,
            "cutoff": date(2026, 11, 27),
        }
        for s in ("S001", "S002", "S003")
        for i, p in enumerate(("P001", "P002", "P003"))
    ]
    rows.append(
        {
            "level": "store",
            "store_id": "S002",
            "product_id": None,
            "category": None,
            "n_series": 3,
            "mase": 0.6,
            "wape": 0.2,
            "bias": -0.01,
            "coverage_80": 0.8,
            "coverage_95": 0.95,
            "holdout_days": 28,
            "cutoff": date(2026, 11, 27),
            "weekly_band_factor": None,  # a snapshot made before the factor: summed daily bounds
        }
    )
    rows.append(rows[-1] | {"store_id": "S001", "mase": 0.7, "weekly_band_factor": 1.5})
    return pl.DataFrame(rows)


def test_forecast_carries_pattern_confidence_and_accuracy(client, tokens, settings) -> None:
    forecast = forecast_frame().with_columns(
        pattern=pl.lit("smooth"),
        confidence=(pl.col("yhat") / 100).round(3).first().over("store_id", "product_id"),
    )
    snap = publish_snapshot(
        settings.serving,
        {
            "demand_forecast": forecast,
            "forecast_accuracy": _accuracy_frame(),
            "sales_anomalies": anomaly_frame(),
        },
    )
    body = client.get(
        FORECAST, params={"store_id": "S002", "horizon": 7}, headers=bearer(tokens["manager"])
    ).json()
    assert body["snapshot_version"] == snap.version
    assert body["accuracy"]["mase"] == 0.6 and body["accuracy"]["n_series"] == 3
    for i, product in enumerate(body["series"]):
        expected = forecast.filter(
            (pl.col("store_id") == "S002") & (pl.col("product_id") == product["product_id"])
        )
        assert product["pattern"] == "smooth"
        assert product["confidence"] == expected["confidence"][0]
        assert product["accuracy"]["mase"] == pytest.approx(0.5 + i / 10)
        assert product["accuracy"]["holdout_days"] == 28


def test_forecast_without_accuracy_table_still_answers(client, tokens, snapshot) -> None:
    body = client.get(FORECAST, params={"store_id": "S001"}, headers=bearer(tokens["admin"])).json()
    assert body["accuracy"] is None
    assert all(p["accuracy"] is None and p["confidence"] is None for p in body["series"])


def _insights_frame() -> pl.DataFrame:
    rows = []
    for i, (category, store, priority) in enumerate(
        [
            ("inventory", "S001", 0.9),
            ("operations", None, 0.8),
            ("revenue", "S003", 0.7),
            ("revenue", "S002", 0.5),
        ]
    ):
        rows.append(
            {
                "insight_id": f"I{i + 1:04d}",
                "category": category,
                "store_id": store,
                "subject": store or "203.0.113.9",
                "title": f"insight {i}",
                "evidence": json.dumps({"days_of_cover": 1.5 + i}),
                "action": f"do {i}",
                "impact_cents": 1000.0 * (4 - i),
                "impact": priority,
                "confidence": 1.0,
                "urgency": 1.0,
                "priority": priority,
                "as_of": date(2026, 11, 26),
            }
        )
    return pl.DataFrame(rows)


def _full_snapshot(settings, **extra: pl.DataFrame) -> object:
    forecast = forecast_frame()
    totals = (
        forecast.group_by("store_id", "ds", "horizon_day")
        .agg(pl.col("yhat", "lo_80", "hi_80", "lo_95", "hi_95").sum(), n_series=pl.len())
        .rename({"store_id": "key"})
        .with_columns(level=pl.lit("store"))
    )
    reorder = pl.DataFrame(
        {
            "store_id": ["S001", "S001", "S002"],
            "product_id": ["P001", "P002", "P001"],
            "needs_reorder": [True, False, True],
            "stockout_risk": [True, False, False],
        }
    )
    cashiers = pl.DataFrame(
        {
            "store_id": ["S001", "S003"],
            "cashier_id": ["S001-C01", "S003-C02"],
            "sale_date": [date(2026, 11, 20), date(2026, 11, 21)],
            "anomaly_score": [30.0, 25.0],
            "max_z": [14.0, 9.0],
            "z_threshold": [6.0, 6.0],
            "is_anomaly": [True, True],
            "severity": ["high", "medium"],
            "drivers": ["refunds,refund_cents", "voids"],
            "refunds": [15, 1],
            "refund_cents": [70_000, 100],
            "voids": [0, 9],
            "transactions": [90, 80],
        }
    )
    security = pl.DataFrame(
        {
            "source_ip": ["203.0.113.9"],
            "event_date": [date(2026, 11, 22)],
            "anomaly_score": [40.0],
            "max_z": [80.0],
            "z_threshold": [6.0],
            "is_anomaly": [True],
            "severity": ["critical"],
            "drivers": ["failures,failed_users"],
            "events": [400],
            "failures": [390],
            "distinct_users": [120],
            "failed_users": [120],
            "events_per_minute": [9.5],
        }
    )
    return publish_snapshot(
        settings.serving,
        {
            "demand_forecast": forecast,
            "forecast_accuracy": _accuracy_frame(),
            "demand_forecast_totals": totals,
            "reorder_suggestions": reorder,
            "sales_anomalies": anomaly_frame(),
            "cashier_anomalies": cashiers,
            "security_anomalies": security,
            "business_insights": _insights_frame(),
            **extra,
        },
    )


def test_unknown_store_is_the_same_404_on_every_store_scoped_endpoint(client, tokens, settings) -> None:
    shrink = pl.DataFrame(
        {
            "store_id": ["S001"],
            "product_id": ["P001"],
            "counted_at": [datetime(2026, 10, 29, 12, tzinfo=UTC)],
            "missing_units": [45],
            "max_z": [45.0],
            "is_anomaly": [True],
            "severity": ["critical"],
            "drivers": ["missing_units"],
        }
    )
    snap = _full_snapshot(settings, inventory_anomalies=shrink)
    admin = bearer(tokens["admin"])
    expected = f"Unknown store S999: not in snapshot {snap.version}"  # type: ignore[attr-defined]
    requests = [
        (FORECAST, {"store_id": "S999"}),
        (FORECAST, {"store_id": "S999", "product_id": "P001"}),
        *[(ANOMALIES, {"type": kind, "store_id": "S999"}) for kind in ("sales", "cashier", "inventory")],
        ("/api/ai/insights", {"store_id": "S999"}),
        ("/api/ai/insights", {"store_id": "S999", "category": "revenue"}),
    ]
    for path, params in requests:
        resp = client.get(path, params=params, headers=admin)
        assert (resp.status_code, resp.json()["detail"]) == (404, expected), (path, params)
    # A known store with nothing of a kind is an empty answer, not a 404.
    for kind in ("cashier", "inventory"):
        known = client.get(ANOMALIES, params={"type": kind, "store_id": "S002"}, headers=admin)
        assert known.status_code == 200 and known.json()["count"] == 0
    insights = client.get(
        "/api/ai/insights", params={"store_id": "S001", "category": "revenue"}, headers=admin
    )
    assert insights.status_code == 200 and insights.json()["count"] == 0


def test_insights_ranked_and_store_scoped(client, tokens, settings) -> None:
    snap = _full_snapshot(settings)
    body = client.get("/api/ai/insights", headers=bearer(tokens["manager"])).json()
    assert body["snapshot_version"] == snap.version  # type: ignore[attr-defined]
    # The manager's stores are S001 and S002: the chain-wide and S003 insights are not theirs.
    assert [i["insight_id"] for i in body["insights"]] == ["I0001", "I0004"]
    assert body["insights"][0]["evidence"] == {"days_of_cover": 1.5}
    assert body["insights"][0]["priority"] == 0.9 and body["insights"][0]["action"] == "do 0"
    admin = client.get(
        "/api/ai/insights", params={"category": "revenue"}, headers=bearer(tokens["admin"])
    ).json()
    assert [i["insight_id"] for i in admin["insights"]] == ["I0003", "I0004"]
    assert (
        client.get(
            "/api/ai/insights", params={"store_id": "S003"}, headers=bearer(tokens["manager"])
        ).status_code
        == 403
    )


def test_dashboard_sums_the_snapshot_for_the_managers_stores(client, tokens, settings) -> None:
    _full_snapshot(settings)
    body = client.get("/api/ai/dashboard", headers=bearer(tokens["manager"])).json()
    stores = {s["store_id"]: s for s in body["stores"]}
    assert set(stores) == {"S001", "S002"}
    expected = forecast_frame().filter((pl.col("store_id") == "S001") & (pl.col("horizon_day") <= 7))
    assert stores["S001"]["forecast_units_7d"] == pytest.approx(expected["yhat"].sum())
    # S001's 80 % weekly band: independent days (root sum of squares of the store total's daily
    # half-widths) times the hold-out factor 1.5; S002 has no factor: its daily bounds summed.
    daily = expected.group_by("ds").agg(pl.col("yhat", "lo_80", "hi_80").sum())
    half_lo = 1.5 * math.sqrt(((daily["yhat"] - daily["lo_80"]) ** 2).sum())
    half_hi = 1.5 * math.sqrt(((daily["hi_80"] - daily["yhat"]) ** 2).sum())
    assert stores["S001"]["forecast_units_7d_band_factor"] == 1.5
    assert stores["S001"]["forecast_units_7d_lo_80"] == pytest.approx(daily["yhat"].sum() - half_lo)
    assert stores["S001"]["forecast_units_7d_hi_80"] == pytest.approx(daily["yhat"].sum() + half_hi)
    assert stores["S001"]["forecast_units_7d_lo_80"] > daily["lo_80"].sum()  # narrower than summed bounds
    s002 = forecast_frame().filter((pl.col("store_id") == "S002") & (pl.col("horizon_day") <= 7))
    assert stores["S002"]["forecast_units_7d_band_factor"] is None
    assert stores["S002"]["forecast_units_7d_lo_80"] == pytest.approx(s002["lo_80"].sum())
    assert stores["S002"]["forecast_units_7d_hi_80"] == pytest.approx(s002["hi_80"].sum())
    assert stores["S001"]["products_to_reorder"] == 1 and stores["S001"]["products_at_stockout_risk"] == 1
    assert stores["S002"]["products_to_reorder"] == 1 and stores["S002"]["products_at_stockout_risk"] == 0
    assert stores["S002"]["accuracy"]["mase"] == 0.6
    # Flagged days 13, 18 and 23 Nov... within the last 7 days of data (to 26 Nov): 23 Nov only.
    assert stores["S001"]["anomalies_7d"] == 1
    assert [i["insight_id"] for i in body["top_insights"]] == ["I0001", "I0004"]


def test_cashier_and_security_anomalies(client, tokens, settings) -> None:
    _full_snapshot(settings)
    body = client.get(
        "/api/ai/anomalies", params={"type": "cashier"}, headers=bearer(tokens["manager"])
    ).json()
    assert body["type"] == "cashier" and body["count"] == 1
    row = body["anomalies"][0]
    assert (row["cashier_id"], row["day"], row["refund_cents"]) == ("S001-C01", "2026-11-20", 70_000)
    assert row["drivers"] == ["refunds", "refund_cents"]
    assert (
        client.get(
            "/api/ai/anomalies", params={"type": "security"}, headers=bearer(tokens["manager"])
        ).status_code
        == 403
    )
    sec = client.get("/api/ai/anomalies", params={"type": "security"}, headers=bearer(tokens["admin"])).json()
    assert sec["anomalies"][0]["source_ip"] == "203.0.113.9" and sec["anomalies"][0]["failures"] == 390
    high = client.get(
        "/api/ai/anomalies", params={"type": "cashier", "severity": "medium"}, headers=bearer(tokens["admin"])
    ).json()
    assert [a["cashier_id"] for a in high["anomalies"]] == ["S003-C02"]


def test_status_and_cache_clear_are_admin_only(client, tokens, settings) -> None:
    snap = _full_snapshot(settings)
    assert client.get("/api/ai/status", headers=bearer(tokens["manager"])).status_code == 403
    assert client.post("/api/ai/cache/clear", headers=bearer(tokens["manager"])).status_code == 403
    client.get("/api/ai/insights", headers=bearer(tokens["admin"]))
    status = client.get("/api/ai/status", headers=bearer(tokens["admin"])).json()
    assert status["snapshot_version"] == snap.version  # type: ignore[attr-defined]
    assert status["tables"]["business_insights"] == 4 and status["tables"]["security_anomalies"] == 1
    assert status["cache"]["entries"] >= 1 and status["cache"]["ttl_seconds"] == settings.ai_model_cache_ttl
    cleared = client.post("/api/ai/cache/clear", headers=bearer(tokens["admin"])).json()
    assert cleared["cleared"] >= 1
    assert client.get("/api/ai/status", headers=bearer(tokens["admin"])).json()["cache"]["entries"] == 0


def test_inventory_anomalies_show_the_missing_stock(client, tokens, settings) -> None:
    shrink = pl.DataFrame(
        {
            "store_id": ["S001", "S003"],
            "product_id": ["P001", "P002"],
            "previous_at": [datetime(2026, 10, 1, 12, tzinfo=UTC)] * 2,
            "counted_at": [datetime(2026, 10, 29, 12, tzinfo=UTC)] * 2,
            "previous_level": [40, 40],
            "counted_level": [10, 12],
            "moved_units": [60, 60],
            "sold_units": [45, 44],
            "expected_level": [55, 56],
            "missing_units": [45, 44],
            "max_z": [45.0, 44.0],
            "z_threshold": [6.0, 6.0],
            "is_anomaly": [True, True],
            "severity": ["critical", "critical"],
            "drivers": ["missing_units", "missing_units"],
        }
    )
    publish_snapshot(settings.serving, {"demand_forecast": forecast_frame(), "inventory_anomalies": shrink})
    body = client.get(
        "/api/ai/anomalies", params={"type": "inventory"}, headers=bearer(tokens["manager"])
    ).json()
    assert body["count"] == 1  # S003 is not the manager's
    row = body["anomalies"][0]
    assert (row["product_id"], row["day"], row["missing_units"], row["expected_level"]) == (
        "P001",
        "2026-10-29",
        45,
        55,
    )


def test_performance_anomalies_are_for_admins(client, tokens, settings) -> None:
    hours = [datetime(2026, 11, 20, 14), datetime(2026, 11, 21, 9), datetime(2026, 11, 21, 10)]
    performance = pl.DataFrame(
        {
            "endpoint": ["GET /api/sync/download", "POST /api/sync/upload", "POST /api/sync/upload"],
            "method": ["GET", "POST", "POST"],
            "route": ["/api/sync/download", "/api/sync/upload", "/api/sync/upload"],
            "hour_start": hours,
            "requests": [420, 300, 310],
            "errors_4xx": [1, 2, 3],
            "errors_5xx": [0, 75, 1],
            "error_rate_4xx": [1 / 420, 2 / 300, 3 / 310],
            "error_rate_5xx": [0.0, 0.25, 1 / 310],
            "latency_ms_mean": [310.0, 60.0, 52.0],
            "latency_ms_p95": [1450.0, 240.0, 230.0],
            "baseline_hours": [120, 140, 141],
            "expected_latency_p95_ms": [240.0, 200.0, 200.0],
            "expected_latency_p95_hi_ms": [390.0, 330.0, 330.0],
            "expected_error_rate": [0.001, 0.002, 0.002],
            "expected_error_rate_hi": [0.04, 0.045, 0.045],
            "z_latency": [36.1, 1.2, 0.9],
            "z_error_rate": [-0.1, 38.5, 0.2],
            "anomaly_score": [36.1, 38.5, 0.9],
            "max_z": [36.1, 38.5, 0.9],
            "z_threshold": [6.0, 6.0, 6.0],
            "is_anomaly": [True, True, False],
            "severity": ["critical", "critical", "low"],
            "drivers": ["latency_p95", "error_rate", ""],
        }
    )
    publish_snapshot(settings.serving, {"performance_anomalies": performance})
    manager = client.get(
        "/api/ai/anomalies", params={"type": "performance"}, headers=bearer(tokens["manager"])
    )
    assert manager.status_code == 403
    body = client.get(
        "/api/ai/anomalies", params={"type": "performance"}, headers=bearer(tokens["admin"])
    ).json()
    assert body["type"] == "performance" and body["count"] == 2  # the normal hour is not listed
    newest, older = body["anomalies"]
    assert (newest["endpoint"], newest["hour_start"], newest["day"]) == (
        "POST /api/sync/upload",
        "2026-11-21T09:00:00",
        "2026-11-21",
    )
    assert newest["drivers"] == ["error_rate"] and newest["errors_5xx"] == 75
    assert newest["error_rate_5xx"] == 0.25 and newest["expected_error_rate_hi"] == 0.045
    assert older["drivers"] == ["latency_p95"] and older["latency_ms_p95"] == 1450.0
    assert older["expected_latency_p95_ms"] == 240.0 and older["anomaly_score"] == 36.1
    since = client.get(
        "/api/ai/anomalies",
        params={"type": "performance", "since": "2026-11-21"},
        headers=bearer(tokens["admin"]),
    ).json()
    assert [a["endpoint"] for a in since["anomalies"]] == ["POST /api/sync/upload"]
    bad = client.get("/api/ai/anomalies", params={"type": "latency"}, headers=bearer(tokens["admin"]))
    assert bad.status_code == 422
    # Chain-wide: a store filter cannot apply, so it is refused rather than ignored (which answered every
    # endpoint-hour as if they were the store's).
    for kind in ("performance", "security"):
        store = client.get(
            "/api/ai/anomalies", params={"type": kind, "store_id": "S001"}, headers=bearer(tokens["admin"])
        )
        assert store.status_code == 422, kind
        assert "store_id" in store.json()["detail"] and "chain-wide" in store.json()["detail"]
        # The documented validation-error body, like any other 422 (schemathesis checks the shape).
        assert store.json()["errors"][0]["field"] == "query.store_id"


def test_sales_anomalies_carry_the_detectors_scores_and_forecast_range(client, tokens, settings) -> None:
    """One row per store-day as the pipeline writes it (detectors and drivers comma-joined): the API lists
    which views fired, the raw scores, the residuals and the forecast's 95 % range, number for number."""
    days = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 3)]
    frame = pl.DataFrame(
        {
            "store_id": ["S001", "S001", "S001", "S003"],
            "sale_date": days,
            "anomaly_score": [0.9931, 0.9987, 0.41, 0.9999],
            "threshold": [0.9886] * 4,
            "is_anomaly": [True, True, False, True],
            "detectors": ["features", "features,forecast_residual", "", "features,forecast_residual"],
            "severity": ["medium", "critical", "low", "critical"],
            "drivers": [
                "refund_rate,void_rate",
                "transactions,net_revenue_cents,units_residual,revenue_residual",
                "",
                "net_revenue_cents,units_residual",
            ],
            "net_revenue_cents": [250_000, 1_210_000, 260_000, 900_000],
            "transactions": [101, 402, 99, 300],
            "units": [290, 1201, 301, 900],
            "max_abs_z": [7.1, 9.58, 0.6, 12.0],
            "ecod_score": [14.2, 19.7, 3.1, 25.0],
            "iforest_score": [0.081, 0.164, -0.12, 0.2],
            "units_residual": [0.0, 8.0003, 0.0, 5.0],
            "revenue_residual": [None, 7.992, 0.0, 0.0],
            "forecast_units": [None, 356.23, 310.0, 400.0],
            "forecast_units_lo_95": [None, 262.37, 250.0, 300.0],
            "forecast_units_hi_95": [None, 450.09, 370.0, 500.0],
            "forecast_revenue_cents": [None, 330_000.0, 270_000.0, 400_000.0],
            "forecast_revenue_lo_95_cents": [None, 240_000.0, 200_000.0, 300_000.0],
            "forecast_revenue_hi_95_cents": [None, 420_000.0, 340_000.0, 500_000.0],
            "expected_revenue_lo_cents": [180_000.0, 240_000.0, 200_000.0, 300_000.0],
            "expected_revenue_hi_cents": [330_000.0, 420_000.0, 340_000.0, 500_000.0],
        }
    )
    publish_snapshot(settings.serving, {"demand_forecast": forecast_frame(), "sales_anomalies": frame})
    body = client.get(ANOMALIES, params={"type": "sales"}, headers=bearer(tokens["manager"])).json()
    assert body["count"] == 2  # S001's two flagged days; S003 is not the manager's, 3 Nov is not flagged
    both, features_only = body["anomalies"]  # newest first
    assert both["sale_date"] == "2026-11-02" and both["detectors"] == ["features", "forecast_residual"]
    assert both["drivers"] == ["transactions", "net_revenue_cents", "units_residual", "revenue_residual"]
    assert (both["units"], both["units_residual"], both["revenue_residual"]) == (1201, 8.0003, 7.992)
    assert (both["forecast_units"], both["forecast_units_lo_95"], both["forecast_units_hi_95"]) == (
        356.23,
        262.37,
        450.09,
    )
    assert (both["expected_revenue_lo_cents"], both["expected_revenue_hi_cents"]) == (240_000.0, 420_000.0)
    assert (both["anomaly_score"], both["ecod_score"], both["iforest_score"]) == (0.9987, 19.7, 0.164)
    assert both["severity"] == "critical" and both["threshold"] == 0.9886
    assert features_only["detectors"] == ["features"] and features_only["forecast_units"] is None
    assert features_only["revenue_residual"] is None and features_only["drivers"] == [
        "refund_rate",
        "void_rate",
    ]
    critical = client.get(ANOMALIES, params={"severity": "critical"}, headers=bearer(tokens["admin"])).json()
    assert [(a["store_id"], a["sale_date"]) for a in critical["anomalies"]] == [
        ("S003", "2026-11-03"),
        ("S001", "2026-11-02"),
    ]

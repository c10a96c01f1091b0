"""GET /api/ai/forecast and /api/ai/anomalies on a small real serving snapshot."""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from api.main import create_app
from chainsync.serving import publish_snapshot
from chainsync.settings import get_settings
from tests.api.conftest import SNAPSHOT_PRODUCTS, TestClient, anomaly_frame, bearer, forecast_frame

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


def test_forecast_rejects_other_horizons_and_requires_a_store(client, tokens, snapshot) -> None:
    for horizon in (0, 8, 31, 365):
        resp = client.get(
            FORECAST, params={"store_id": "S001", "horizon": horizon}, headers=bearer(tokens["admin"])
        )
        assert resp.status_code == 422
        assert resp.json()["errors"][0]["field"] == "query.horizon"
    resp = client.get(FORECAST, headers=bearer(tokens["admin"]))
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "query.store_id"


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
        }
    )
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

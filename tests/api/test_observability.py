"""GET /api/observability/health (anyone, no secrets), GET /metrics (admins), request ids and errors."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from api.deps import get_ops_engine
from api.main import create_app
from chainsync.ops_store import schema_version
from chainsync.settings import get_settings
from tests.api.conftest import TestClient, bearer

HEALTH = "/api/observability/health"


def test_health_without_auth_reports_store_and_snapshot(client, engine, snapshot) -> None:
    resp = client.get(HEALTH)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["ops_store_reachable"] is True
    assert body["schema_version"] == schema_version(engine)  # the newest migration
    assert body["snapshot"]["version"] == snapshot.version
    assert 0 <= body["snapshot"]["age_seconds"] < 600
    assert body["last_pipeline_run"]["run_id"] == "run-test-0001"
    assert body["version"]


def test_health_before_any_snapshot(client) -> None:
    body = client.get(HEALTH).json()
    assert body["snapshot"] is None and body["last_pipeline_run"] is None


def test_health_holds_no_secret(client, settings, snapshot) -> None:
    text = client.get(HEALTH).text
    assert settings.jwt_key() not in text
    assert "sqlite" not in text and str(settings.data_dir) not in text


def test_health_is_503_when_the_ops_store_is_unreachable(app, client, tmp_path) -> None:
    broken = create_engine(f"sqlite:///{tmp_path}/missing-dir/ops.sqlite")
    app.dependency_overrides[get_ops_engine] = lambda: broken
    resp = client.get(HEALTH)
    assert resp.status_code == 503
    assert resp.json()["ops_store_reachable"] is False and resp.json()["status"] == "degraded"


def test_metrics_admin_only_and_parse(client, tokens) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(tokens["manager"])).status_code == 403
    client.get(HEALTH)
    resp = client.get("/metrics", headers=bearer(tokens["admin"]))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    assert {
        "chainsync_http_requests",
        "chainsync_http_request_duration_seconds",
        "chainsync_events_ingested",
    } <= set(families)
    routes = {s.labels["route"] for s in families["chainsync_http_requests"].samples}
    assert HEALTH in routes  # labelled by route template, not by raw path


def test_unknown_paths_share_one_metrics_label(client, tokens) -> None:
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    text = client.get("/metrics", headers=bearer(tokens["admin"])).text
    assert 'route="unmatched",status="404"} 2.0' in text
    assert "/no/such/path" not in text


def test_every_response_has_a_request_id_and_a_given_one_is_kept(client) -> None:
    assert len(client.get(HEALTH).headers["X-Request-ID"]) >= 8
    assert client.get("/nowhere").headers["X-Request-ID"]
    assert (
        client.get(HEALTH, headers={"X-Request-ID": "trace-abc-12345"}).headers["X-Request-ID"]
        == "trace-abc-12345"
    )
    # Anything odd is replaced rather than echoed.
    assert client.get(HEALTH, headers={"X-Request-ID": "<script>"}).headers["X-Request-ID"] != "<script>"


def test_unexpected_exception_gives_generic_500_with_request_id(app, client, capsys) -> None:
    boom = APIRouter()

    @boom.get("/api/boom")
    def explode() -> None:
        raise ValueError("secret internals")

    app.include_router(boom)
    resp = client.get("/api/boom")
    assert resp.status_code == 500
    body = resp.json()
    assert body == {"detail": "Internal server error", "request_id": resp.headers["X-Request-ID"]}
    assert "secret internals" not in resp.text
    # The traceback goes to the structured log, with the same request id.
    logged = capsys.readouterr().out
    assert "unhandled_error" in logged and body["request_id"] in logged


def test_logs_never_hold_passwords_or_tokens(client, users, capsys) -> None:
    from tests.api.conftest import PASSWORD

    token = client.post("/api/auth/token", data={"username": "mona", "password": PASSWORD}).json()[
        "access_token"
    ]
    client.get("/api/ai/anomalies", headers=bearer(token))
    client.post("/api/auth/token", data={"username": "mona", "password": "Wrong-Password-9"})
    out = capsys.readouterr().out
    assert PASSWORD not in out and "Wrong-Password-9" not in out and token not in out
    assert '"event": "request"' in out


@pytest.mark.parametrize("environment", ["production", "development"])
def test_docs_only_outside_production(settings, monkeypatch, environment) -> None:
    monkeypatch.setenv("CHAINSYNC_ENVIRONMENT", environment)
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        expected = 404 if environment == "production" else 200
        assert c.get("/docs").status_code == expected
        assert c.get("/openapi.json").status_code == expected


def test_openapi_documents_the_ingest_bodies_from_the_shared_models(client) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/events/sales"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"][0] == {"$ref": "#/components/schemas/SaleEvent"}
    sale = spec["components"]["schemas"]["SaleEvent"]
    assert {"event_id", "occurred_at", "store_id", "lines"} <= set(sale["properties"])
    assert "SaleLine" in spec["components"]["schemas"]
    assert "InventoryEvent" in spec["components"]["schemas"]

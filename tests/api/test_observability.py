"""GET /api/observability/health (anyone, no secrets), GET /metrics (admins), request ids and errors."""

from __future__ import annotations

import json

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


# --- issue 6: named health checks, JSON metrics, performance, WebSocket stats, redacted config -------


def test_health_names_degraded_states(client, settings, snapshot, monkeypatch) -> None:
    from chainsync.run_status import record_run_failure

    body = client.get(HEALTH).json()
    assert body["status"] == "ok" and body["degraded"] == []
    assert set(body["checks"]) == {"ops_store", "snapshot", "pipeline", "disk"}
    record_run_failure(settings.serving, {"run_id": "run-broken-1", "job": "__ASSET_JOB", "message": "boom"})
    monkeypatch.setattr(settings, "snapshot_stale_seconds", 0)  # any age is stale now
    resp = client.get(HEALTH)
    assert resp.status_code == 200  # degraded, still serving
    body = resp.json()
    assert body["status"] == "degraded"
    assert set(body["degraded"]) == {"snapshot", "pipeline"}
    assert body["last_pipeline_failure"]["run_id"] == "run-broken-1"
    assert "stale" in body["checks"]["snapshot"]["detail"]


def test_health_is_503_when_the_disk_is_critically_full(client, settings, monkeypatch) -> None:
    monkeypatch.setattr(settings, "disk_free_critical_mb", 2**40)  # more than any disk has free
    resp = client.get(HEALTH)
    assert resp.status_code == 503
    assert resp.json()["checks"]["disk"]["status"] == "failing" and "disk" in resp.json()["degraded"]


def test_metrics_json_admin_only(client, tokens, snapshot) -> None:
    assert client.get("/api/observability/metrics", headers=bearer(tokens["manager"])).status_code == 403
    for _ in range(3):
        client.get(HEALTH)
    client.get("/no/such/route")
    body = client.get("/api/observability/metrics", headers=bearer(tokens["admin"])).json()
    health = body["requests"]["routes"][f"GET {HEALTH}"]
    assert (
        health["requests"] == 3 and health["error_rate"] == 0.0 and health["p99_ms"] >= health["p50_ms"] > 0
    )
    assert body["requests"]["routes"]["GET unmatched"]["client_error_rate"] == 1.0
    assert body["store_sizes_bytes"]["ops_store"] > 0 and body["store_sizes_bytes"]["serving"] > 0
    assert body["pipeline"]["last_snapshot"]["run_id"] == "run-test-0001"
    assert body["process"]["memory_rss_bytes"] > 0 and body["process"]["cpu_seconds"] > 0
    assert body["ingest"]["events"] == 0 and body["websocket"]["connections"] == 0


def test_ingest_rate_counts_applied_events(client, tokens, device_keys) -> None:
    from tests.api.conftest import sale_event

    batch = {"events": [sale_event() for _ in range(5)]}
    assert (
        client.post("/api/events/sales", json=batch, headers={"X-API-Key": device_keys["S001"]}).json()[
            "applied"
        ]
        == 5
    )
    body = client.get("/api/observability/metrics", headers=bearer(tokens["admin"])).json()
    assert body["ingest"]["by_type"] == {"sale": 5}
    # The sales ticker got one message for the store, kept for resume even with nobody listening.
    stats = client.get("/api/observability/websocket/stats", headers=bearer(tokens["admin"])).json()
    assert stats["channels"]["sales:S001"]["published"] == 1


def test_performance_is_manager_plus_and_lists_the_slowest(client, tokens) -> None:
    assert client.get("/api/observability/performance", headers=bearer(tokens["cashier"])).status_code == 403
    client.get(HEALTH)
    body = client.get(
        "/api/observability/performance",
        params={"window_seconds": 60, "top": 2},
        headers=bearer(tokens["manager"]),
    ).json()
    assert body["window_seconds"] == 60 and body["requests"] >= 1
    assert 1 <= len(body["slowest"]) <= 2
    assert body["slowest"][0]["p95_ms"] >= body["slowest"][-1]["p95_ms"]
    assert f"GET {HEALTH}" in body["endpoints"]


def test_managers_are_not_shown_admin_only_endpoints(client, tokens) -> None:
    for path in ("/api/observability/config", "/api/ai/status", "/api/observability/websocket/stats"):
        assert client.get(path, headers=bearer(tokens["admin"])).status_code == 200
    as_admin = client.get("/api/observability/performance", headers=bearer(tokens["admin"])).json()
    as_manager = client.get("/api/observability/performance", headers=bearer(tokens["manager"])).json()
    admin_routes = {
        "GET /api/observability/config",
        "GET /api/ai/status",
        "GET /api/observability/websocket/stats",
    }
    assert admin_routes <= set(as_admin["endpoints"])
    assert not admin_routes & set(as_manager["endpoints"])
    assert not admin_routes & {row["endpoint"] for row in as_manager["slowest"]}
    assert "GET /api/observability/performance" in as_manager["endpoints"]


def test_websocket_stats_admin_only(client, tokens) -> None:
    assert (
        client.get("/api/observability/websocket/stats", headers=bearer(tokens["manager"])).status_code == 403
    )
    body = client.get("/api/observability/websocket/stats", headers=bearer(tokens["admin"])).json()
    assert body["enabled"] is True and body["path"] == "/ws/notifications"
    assert body["connections"] == 0 and body["max_connections"] == 1000


def test_config_never_shows_a_secret(settings, monkeypatch, tokens) -> None:
    webhook = "https://ops:hunter2-pass@hooks.example.com/services/T000/B000/XyZsecretPath?token=abc123"
    monkeypatch.setenv("MONITORING_ALERT_WEBHOOK", webhook)
    monkeypatch.setenv("CHAINSYNC_DEMO_PASSWORD", "demo-pass-Secret9")
    get_settings.cache_clear()
    configured = get_settings()
    with TestClient(create_app(configured)) as c:
        assert c.get("/api/observability/config", headers=bearer(tokens["manager"])).status_code == 403
        # Shown as a database URL would be, were the ops store on PostgreSQL.
        monkeypatch.setattr(
            configured, "ops_store_url", "postgresql+psycopg://chainsync:db-Pass-42@db:5432/ops"
        )
        # Credentials passed in a URL's query string, as drivers accept them.
        monkeypatch.setattr(
            configured, "redis_url", "rediss://cache:6380/0?password=redis-Pass-7&ssl_cert_reqs=required"
        )
        monkeypatch.setattr(
            configured,
            "rate_limit_storage_url",
            "redis://:limits-Pass-8@cache:6379/1?sslpassword=key-Pass-9&token=tok-Pass-10",
        )
        resp = c.get("/api/observability/config", headers=bearer(tokens["admin"]))
    assert resp.status_code == 200
    text = resp.text
    for secret in (
        configured.jwt_key(),
        "hunter2-pass",
        "XyZsecretPath",
        "abc123",
        "demo-pass-Secret9",
        "db-Pass-42",
        "redis-Pass-7",
        "limits-Pass-8",
        "key-Pass-9",
        "tok-Pass-10",
    ):
        assert secret not in text
    body = resp.json()
    assert body["jwt_secret"] == "[redacted]" and body["demo_password"] == "[redacted]"
    assert body["monitoring_alert_webhook"] == "https://hooks.example.com/[redacted]"
    assert body["ops_store_url"] == "postgresql+psycopg://chainsync:***@db:5432/ops"
    assert body["redis_url"] == "rediss://cache:6380/0?password=[redacted]&ssl_cert_reqs=required"
    assert body["ws_heartbeat_interval"] == 30000 and body["log_level"] == "INFO"


def test_prometheus_exposes_process_websocket_snapshot_and_store_gauges(client, tokens, snapshot) -> None:
    text = client.get("/metrics", headers=bearer(tokens["admin"])).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "chainsync_ws_connections",
        "chainsync_snapshot_age_seconds",
        "chainsync_store_size_bytes",
        "chainsync_disk_free_bytes",
    } <= set(families)
    assert families["chainsync_ws_connections"].samples[0].value == 0
    stores = {s.labels["store"] for s in families["chainsync_store_size_bytes"].samples}
    assert {"ops_store", "serving"} <= stores


def test_audit_events_carry_the_request_id(client, engine, tokens) -> None:
    from sqlalchemy import select

    from chainsync.ops_store.tables import event_inbox

    resp = client.get(
        "/api/observability/config", headers={**bearer(tokens["manager"]), "X-Request-ID": "trace-audit-0001"}
    )
    assert resp.status_code == 403
    with engine.connect() as conn:
        details = [
            json.loads(p).get("detail") or "" for p in conn.execute(select(event_inbox.c.payload)).scalars()
        ]
    assert any(d.endswith("[request_id=trace-audit-0001]") for d in details)


def test_log_level_is_honoured(settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    with TestClient(create_app(get_settings())) as c:
        c.get(HEALTH)
    out = capsys.readouterr().out
    assert '"event": "request"' not in out and '"event": "startup"' not in out


def test_sensitive_reads_are_neither_sniffed_nor_cached(client, tokens) -> None:
    admin = bearer(tokens["admin"])
    for path in (
        "/api/observability/config",
        "/api/admin/users",
        "/api/observability/security/events",
        "/metrics",
    ):
        resp = client.get(path, headers=admin)
        assert resp.status_code == 200, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Cache-Control"] == "no-store", path
    refused = client.get("/api/observability/config", headers=bearer(tokens["manager"]))
    assert (
        refused.headers["Cache-Control"] == "no-store"
        and refused.headers["X-Content-Type-Options"] == "nosniff"
    )
    health = client.get(HEALTH)
    assert health.headers["X-Content-Type-Options"] == "nosniff"

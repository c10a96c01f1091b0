"""The response-model convention (see :mod:`api.routes`): every JSON operation of the OpenAPI schema declares
a 2xx body with properties, and real answers are what their declared models say, key for key."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import Engine

from api.routes.sync import SyncHealth
from chainsync.ops_store.catalog import upsert_products
from chainsync.serving import Snapshot
from tests.api.conftest import bearer, sale_event

# Operations that answer without a JSON body: 204s, and Prometheus' text.
NO_JSON_BODY = {("get", "/metrics")}


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _has_properties(schema: dict[str, Any], components: dict[str, Any]) -> bool:
    schema = _resolve(schema, components)
    if "anyOf" in schema or "oneOf" in schema:
        return all(_has_properties(s, components) for s in schema.get("anyOf", schema.get("oneOf")))
    if schema.get("type") == "array":
        return _has_properties(schema["items"], components)
    return bool(schema.get("properties"))


def test_every_json_operation_declares_a_2xx_body_with_properties(app: FastAPI) -> None:
    spec = app.openapi()
    components = spec["components"]["schemas"]
    missing = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
            assert ok, f"{method} {path} declares no 2xx answer"
            for code, response in ok.items():
                if code == "204" or (method, path) in NO_JSON_BODY:
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is None or not _has_properties(schema, components):
                    missing.append(f"{method.upper()} {path} {code}")
    assert not missing, f"2xx answers without a declared shape: {missing}"


def _declared(app: FastAPI, method: str, path: str, status: int) -> tuple[Any, bool]:
    """The model a route declares for ``status`` and whether FastAPI validates through it (a return
    annotation) or it only documents what the handler writes (``responses=``)."""
    for ctx in iter_route_contexts(app.routes):
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", ctx.path_format) + "$"
        if method in (ctx.methods or ()) and re.match(pattern, path):
            route: Any = ctx.route
            documented = (route.responses or {}).get(status, {}).get("model")
            if documented is not None:
                return documented, False
            return route.response_model, True
    raise AssertionError(f"no route for {method} {path}")


def _covers(out: Any, body: Any) -> bool:
    """``out`` holds every key of ``body`` with the same value (it may add keys sent as null)."""
    if isinstance(body, dict):
        return isinstance(out, dict) and all(k in out and _covers(out[k], v) for k, v in body.items())
    if isinstance(body, list):
        return isinstance(out, list) and len(out) == len(body) and all(map(_covers, out, body))
    return bool(out == body and type(out) is type(body))


def _check(app: FastAPI, resp: Any) -> dict[str, Any]:
    method, path, status = resp.request.method, resp.request.url.path, resp.status_code
    assert 200 <= status < 300, f"{method} {path}: {status} {resp.text}"
    body = resp.json()
    model, validated = _declared(app, method, path, status)
    assert model is not None, f"{method} {path} declares no model"
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    again = adapter.dump_python(adapter.validate_python(body), mode="json")
    if validated:  # the model made this answer: it must give it back exactly, no key lost or added
        assert again == body, f"{method} {path}"
    else:  # documentation only: it must describe every key the handler wrote
        assert _covers(again, body), f"{method} {path}: {body} is not described by {model}"
    return body  # type: ignore[no-any-return]


def test_real_answers_are_their_declared_models(
    app: FastAPI,
    client: TestClient,
    engine: Engine,
    tokens: dict[str, str],
    device_keys: dict[str, str],
    snapshot: Snapshot,
) -> None:
    upsert_products(
        engine,
        [
            {
                "product_id": "P001",
                "name": "Product 1",
                "category": "grocery",
                "unit_cost_cents": 100,
                "price_cents": 399,
                "lead_time_days": 7,
                "is_active": True,
            }
        ],
    )
    device = {"X-API-Key": device_keys["S001"]}
    admin, manager = bearer(tokens["admin"]), bearer(tokens["manager"])

    event = sale_event()
    assert _check(app, client.post("/api/events/sales", json=event, headers=device))["status"] == "applied"
    assert _check(app, client.post("/api/events/sales", json=event, headers=device))["status"] == "duplicate"
    batch = {"events": [sale_event(), {**sale_event(), "lines": []}]}
    assert _check(app, client.post("/api/events/sales", json=batch, headers=device))["rejected"] == 1

    upload = {
        "batch_id": "B-models-1",
        "sent_at": event["occurred_at"],
        "items": [
            {"mutation_id": "m-1", "type": "sale", "payload": sale_event()},
            {"mutation_id": "m-2", "type": "sale", "payload": {"nope": 1}},
            {
                "mutation_id": "m-3",
                "type": "product_override",
                "base_version": 0,
                "payload": {"product_id": "P001", "shelf_label": "A-01"},
            },
        ],
    }
    _check(app, client.post("/api/sync/upload", json=upload, headers=device))
    page = _check(app, client.get("/api/sync/download", params={"limit": 1}, headers=device))
    while page["has_more"]:
        page = _check(
            app, client.get("/api/sync/download", params={"cursor": page["next_cursor"]}, headers=device)
        )
    assert _check(app, client.get("/api/sync/status", headers=manager))["devices"]
    _check(app, client.get("/api/sync/health", headers=manager))
    _check(app, client.get("/api/sync/conflicts", headers=manager))
    body = {"resolutions": [{"conflict_id": 99, "strategy": "server_wins"}]}
    assert _check(app, client.post("/api/sync/resolve-conflicts", json=body, headers=manager))["results"] == [
        {"conflict_id": 99, "status": "not_found"}
    ]

    _check(app, client.get("/api/sales/today", headers=manager))
    # (Not /api/ai/forecast here: its ``cutoff`` is a date or a datetime, and a date read back from JSON
    # is taken for a datetime; the answer itself is made from the snapshot's own values.)
    _check(app, client.get("/api/ai/anomalies", headers=manager))
    _check(app, client.get("/api/ai/status", headers=admin))
    _check(app, client.post("/api/ai/cache/clear", headers=admin))
    for path in ("metrics", "performance", "websocket/stats", "config", "health"):
        _check(app, client.get(f"/api/observability/{path}", headers=admin))
    for path in ("users", "device-keys", "ip-rules", "security/status"):
        _check(app, client.get(f"/api/admin/{path}", headers=admin))


def test_sync_health_leaves_the_figures_out_when_the_database_does_not_answer() -> None:
    base = {
        "status": "degraded",
        "sync_enabled": True,
        "poll_interval_seconds": 300,
        "database": "unavailable",
        "snapshot_version": None,
        "schema_version": 1,
        "server_time": "2026-12-03T12:00:00+00:00",
    }
    assert SyncHealth.model_validate(base).model_dump(mode="json") == base
    read = {**base, "status": "ok", "database": "ok", "window_seconds": 3600, "oldest_unsynced_device": None}
    assert SyncHealth.model_validate(read).model_dump(mode="json") == {
        **read,
        "items": None,
        "throughput_items_per_s": None,
        "error_rate": None,
        "open_conflicts": None,
        "dead_letters": None,
        "devices": None,
    }

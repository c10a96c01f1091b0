"""Role x route matrix: every route of the app has an explicit rule here, and every role gets exactly what
the rule says (403 when it is not admitted; neither 401 nor 403 when it is).

A new route without a rule fails :func:`test_every_route_has_a_rule`: add it to :data:`RULES` with the roles
the specification gives it.
"""

from __future__ import annotations

import pytest
from fastapi.routing import iter_route_contexts

from api.security.tokens import create_access_token
from tests.api.conftest import MANAGER_STORES, bearer

PUBLIC = "public"
AUTHENTICATED = "authenticated"  # any user or device (WebSocket: channels narrow it further)
ADMIN = frozenset({"admin"})
MANAGER_UP = frozenset({"admin", "manager"})
USERS = frozenset({"admin", "manager", "cashier"})
DEVICE = frozenset({"device"})
ROLES = ("admin", "manager", "cashier", "device")

RULES: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("POST", "/api/auth/token"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/2fa/enroll"): PUBLIC,  # password-authenticated in the body
    ("POST", "/api/auth/2fa/confirm"): PUBLIC,
    ("POST", "/api/auth/logout"): USERS | DEVICE,  # a device gets 400: it has no login to end
    ("POST", "/api/events/sales"): DEVICE,
    ("POST", "/api/events/inventory"): DEVICE,
    ("GET", "/api/ai/forecast"): MANAGER_UP,
    ("GET", "/api/ai/anomalies"): MANAGER_UP,
    ("GET", "/api/ai/insights"): MANAGER_UP,
    ("GET", "/api/ai/dashboard"): MANAGER_UP,
    ("GET", "/api/sales/today"): MANAGER_UP,
    ("GET", "/api/ai/status"): ADMIN,
    ("POST", "/api/ai/cache/clear"): ADMIN,
    ("GET", "/api/observability/health"): PUBLIC,
    ("GET", "/api/observability/metrics"): ADMIN,
    ("GET", "/api/observability/security/events"): ADMIN,
    ("GET", "/api/observability/websocket/stats"): ADMIN,
    ("GET", "/api/observability/config"): ADMIN,
    ("GET", "/api/observability/performance"): MANAGER_UP,
    ("POST", "/api/sync/upload"): DEVICE,
    ("GET", "/api/sync/download"): DEVICE,
    ("GET", "/api/sync/status"): MANAGER_UP | DEVICE,
    ("GET", "/api/sync/conflicts"): MANAGER_UP,
    ("POST", "/api/sync/resolve-conflicts"): MANAGER_UP,
    ("GET", "/api/sync/health"): MANAGER_UP,
    ("GET", "/api/admin/users"): ADMIN,
    ("POST", "/api/admin/users"): ADMIN,
    ("PATCH", "/api/admin/users/{username}"): ADMIN,
    ("DELETE", "/api/admin/users/{username}/totp"): ADMIN,
    ("GET", "/api/admin/device-keys"): ADMIN,
    ("POST", "/api/admin/device-keys"): ADMIN,
    ("DELETE", "/api/admin/device-keys/{prefix}"): ADMIN,
    ("GET", "/api/admin/ip-rules"): ADMIN,
    ("POST", "/api/admin/ip-rules"): ADMIN,
    ("DELETE", "/api/admin/ip-rules/{rule_id}"): ADMIN,
    ("GET", "/api/admin/security/status"): ADMIN,
    ("DELETE", "/api/admin/ip-reputation/{ip}"): ADMIN,
    ("GET", "/metrics"): ADMIN,
    ("WS", "/ws/notifications"): AUTHENTICATED,
}

# Specified routes another part of the API may not have built yet: a rule without its route is fine.
PLANNED = {
    ("GET", "/api/ai/insights"),
    ("GET", "/api/ai/dashboard"),
    ("GET", "/api/ai/status"),
    ("POST", "/api/ai/cache/clear"),
}

PATH_VALUES = {"{username}": "carl", "{prefix}": "deadbeef", "{rule_id}": "1", "{ip}": "203.0.113.9"}


def app_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    out = []
    for ctx in iter_route_contexts(app.routes):
        methods = sorted(m for m in (ctx.methods or ()) if m != "HEAD") or ["WS"]
        out.extend((m, ctx.path) for m in methods)
    return out


def test_every_route_has_a_rule(app) -> None:
    routes = app_routes(app)
    missing = [r for r in routes if r not in RULES]
    assert not missing, f"routes without a rule in RULES: {missing}"
    stale = set(RULES) - set(routes) - PLANNED
    assert not stale, f"rules for routes that no longer exist: {stale}"


def _credentials(settings, role: str, device_keys) -> dict[str, str]:  # type: ignore[no-untyped-def]
    if role == "device":
        return {"X-API-Key": device_keys["S001"]}
    subject, stores = {
        "admin": ("alice", ["*"]),
        "manager": ("mona", list(MANAGER_STORES)),
        "cashier": ("carl", ["S001"]),
    }[role]
    # A fresh token per request: logout revokes the one it is called with.
    return bearer(create_access_token(settings, subject=subject, role=role, stores=stores).token)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_its_routes(app, client, settings, users, device_keys, role) -> None:
    wrong = []
    for method, template in app_routes(app):
        rule = RULES[(method, template)]
        if method == "WS" or rule == PUBLIC:
            continue
        path = template
        for name, value in PATH_VALUES.items():
            path = path.replace(name, value)
        status = client.request(method, path, headers=_credentials(settings, role, device_keys)).status_code
        admitted = rule == AUTHENTICATED or role in rule
        if admitted and status in (401, 403):
            wrong.append((method, template, role, status, "should be admitted"))
        if not admitted and status != 403:
            wrong.append((method, template, role, status, "should be 403"))
    assert not wrong, wrong


def test_public_routes_need_no_credentials(app, client) -> None:
    for method, template in app_routes(app):
        if RULES[(method, template)] == PUBLIC:
            assert client.request(method, template).status_code not in (401, 403), (method, template)


@pytest.mark.parametrize(
    "path",
    [
        "/api/ai/forecast",
        "/api/ai/anomalies",
        "/api/ai/insights",
        "/api/sales/today",
        "/api/sync/status",
    ],
)
def test_a_malformed_store_id_is_the_same_422_everywhere(client, tokens, path) -> None:
    raw = "S001'<script>"
    resp = client.get(path, params={"store_id": raw}, headers=bearer(tokens["manager"]))
    assert resp.status_code == 422, (path, resp.status_code, resp.text)
    assert resp.json()["errors"][0]["field"] == "query.store_id"
    assert "<script>" not in resp.text

"""The routes reach the app's services through typed dependencies (api/deps.py): none reads ``app.state``,
and a test replaces a service with ``app.dependency_overrides``."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI

from api.deps import get_risk
from api.security.ipfilter import IpFilter
from api.security.risk import RiskEngine
from chainsync.settings import Settings
from tests.api.conftest import TestClient, bearer

ROUTES = Path(__file__).resolve().parents[2] / "api" / "routes"


def test_no_route_reads_the_app_state() -> None:
    readers = {path.name for path in ROUTES.glob("*.py") if re.search(r"\bapp\.state\b", path.read_text())}
    assert not readers, f"use a dependency from api/deps.py instead of app.state in {sorted(readers)}"


def test_a_service_is_replaced_through_dependency_overrides(
    app: FastAPI, client: TestClient, tokens: dict[str, str], settings: Settings
) -> None:
    other = RiskEngine(settings, None, IpFilter(settings))
    for _ in range(3):
        other.observe("198.51.100.77", "refresh_token_reuse")  # 15 > the block score of 10
    app.dependency_overrides[get_risk] = lambda: other
    try:
        status = client.get("/api/admin/security/status", headers=bearer(tokens["admin"])).json()
    finally:
        app.dependency_overrides.clear()
    assert [b["ip"] for b in status["active_blocks"]] == ["198.51.100.77"]
    assert status["threat_level"] == other.threat_level()
    status = client.get("/api/admin/security/status", headers=bearer(tokens["admin"])).json()
    assert status["active_blocks"] == []  # the app's own engine again

"""Read-only client for the API's live figures (health, performance, sync status and health).

Every call answers a :class:`Live` — the JSON body, or the reason there is none — and never raises, so a page
shows a clear notice when the API is down or the dashboards have no credentials, never a traceback. Answers
are cached for a few seconds: a page rerun does not hammer the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import streamlit as st

from chainsync.settings import Settings, get_settings

LIVE_TTL_SECONDS = 15


@dataclass(frozen=True)
class Live:
    """A live answer: ``data`` when the API answered 2xx, else ``error`` says why (for the notice)."""

    data: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def base_url(settings: Settings) -> str:
    return (settings.dashboard_api_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def _secret(value: Any) -> str | None:
    text = value.get_secret_value() if value is not None else ""
    return text or None


def _token(settings: Settings, client: httpx.Client) -> str | None:
    token = _secret(settings.dashboard_api_token)
    if token or not settings.dashboard_api_username:
        return token
    password = _secret(settings.dashboard_api_password) or ""
    resp = client.post(
        "/api/auth/token", data={"username": settings.dashboard_api_username, "password": password}
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def _get(url: str, path: str, params: tuple[tuple[str, Any], ...], auth: bool) -> Live:
    settings = get_settings()
    try:
        with httpx.Client(base_url=url, timeout=settings.dashboard_api_timeout_seconds) as client:
            headers = {}
            if auth:
                token = _token(settings, client)
                if token is None:
                    return Live(
                        error="no API credentials configured (CHAINSYNC_DASHBOARD_API_TOKEN or "
                        "CHAINSYNC_DASHBOARD_API_USERNAME/PASSWORD)"
                    )
                headers["Authorization"] = f"Bearer {token}"
            resp = client.get(path, params=dict(params), headers=headers)
    except httpx.HTTPStatusError as exc:
        return Live(error=f"API login refused ({exc.response.status_code})")
    except httpx.HTTPError as exc:
        return Live(error=f"API unreachable at {url} ({type(exc).__name__})")
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", "")
        except ValueError:
            detail = ""
        return Live(error=f"API answered {resp.status_code} for {path} {detail}".rstrip())
    try:
        return Live(data=resp.json())
    except ValueError:
        return Live(error=f"API answered {path} with a body that is not JSON")


def get(path: str, *, auth: bool = True, **params: Any) -> Live:
    """GET ``path`` on the API (bearer token from the settings when ``auth``)."""
    return _get(base_url(get_settings()), path, tuple(sorted(params.items())), auth)


def health() -> Live:
    return get("/api/observability/health", auth=False)


def performance(window_seconds: int = 900) -> Live:
    return get("/api/observability/performance", window_seconds=window_seconds, top=10)


def sync_status() -> Live:
    return get("/api/sync/status")


def sync_health() -> Live:
    return get("/api/sync/health")


def ai_dashboard() -> Live:
    return get("/api/ai/dashboard")


def security_status() -> Live:
    """Threat level and the blocks in force (admin only)."""
    return get("/api/admin/security/status")


def sales_today(store_id: str | None = None) -> Live:
    """Sales so far today (each store's business day), straight from the ops store."""
    return get("/api/sales/today", **({"store_id": store_id} if store_id else {}))


def notice(live: Live, what: str) -> None:
    """The standard notice for a live figure that is not available."""
    st.info(f"Live {what} not shown: {live.error}.", icon=":material/cloud_off:")

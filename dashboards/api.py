"""Read-only client for the API's live figures (health, performance, sync status and health), as the
logged-in analyst: every call carries their access token (:mod:`dashboards.auth`), so the API answers with
what their role and stores allow.

Every call answers a :class:`Live` — the JSON body, or the reason there is none — and never raises, so a page
shows a clear notice when the API is down, never a traceback. Answers are cached per reader (user, role and
stores, never the token) for :data:`LIVE_TTL_SECONDS`: reruns and auto-refreshes do not hammer the API. A
401 is never cached: the token is refreshed once and the call retried; a second 401 ends the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import streamlit as st

from chainsync.settings import get_settings
from dashboards import auth

LIVE_TTL_SECONDS = 5
PUBLIC = "public"  # the cache identity of calls made without a token


@dataclass(frozen=True)
class Live:
    """A live answer: ``data`` when the API answered 2xx, else ``error`` says why (for the notice)."""

    data: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Unauthorized(Exception):
    """The API refused the token (401): raised, not returned, so the answer is never cached."""


@st.cache_data(ttl=LIVE_TTL_SECONDS, show_spinner=False)
def _fetch(url: str, path: str, params: tuple[tuple[str, Any], ...], who: str, _token: str | None) -> Live:
    # ``who`` keys the cache by reader; ``_token`` (leading underscore) is not hashed into the key.
    headers = {"Authorization": f"Bearer {_token}"} if _token else {}
    try:
        with auth.client() as http:
            resp = http.get(path, params=dict(params), headers=headers)
    except httpx.HTTPError as exc:
        return Live(error=f"API unreachable at {url} ({type(exc).__name__})")
    if resp.status_code == 401 and _token:
        raise _Unauthorized
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


def get(path: str, *, auth_required: bool = True, **params: Any) -> Live:
    """GET ``path`` on the API as the logged-in analyst (without a token when not ``auth_required``)."""
    url, key = auth.base_url(get_settings()), tuple(sorted(params.items()))
    if not auth_required:
        return _fetch(url, path, key, PUBLIC, None)
    for attempt in (1, 2):
        session, token = auth.current(), auth.bearer()
        if session is None or token is None:
            return Live(error="not logged in")
        try:
            return _fetch(url, path, key, session.identity, token)
        except _Unauthorized:
            # Expired early or revoked (a logout elsewhere): one refresh, one retry, then log in again.
            if attempt == 1 and auth.refresh() == "refreshed":
                continue
            auth.end("Your session has ended: log in again.")
            st.rerun()
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or reruns


def health() -> Live:
    return get("/api/observability/health", auth_required=False)


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
    return get("/api/sales/today", store_id=store_id) if store_id else get("/api/sales/today")


def notice(live: Live, what: str) -> None:
    """The standard notice for a live figure that is not available."""
    st.info(f"Live {what} not shown: {live.error}.", icon=":material/cloud_off:")

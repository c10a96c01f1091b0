"""The analyst's login to the API: log in (password, then a TOTP code when the API asks), keep the tokens,
refresh the access token when it is about to expire, log out.

The tokens live in ``st.session_state`` only (this browser session's memory on the Streamlit server):
never in a URL, a log line or a file. One login per session: every API call reuses the access token until
it is within :data:`EXPIRY_MARGIN_SECONDS` of its expiry, then the refresh token buys a new pair once
(the API rotates refresh tokens and treats a second use as theft, so each is presented once only).

The role and stores come from the access token's claims, read without checking the signature: the token
came straight from the API on this server's own connection, the dashboards do not hold the signing key,
and the API checks the signature on every call anyway. The dashboards use the claims to decide what to
draw; the API decides what it answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import httpx
import jwt
import streamlit as st

from chainsync.settings import Settings, get_settings

SESSION_KEY = "auth_session"
NOTICE_KEY = "auth_notice"  # why the last session ended, shown on the login page
# Refresh this many seconds before the access token's expiry, so a call never races the clock.
EXPIRY_MARGIN_SECONDS = 20
# The API's wildcard for "every store" in the stores claim (admins).
ALL_STORES = "*"
DASHBOARD_ROLES = ("admin", "manager")


@dataclass(frozen=True)
class Session:
    """Who is logged in: the token's subject, role and stores (None: every store), and the tokens."""

    username: str
    role: str
    stores: tuple[str, ...] | None
    expires_at: float  # epoch seconds of the access token's ``exp``
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def identity(self) -> str:
        """A cache key for what this reader may see (no secret in it)."""
        return f"{self.username}|{self.role}|{','.join(self.stores) if self.stores is not None else '*'}"


@dataclass(frozen=True)
class LoginResult:
    """``session`` when logged in; else ``needs_otp`` (ask for the code) and/or ``error`` for the analyst."""

    session: Session | None = None
    needs_otp: bool = False
    error: str | None = None


def base_url(settings: Settings) -> str:
    return (settings.dashboard_api_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def client() -> httpx.Client:
    """An HTTP client for the API (base URL and timeout from the settings)."""
    settings = get_settings()
    return httpx.Client(base_url=base_url(settings), timeout=settings.dashboard_api_timeout_seconds)


def session_of(body: dict[str, object]) -> Session:
    """The session a token response (login or refresh) describes."""
    access, refresh = str(body["access_token"]), str(body["refresh_token"])
    claims = jwt.decode(access, options={"verify_signature": False})
    stores = [str(s) for s in claims.get("stores") or []]
    return Session(
        username=str(claims["sub"]),
        role=str(claims["role"]),
        stores=None if ALL_STORES in stores else tuple(sorted(stores)),
        expires_at=float(claims["exp"]),
        access_token=access,
        refresh_token=refresh,
    )


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        return ""
    if isinstance(detail, list):  # a 422: name the fields
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    return str(detail or "")


def _refusal(resp: httpx.Response) -> str:
    """The analyst-facing reason for a refused login (401, 403, 422, 429 or anything else)."""
    if resp.status_code == 429:
        wait = resp.headers.get("Retry-After")
        return "Too many login attempts: try again " + (f"in {wait} s." if wait else "later.")
    detail = _detail(resp)
    if resp.status_code == 401:
        return f"{detail or 'Login refused'}."
    if resp.status_code in (403, 422):
        return f"Login refused ({resp.status_code}): {detail}"
    return f"The API answered {resp.status_code} to the login{': ' + detail if detail else ''}."


def login(username: str, password: str, otp: str | None = None) -> LoginResult:
    """Exchange the analyst's credentials (and TOTP code) for tokens; on success the session holds them."""
    form = {"username": username, "password": password, **({"otp": otp} if otp else {})}
    try:
        with client() as http:
            resp = http.post("/api/auth/token", data=form)
            if resp.status_code == 401 and resp.headers.get("X-2FA-Required"):
                # Asked for a code (none given) or the code was wrong: either way the code step follows.
                return LoginResult(needs_otp=True, error=None if not otp else _refusal(resp))
            if resp.status_code != 200:
                return LoginResult(error=_refusal(resp))
            try:
                session = session_of(resp.json())
            except (ValueError, KeyError, TypeError, jwt.PyJWTError):
                return LoginResult(error="The API's answer to the login holds no usable token.")
            if session.role not in DASHBOARD_ROLES:
                # A cashier: end the login the API just made rather than leave a live token behind.
                http.post("/api/auth/logout", headers={"Authorization": f"Bearer {session.access_token}"})
                return LoginResult(error="The dashboards are for managers and administrators.")
    except httpx.HTTPError as exc:
        return LoginResult(
            error=f"The API at {base_url(get_settings())} is not answering ({type(exc).__name__})."
        )
    st.session_state[SESSION_KEY] = session
    st.session_state.pop(NOTICE_KEY, None)
    return LoginResult(session=session)


def current() -> Session | None:
    """The logged-in session, or None."""
    session = st.session_state.get(SESSION_KEY)
    return session if isinstance(session, Session) else None


def end(notice: str | None = None) -> None:
    """Forget the session locally (tokens and every other value of this browser session)."""
    st.session_state.clear()
    if notice:
        st.session_state[NOTICE_KEY] = notice


RefreshOutcome = Literal["refreshed", "ended", "unreachable"]


def refresh() -> RefreshOutcome:
    """Spend the refresh token for a new pair. A refused refresh ends the session (log in again); an API
    that does not answer leaves it as it is (the next call tries again)."""
    session = current()
    if session is None:
        return "ended"
    try:
        with client() as http:
            resp = http.post("/api/auth/refresh", json={"refresh_token": session.refresh_token})
    except httpx.HTTPError:
        return "unreachable"
    try:
        renewed = session_of(resp.json()) if resp.status_code == 200 else None
    except (ValueError, KeyError, TypeError, jwt.PyJWTError):
        renewed = None
    if renewed is None:
        end("Your session has ended: log in again.")
        return "ended"
    st.session_state[SESSION_KEY] = renewed
    return "refreshed"


def bearer() -> str | None:
    """The access token to call the API with, refreshed first when it is about to expire; None when
    there is no session (any more)."""
    session = current()
    if session is None:
        return None
    if session.expires_at - time.time() < EXPIRY_MARGIN_SECONDS and refresh() == "ended":
        return None
    session = current()
    return session.access_token if session is not None else None


def logout() -> None:
    """End the login at the API (its access token stops working and its refresh tokens are revoked), then
    clear the session. The session is cleared even when the API does not answer."""
    token = bearer()  # an expired token could not end the login: refresh first when due
    if token is not None:
        try:
            with client() as http:
                http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            pass  # nothing more to do: the local session goes anyway, the tokens expire on their own
    end("You have logged out.")

"""Authentication: the OAuth2 password flow (plus a TOTP code when two-factor is on), rotating refresh
tokens, logout, and two-factor enrolment.

Every attempt is scored by the risk engine and audited (never with the password, token or code).
Administrators must have two-factor authentication outside demo mode.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio
import pyotp
from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from api.deps import (
    AuditorDep,
    EngineDep,
    IpFilterDep,
    RateLimiterDep,
    RevokedTokensDep,
    RiskDep,
    SettingsDep,
    TotpCipherDep,
)
from api.errors import error_response
from api.log import get_logger
from api.security.audit import Auditor
from api.security.ipfilter import IpFilter, client_ip_of
from api.security.principals import CurrentPrincipal
from api.security.ratelimit import RateLimiter
from api.security.risk import RiskEngine
from api.security.tokens import ALL_STORES, create_access_token, new_refresh_token, new_token_family
from chainsync.ops_store.tokens import revoke_refresh_family, store_refresh_token, use_refresh_token
from chainsync.ops_store.totp import TotpCipher, get_totp, mark_totp_used, set_totp_secret
from chainsync.ops_store.users import Role, User, get_user
from chainsync.passwords import verify_password
from chainsync.settings import Settings

router = APIRouter(prefix="/auth", tags=["auth"])
log = get_logger("api.auth")

# One message for an unknown user and a wrong password, so a caller cannot tell which it was.
_BAD_CREDENTIALS = "Incorrect username or password"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

OtpField = Annotated[str | None, Form(max_length=10, pattern=r"^[0-9]{6,8}$", description="TOTP code")]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int  # seconds
    refresh_token: str
    refresh_expires_in: int  # seconds
    role: Role


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: Annotated[str, Field(min_length=8, max_length=200)]


class TotpEnrolment(BaseModel):
    secret: str
    otpauth_uri: str


class TotpEnabled(BaseModel):
    enabled: Literal[True] = True


@dataclass(frozen=True, slots=True)
class Guard:
    """The services every credential check uses: the risk engine that scores a failure, the audit trail,
    the per-username guessing budget, the IP lists (allowlisted addresses spend no budget) and the cipher
    of TOTP secrets."""

    risk: RiskEngine
    auditor: Auditor
    limiter: RateLimiter
    ipfilter: IpFilter
    cipher: TotpCipher


async def get_guard(
    risk: RiskDep, auditor: AuditorDep, limiter: RateLimiterDep, ipfilter: IpFilterDep, cipher: TotpCipherDep
) -> Guard:
    return Guard(risk, auditor, limiter, ipfilter, cipher)


GuardDep = Annotated[Guard, Depends(get_guard)]


def _context(request: Request) -> tuple[str | None, str | None]:
    return client_ip_of(request.scope), request.headers.get("user-agent")


def _unauthorized(detail: str, extra: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={**_CHALLENGE, **(extra or {})})


def _guessing_budget(request: Request, guard: Guard, username: str) -> None:
    """429 when ``username`` has spent its failed-attempt budget (``CHAINSYNC_RATE_LIMIT_LOGIN_USER``),
    whatever address this attempt comes from: guessing spread over many addresses is limited too.
    Attempts from allowlisted addresses (the stores' own networks) neither spend nor meet the budget, so
    an attacker outside cannot lock a user out of the tills."""
    if _allowlisted(request, guard):
        return
    exceeded = anyio.from_thread.run(guard.limiter.exceeded, "login_user", username.lower()[:128])
    if exceeded is None:
        return
    ip, agent = _context(request)
    guard.auditor.record(
        kind="rate_limited", outcome="blocked", severity="warning", username=username[:128],
        source_ip=ip, user_agent=agent, method=request.method, route=request.url.path,
        detail=f"failed attempts for this username: limit {exceeded.limit} reached",
    )  # fmt: skip
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"Too many failed attempts for this account; retry after {exceeded.retry_after} s",
        headers={"Retry-After": str(exceeded.retry_after)},
    )


def _allowlisted(request: Request, guard: Guard) -> bool:
    ip, _ = _context(request)
    return bool(guard.ipfilter.is_allowlisted(ip))


def _spend_guess(request: Request, guard: Guard, username: str) -> None:
    if _allowlisted(request, guard):
        return
    anyio.from_thread.run(guard.limiter.hit, "login_user", username.lower()[:128])


def _check_password(request: Request, guard: Guard, engine: Engine, username: str, password: str) -> User:
    """The active user whose password this is, or a 401 after scoring and auditing the failure (and
    spending one of the username's failed attempts); 429 once they are spent."""
    _guessing_budget(request, guard, username)
    user = get_user(engine, username)
    usable = user is not None and user.is_active
    # verify_password(None, ...) checks a dummy hash, so unknown users cost the same time as wrong passwords.
    ok = verify_password(user.password_hash if usable and user else None, password)
    if ok and user is not None:
        return user
    ip, agent = _context(request)
    decision = guard.risk.observe(ip, "login_failure", username=username[:128])
    guard.auditor.record(
        kind="login_failure",
        outcome="failure",
        username=username,
        source_ip=ip,
        user_agent=agent,
        method=request.method,
        route=request.url.path,
        risk_score=decision.risk_score,
        severity=decision.severity,
        detail=decision.reason,
    )
    log.info("login_failure", username=username, risk_score=decision.risk_score)
    _spend_guess(request, guard, username)
    raise _unauthorized(_BAD_CREDENTIALS)


def _totp_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is (this one or one either side, for clock drift), or None."""
    totp = pyotp.TOTP(secret)
    for drift in (0, -1, 1):
        at = now + timedelta(seconds=drift * totp.interval)
        if hmac.compare_digest(totp.at(at), code):
            return totp.timecode(at)
    return None


def _verify_totp(guard: Guard, engine: Engine, user: User, code: str, *, enable: bool = False) -> bool:
    state = get_totp(engine, user.id, guard.cipher)
    if state is None:
        return False
    step = _totp_step(state.secret, code, datetime.now(UTC))
    return step is not None and mark_totp_used(engine, user.id, step, enable=enable)


def _issue(settings: Settings, engine: Engine, user: User, family: str | None = None) -> TokenResponse:
    family = family or new_token_family()
    now = datetime.now(UTC)
    refresh = new_refresh_token()
    lifetime = timedelta(days=settings.refresh_token_days)
    store_refresh_token(
        engine, refresh, family_id=family, username=user.username, issued_at=now, expires_at=now + lifetime
    )
    stores = [ALL_STORES] if user.role == "admin" else sorted(user.store_ids)
    token = create_access_token(
        settings,
        subject=user.username,
        role=user.role,
        stores=stores,
        now=now,
        family=family,
        security_version=user.security_version,
    )
    return TokenResponse(
        access_token=token.token,
        expires_in=token.expires_in,
        refresh_token=refresh,
        refresh_expires_in=int(lifetime.total_seconds()),
        role=user.role,
    )


@router.post(
    "/token",
    responses={403: error_response("An administrator without two-factor enrolment (outside demo mode)")},
)
def login(
    request: Request,
    response: Response,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    settings: SettingsDep,
    engine: EngineDep,
    guard: GuardDep,
    otp: OtpField = None,
) -> TokenResponse:
    """Exchange a username and password (form fields), plus ``otp`` when two-factor authentication is on,
    for a short-lived bearer token and a refresh token."""
    user = _check_password(request, guard, engine, form.username, form.password)
    ip, agent = _context(request)
    auditor = guard.auditor
    audit: dict[str, Any] = {
        "username": user.username,
        "role": user.role,
        "source_ip": ip,
        "user_agent": agent,
    }
    audit |= {"method": request.method, "route": request.url.path}
    totp = get_totp(engine, user.id, guard.cipher)
    if totp is not None and totp.enabled:
        if not otp:
            raise _unauthorized("Two-factor code required", {"X-2FA-Required": "totp"})
        if not _verify_totp(guard, engine, user, otp):
            _spend_guess(request, guard, user.username)
            decision = guard.risk.observe(ip, "2fa_failure", username=user.username)
            auditor.record(
                kind="2fa_failure", outcome="failure", risk_score=decision.risk_score,
                severity=decision.severity, detail=decision.reason, **audit,
            )  # fmt: skip
            raise _unauthorized("Invalid two-factor code", {"X-2FA-Required": "totp"})
        auditor.record(kind="2fa_success", outcome="success", **audit)
    elif user.role == "admin" and not settings.demo_mode:
        auditor.record(
            kind="login_failure",
            outcome="denied",
            detail="administrator without two-factor enrolment",
            **audit,
        )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Administrators must use two-factor authentication: enrol at POST /api/auth/2fa/enroll",
        )
    decision = guard.risk.login_succeeded(ip, user.username)
    auditor.record(
        kind="login_success", outcome="success", risk_score=decision.risk_score,
        severity=decision.severity, detail=decision.reason, **audit,
    )  # fmt: skip
    log.info("login_success", username=user.username, role=user.role)
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 5.1: token responses are not cached
    return _issue(settings, engine, user)


@router.post("/refresh")
def refresh(
    request: Request,
    response: Response,
    body: RefreshRequest,
    settings: SettingsDep,
    engine: EngineDep,
    risk: RiskDep,
    auditor: AuditorDep,
    revoked: RevokedTokensDep,
) -> TokenResponse:
    """Exchange a refresh token for a new access token and a new refresh token (the old one is spent).
    Presenting a spent refresh token again revokes every token of its login (theft detection)."""
    use = use_refresh_token(engine, body.refresh_token)
    ip, agent = _context(request)
    user = get_user(engine, use.username) if use.username else None
    if use.status == "ok" and user is not None and user.is_active:
        auditor.record(
            kind="token_refresh", outcome="success", username=user.username, role=user.role,
            source_ip=ip, user_agent=agent,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return _issue(settings, engine, user, family=use.family_id)
    kind = "refresh_token_reuse" if use.status == "reused" else "refresh_failure"
    if use.status == "reused" and use.family_id:
        # The whole login was revoked in the store: its access tokens (thief's and victim's) end now here,
        # and on every other process within the revocation bound.
        revoked.revoke_family(use.family_id)
    decision = risk.observe(ip, kind, username=use.username)
    auditor.record(
        kind=kind, outcome="denied", username=use.username, source_ip=ip, user_agent=agent,
        risk_score=decision.risk_score, detail=f"refresh token {use.status}",
        severity="critical" if use.status == "reused" else decision.severity,
    )  # fmt: skip
    raise _unauthorized("Invalid refresh token")


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={400: error_response("Devices have no login to end")},
)
def logout(
    request: Request,
    principal: CurrentPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
    revoked: RevokedTokensDep,
) -> Response:
    """End this login: the access token stops working now and its refresh tokens are revoked."""
    if principal.role == "device":
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Devices authenticate with API keys; nothing to end")
    if principal.token_id and principal.token_expires_at:
        revoked.revoke(principal.token_id, principal.token_expires_at)
    if principal.token_family:
        # Every token of this login ends, not only the one presented (earlier access tokens included).
        revoke_refresh_family(engine, principal.token_family)
        revoked.revoke_family(principal.token_family)
    ip, agent = _context(request)
    auditor.record(
        kind="logout", outcome="success", username=principal.subject, role=principal.role,
        source_ip=ip, user_agent=agent,
    )  # fmt: skip
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/2fa/enroll",
    responses={409: error_response("Two-factor authentication is already on")},
)
def enroll_totp(
    request: Request,
    response: Response,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    settings: SettingsDep,
    engine: EngineDep,
    guard: GuardDep,
) -> TotpEnrolment:
    """Start two-factor enrolment (username and password as form fields): a new TOTP secret and its
    ``otpauth://`` URI for an authenticator app. Confirm with a code at ``/api/auth/2fa/confirm``.
    Refused (409) once two-factor authentication is on; an administrator can reset it."""
    user = _check_password(request, guard, engine, form.username, form.password)
    cipher = guard.cipher
    state = get_totp(engine, user.id, cipher)
    if state is not None and state.enabled:
        raise HTTPException(status.HTTP_409_CONFLICT, "Two-factor authentication is already enabled")
    secret = pyotp.random_base32()
    set_totp_secret(engine, user.id, secret, cipher)
    response.headers["Cache-Control"] = "no-store"
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=settings.totp_issuer)
    return TotpEnrolment(secret=secret, otpauth_uri=uri)


@router.post(
    "/2fa/confirm",
    responses={409: error_response("Not enrolled, or already on")},
)
def confirm_totp(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    engine: EngineDep,
    guard: GuardDep,
    otp: Annotated[str, Form(max_length=10, pattern=r"^[0-9]{6,8}$", description="TOTP code")],
) -> TotpEnabled:
    """Turn two-factor authentication on with the first code from the authenticator app."""
    user = _check_password(request, guard, engine, form.username, form.password)
    state = get_totp(engine, user.id, guard.cipher)
    if state is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "Start with POST /api/auth/2fa/enroll")
    ip, agent = _context(request)
    auditor = guard.auditor
    if state.enabled:
        raise HTTPException(status.HTTP_409_CONFLICT, "Two-factor authentication is already enabled")
    if not _verify_totp(guard, engine, user, otp, enable=True):
        _spend_guess(request, guard, user.username)
        decision = guard.risk.observe(ip, "2fa_failure", username=user.username)
        auditor.record(
            kind="2fa_failure", outcome="failure", username=user.username, role=user.role, source_ip=ip,
            user_agent=agent, risk_score=decision.risk_score, detail="enrolment code rejected",
        )  # fmt: skip
        raise _unauthorized("Invalid two-factor code")
    auditor.record(
        kind="2fa_enrolled", outcome="success", username=user.username, role=user.role, source_ip=ip,
        user_agent=agent,
    )  # fmt: skip
    return TotpEnabled()

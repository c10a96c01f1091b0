"""Dependencies shared by the routers: settings, the ops store engine, the app's services, and who is calling.

Each service the app builds (at start-up, on ``app.state``) is reached by a route through one typed
dependency (``RiskDep``, ``RevokedTokensDep``, ...), so the seam shows in the route's signature and a test
replaces a service with ``app.dependency_overrides``; nothing under ``api/routes`` reads ``app.state``.

Authentication is a chain of ``Annotated`` dependencies: :data:`CurrentPrincipal` resolves a user JWT or
a device API key; :class:`RequireRole` narrows it to the roles an endpoint admits (``device`` for POS
terminals); :data:`DeviceAuth`, :data:`ManagerPrincipal` and :data:`AdminPrincipal` name the usual ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.audit import Auditor
from api.auth_trail import AuthFailureTrail
from api.device_keys import DeviceKeyCache
from api.firewall import check_principal
from api.ipfilter import IpFilter
from api.metrics import Metrics
from api.ratelimit import RateLimiter
from api.risk import RiskEngine
from api.security import ALL_STORES, InvalidToken, PrincipalRole, RevokedTokens, decode_access_token
from api.writer import UploadWriter
from api.ws.hub import Hub
from chainsync.ops_store.totp import TotpCipher
from chainsync.ops_store.users import DEVICE_KEY_PREFIX
from chainsync.schemas.events import ID_PATTERN
from chainsync.settings import Settings


# ``async`` so FastAPI calls them on the event loop instead of a worker thread (they only read state).
# Typed on ``HTTPConnection``, so the same dependencies serve HTTP routes and WebSocket routes.
async def get_app_settings(connection: HTTPConnection) -> Settings:
    return connection.app.state.settings


async def get_ops_engine(connection: HTTPConnection) -> Engine:
    return connection.app.state.engine


async def get_auditor(connection: HTTPConnection) -> Auditor:
    return connection.app.state.auditor


async def get_optional_auditor(connection: HTTPConnection) -> Auditor | None:
    """The auditor, or None in an app whose security state was never installed (start-up not run)."""
    return getattr(connection.app.state, "auditor", None)


async def get_risk(connection: HTTPConnection) -> RiskEngine:
    return connection.app.state.risk


async def get_ip_filter(connection: HTTPConnection) -> IpFilter:
    return connection.app.state.ipfilter


async def get_rate_limiter(connection: HTTPConnection) -> RateLimiter:
    return connection.app.state.ratelimiter


async def get_revoked_tokens(connection: HTTPConnection) -> RevokedTokens:
    return connection.app.state.revoked_tokens


async def get_totp_cipher(connection: HTTPConnection) -> TotpCipher:
    return connection.app.state.totp_cipher


async def get_auth_failures(connection: HTTPConnection) -> AuthFailureTrail | None:
    return getattr(connection.app.state, "auth_failures", None)


@dataclass(frozen=True, slots=True)
class FirewallView:
    """What :func:`api.firewall.address_refused` and :func:`api.firewall.session_ended` read, for checks
    made after a request's own (a WebSocket that stays open): the settings, the IP lists, the risk engine's
    blocks and the revoked logins."""

    settings: Settings
    ipfilter: IpFilter
    risk: RiskEngine
    revoked_tokens: RevokedTokens | None


async def get_firewall_view(connection: HTTPConnection) -> FirewallView | None:
    """The firewall's view, or None when its state was never installed."""
    state = connection.app.state
    if not hasattr(state, "ipfilter"):
        return None
    return FirewallView(
        settings=state.settings,
        ipfilter=state.ipfilter,
        risk=state.risk,
        revoked_tokens=getattr(state, "revoked_tokens", None),
    )


async def get_device_keys(connection: HTTPConnection) -> DeviceKeyCache:
    return connection.app.state.device_keys


async def get_upload_writer(connection: HTTPConnection) -> UploadWriter:
    return connection.app.state.upload_writer


async def get_metrics(connection: HTTPConnection) -> Metrics:
    return connection.app.state.metrics


async def get_hub(connection: HTTPConnection) -> Hub:
    return connection.app.state.hub


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_ops_engine)]
DeviceKeysDep = Annotated[DeviceKeyCache, Depends(get_device_keys)]
UploadWriterDep = Annotated[UploadWriter, Depends(get_upload_writer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
HubDep = Annotated[Hub, Depends(get_hub)]
AuditorDep = Annotated[Auditor, Depends(get_auditor)]
OptionalAuditorDep = Annotated[Auditor | None, Depends(get_optional_auditor)]
RiskDep = Annotated[RiskEngine, Depends(get_risk)]
IpFilterDep = Annotated[IpFilter, Depends(get_ip_filter)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
RevokedTokensDep = Annotated[RevokedTokens, Depends(get_revoked_tokens)]
TotpCipherDep = Annotated[TotpCipher, Depends(get_totp_cipher)]
AuthFailuresDep = Annotated[AuthFailureTrail | None, Depends(get_auth_failures)]
FirewallViewDep = Annotated[FirewallView | None, Depends(get_firewall_view)]


class AccessDenied(HTTPException):
    """403 for an authenticated caller; recorded as an ``authorization_denied`` security event."""

    def __init__(self, detail: str, *, subject: str, role: str | None = None) -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, detail)
        self.subject = subject
        self.role = role  # the caller's role, for the audit record


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``stores`` is None when every store is visible (admins)."""

    subject: str
    role: PrincipalRole
    stores: frozenset[str] | None
    device_id: str | None = None
    token_id: str | None = None  # the access token's jti (users only)
    token_family: str | None = None  # its refresh-token family (users only)
    token_expires_at: datetime | None = None  # when the access token expires (users only)
    security_version: int = 0  # the user's security version the token was issued under (users only)

    def can_see(self, store_id: str) -> bool:
        return self.stores is None or store_id in self.stores

    def require_store(self, store_id: str) -> None:
        if not self.can_see(store_id):
            raise AccessDenied(
                f"Store {store_id} is not assigned to you", subject=self.subject, role=self.role
            )

    @property
    def device_store(self) -> str:
        """The store a device key is bound to (devices only)."""
        assert self.role == "device" and self.stores is not None
        return next(iter(self.stores))


_bearer = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Device API key (csk_...)")

_UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers=_UNAUTHENTICATED)


async def get_current_principal(
    request: Request,
    bearer: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """Resolve the caller from ``X-API-Key: csk_...``, ``Authorization: Bearer csk_...`` (devices) or
    ``Authorization: Bearer <JWT>`` (users); 401 when absent or invalid.

    Settings and the device-key cache are read from the app here rather than through two more
    dependencies: every request resolves this one, and FastAPI's cost grows with each node."""
    state = request.app.state
    settings: Settings = state.settings
    device_keys: DeviceKeyCache = state.device_keys
    credential = api_key or bearer
    if not credential:
        raise _unauthorized("Not authenticated")
    if credential.startswith(DEVICE_KEY_PREFIX):
        key = await device_keys.verify(credential)  # from memory once verified (api/device_keys.py)
        if key is None:
            raise _unauthorized("Invalid API key")
        principal = Principal(
            subject=f"device:{key.store_id}/{key.device_id}",
            role="device",
            stores=frozenset({key.store_id}),
            device_id=key.device_id,
        )
        await check_principal(request, principal)  # per-device rate limit
        return principal
    try:
        claims = decode_access_token(settings, credential)
    except InvalidToken:
        raise _unauthorized("Could not validate credentials") from None
    stores = None if ALL_STORES in claims.stores else frozenset(claims.stores)
    principal = Principal(
        subject=claims.subject,
        role=claims.role,  # type: ignore[arg-type]
        stores=stores,
        token_id=claims.jti,
        token_family=claims.family,
        token_expires_at=claims.expires_at,
        security_version=claims.security_version,
    )
    await check_principal(request, principal)  # revoked by logout? per-user rate limit
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


class RequireRole:
    """Dependency admitting only the listed roles (403 for any other authenticated caller)."""

    def __init__(self, *roles: PrincipalRole) -> None:
        self.roles = frozenset(roles)

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if principal.role not in self.roles:
            raise AccessDenied(
                f"Requires role {' or '.join(sorted(self.roles))}",
                subject=principal.subject,
                role=principal.role,
            )
        return principal


# One instance each, so FastAPI resolves them once per request when a router and a handler both ask.
require_device = RequireRole("device")
require_manager = RequireRole("admin", "manager")
require_admin = RequireRole("admin")

DeviceAuth = Annotated[Principal, Depends(require_device)]
ManagerPrincipal = Annotated[Principal, Depends(require_manager)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]


# A store id in a query string, checked like the events' identifiers on every endpoint that takes one, so
# a malformed value is the same 422 everywhere (never a 403 echoing the raw input).
StoreIdQuery = Annotated[
    str, Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="A store id")
]
OptionalStoreIdQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="A store id (omit for all of yours)"),
]

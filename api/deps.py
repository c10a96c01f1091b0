"""Dependencies shared by the routers: settings, the ops store engine, and who is calling.

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
from api.device_keys import DeviceKeyCache
from api.firewall import check_principal
from api.metrics import Metrics
from api.security import ALL_STORES, InvalidToken, PrincipalRole, decode_access_token
from api.writer import UploadWriter
from api.ws.hub import Hub
from chainsync.ops_store.users import DEVICE_KEY_PREFIX
from chainsync.schemas.events import ID_PATTERN
from chainsync.settings import Settings


# ``async`` so FastAPI calls them on the event loop instead of a worker thread (they only read state).
# Typed on ``HTTPConnection``, so the same dependencies serve HTTP routes and WebSocket routes.
async def get_app_settings(connection: HTTPConnection) -> Settings:
    return connection.app.state.settings


async def get_ops_engine(connection: HTTPConnection) -> Engine:
    return connection.app.state.engine


async def get_auditor(connection: HTTPConnection) -> Auditor | None:
    return getattr(connection.app.state, "auditor", None)


async def get_device_keys(request: Request) -> DeviceKeyCache:
    return request.app.state.device_keys


async def get_upload_writer(request: Request) -> UploadWriter:
    return request.app.state.upload_writer


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_hub(connection: HTTPConnection) -> Hub:
    return connection.app.state.hub


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_ops_engine)]
DeviceKeysDep = Annotated[DeviceKeyCache, Depends(get_device_keys)]
UploadWriterDep = Annotated[UploadWriter, Depends(get_upload_writer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
HubDep = Annotated[Hub, Depends(get_hub)]
AuditorDep = Annotated[Auditor | None, Depends(get_auditor)]


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

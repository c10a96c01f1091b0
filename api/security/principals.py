"""Who is calling, and may they: :data:`CurrentPrincipal` resolves a user JWT or a device API key
(authentication); :class:`RequireRole` narrows it to the roles an endpoint admits, ``device`` for POS
terminals (authorization); :data:`DeviceAuth`, :data:`ManagerPrincipal` and :data:`AdminPrincipal` name the
usual ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from api.security.checks import check_principal
from api.security.device_keys import DeviceKeyCache
from api.security.tokens import ALL_STORES, InvalidToken, PrincipalRole, decode_access_token
from chainsync.ops_store.users import DEVICE_KEY_PREFIX
from chainsync.settings import Settings


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
        key = await device_keys.verify(credential)  # from memory once verified (api/security/device_keys.py)
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

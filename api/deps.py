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
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.metrics import Metrics
from api.security.audit import Auditor
from api.security.auth_trail import AuthFailureTrail
from api.security.device_keys import DeviceKeyCache
from api.security.ipfilter import IpFilter
from api.security.ratelimit import RateLimiter
from api.security.risk import RiskEngine
from api.security.tokens import RevokedTokens
from api.writer import UploadWriter
from api.ws.hub import Hub
from chainsync.ops_store.totp import TotpCipher
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
    """What :func:`api.security.checks.address_refused` and :func:`api.security.checks.session_ended` read,
    for checks made after a request's own (a WebSocket that stays open): the settings, the IP lists, the
    risk engine's blocks and the revoked logins."""

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


# A store id in a query string, checked like the events' identifiers on every endpoint that takes one, so
# a malformed value is the same 422 everywhere (never a 403 echoing the raw input).
StoreIdQuery = Annotated[
    str, Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="A store id")
]
OptionalStoreIdQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="A store id (omit for all of yours)"),
]

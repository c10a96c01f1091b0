"""Administration (admins only): users, device API keys, IP allow/deny rules, IP reputation.

Every change is audited (``admin_*`` actions) with the administrator as actor; a new device key is shown
once in the response and never stored in clear.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import AuditorDep, DeviceKeysDep, EngineDep, IpFilterDep, RevokedTokensDep, RiskDep, SettingsDep
from api.errors import error_response
from api.security.audit import Auditor
from api.security.ipfilter import client_ip_of
from api.security.principals import AdminPrincipal, Principal, require_admin
from chainsync.ops_store.reputation import add_ip_rule, delete_ip_rule, delete_reputation, list_ip_rules
from chainsync.ops_store.tokens import revoke_user_refresh_tokens
from chainsync.ops_store.totp import clear_totp
from chainsync.ops_store.users import (
    Role,
    create_device_key,
    get_user,
    list_device_keys,
    list_users,
    revoke_device_key,
    update_user,
    upsert_user,
)
from chainsync.passwords import hash_password
from chainsync.risk import ThreatLevel

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,128}$")]
Password = Annotated[str, Field(min_length=12, max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserOut(BaseModel):
    username: str
    role: Role
    is_active: bool
    store_ids: list[str]
    totp_enabled: bool
    created_at: datetime


class UserCreate(Strict):
    username: Username
    password: Password
    role: Role
    store_ids: Annotated[list[Identifier], Field(max_length=1000)] = []


class UserUpdate(Strict):
    role: Role | None = None
    is_active: bool | None = None
    store_ids: Annotated[list[Identifier], Field(max_length=1000)] | None = None
    password: Password | None = None


class DeviceKeyOut(BaseModel):
    prefix: str
    store_id: str
    device_id: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None


class DeviceKeyCreate(Strict):
    store_id: Identifier
    device_id: Identifier
    expires_in_days: int | None = Field(None, ge=1, le=3650)  # None: until revoked


class DeviceKeyIssued(BaseModel):
    prefix: str
    store_id: str
    device_id: str
    api_key: str  # shown once


class IpRuleOut(BaseModel):
    id: int
    cidr: str
    action: Literal["allow", "deny"]
    note: str | None
    created_by: str
    created_at: datetime


class IpRuleCreate(Strict):
    cidr: Annotated[str, Field(min_length=2, max_length=64)]
    action: Literal["allow", "deny"]
    note: Annotated[str, Field(max_length=200)] | None = None

    @field_validator("cidr")
    @classmethod
    def _network(cls, v: str) -> str:
        return str(ipaddress.ip_network(v.strip(), strict=False))  # ValueError -> 422 naming the field


class IpReputationOut(BaseModel):
    ip: str
    score: float
    ban_count: int
    blocked_until: datetime | None
    last_reason: str | None


class SecurityStatus(BaseModel):
    threat_level: ThreatLevel
    active_blocks: list[IpReputationOut]
    dry_run: bool


def _audit(auditor: Auditor, request: Request, admin: Principal, action: str, detail: str) -> None:
    auditor.record(
        kind=f"admin_{action}",
        outcome="success",
        actor=admin.subject,
        username=admin.subject,
        role=admin.role,
        source_ip=client_ip_of(request.scope),
        user_agent=request.headers.get("user-agent"),
        method=request.method,
        route=request.url.path[:200],
        detail=detail,
    )


# --- users ------------------------------------------------------------------------------------------


def _user_out(engine: Engine, username: str) -> UserOut:
    return UserOut.model_validate(next(u for u in list_users(engine) if u["username"] == username))


@router.get("/users")
def get_users(engine: EngineDep) -> list[UserOut]:
    """Every user with role, stores, state and whether two-factor is on (never a password hash)."""
    return [UserOut.model_validate(u) for u in list_users(engine)]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    responses={409: error_response("The user exists")},
)
def create_user(
    body: UserCreate, request: Request, admin: AdminPrincipal, engine: EngineDep, auditor: AuditorDep
) -> UserOut:
    if get_user(engine, body.username) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"User {body.username} exists")
    upsert_user(engine, body.username, body.password, body.role, body.store_ids)
    _audit(auditor, request, admin, "user_created", f"{body.username} as {body.role}")
    return _user_out(engine, body.username)


@router.patch("/users/{username}", responses={404: error_response("No such user")})
def change_user(
    username: Annotated[str, Path(max_length=128)],
    body: UserUpdate,
    request: Request,
    admin: AdminPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
    revoked: RevokedTokensDep,
) -> UserOut:
    """Change role, stores, active state or password. Deactivating or a new password ends the user's
    refresh tokens."""
    pw_hash = hash_password(body.password) if body.password is not None else None
    if not update_user(
        engine,
        username,
        role=body.role,
        is_active=body.is_active,
        store_ids=body.store_ids,
        password_hash=pw_hash,
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No user {username}")
    if body.is_active is False or pw_hash is not None:
        revoke_user_refresh_tokens(engine, username)
    # The change bumped the user's security version: their live access tokens end here now, and on the
    # other API processes within the revocation bound.
    revoked.user_changed()
    changed = sorted(k for k, v in body.model_dump(exclude={"password"}).items() if v is not None)
    if pw_hash is not None:
        changed.append("password")
    _audit(auditor, request, admin, "user_updated", f"{username}: {', '.join(changed) or 'nothing'}")
    return _user_out(engine, username)


@router.delete(
    "/users/{username}/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: error_response("No such user or no two-factor enrolment")},
)
def reset_totp(
    username: Annotated[str, Path(max_length=128)],
    request: Request,
    admin: AdminPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
) -> Response:
    """Turn a user's two-factor authentication off (a lost phone); they enrol again."""
    user = get_user(engine, username)
    if user is None or not clear_totp(engine, user.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No two-factor enrolment for {username}")
    revoke_user_refresh_tokens(engine, username)
    _audit(auditor, request, admin, "totp_reset", username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- device keys --------------------------------------------------------------------------------------


@router.get("/device-keys")
def get_device_keys(engine: EngineDep, store_id: Identifier | None = None) -> list[DeviceKeyOut]:
    return [DeviceKeyOut.model_validate(k) for k in list_device_keys(engine, store_id)]


@router.post("/device-keys", status_code=status.HTTP_201_CREATED)
def issue_device_key(
    body: DeviceKeyCreate,
    request: Request,
    response: Response,
    admin: AdminPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
) -> DeviceKeyIssued:
    """Issue an API key for a terminal, bound to its store. The key is in this response only."""
    expires = (
        datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None
    )
    key = create_device_key(engine, body.store_id, body.device_id, expires_at=expires)
    prefix = key.removeprefix("csk_").split("_", 1)[0]
    _audit(auditor, request, admin, "device_key_issued", f"{prefix} for {body.store_id}/{body.device_id}")
    response.headers["Cache-Control"] = "no-store"
    return DeviceKeyIssued(prefix=prefix, store_id=body.store_id, device_id=body.device_id, api_key=key)


@router.delete(
    "/device-keys/{prefix}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: error_response("No active device key with this prefix")},
)
def revoke_key(
    prefix: Annotated[str, Path(pattern=r"^[0-9a-f]{8}$")],
    request: Request,
    admin: AdminPrincipal,
    engine: EngineDep,
    device_keys: DeviceKeysDep,
    auditor: AuditorDep,
) -> Response:
    if not revoke_device_key(engine, prefix):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No active device key {prefix}")
    device_keys.forget(prefix)  # at once here; other processes within the revocation bound
    _audit(auditor, request, admin, "device_key_revoked", prefix)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- IP rules and reputation -------------------------------------------------------------------------------


@router.get("/ip-rules")
def get_ip_rules(engine: EngineDep) -> list[IpRuleOut]:
    """The admins' allow and deny rules (the CHAINSYNC_IP_* settings apply as well)."""
    return [IpRuleOut.model_validate(r) for r in list_ip_rules(engine)]


@router.post("/ip-rules", status_code=status.HTTP_201_CREATED)
async def create_ip_rule(
    body: IpRuleCreate,
    request: Request,
    admin: AdminPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
    ipfilter: IpFilterDep,
) -> IpRuleOut:
    """Allow (never blocked automatically; admitted when the allowlist is exclusive) or deny a network."""
    rule = await run_in_threadpool(add_ip_rule, engine, body.cidr, body.action, body.note, admin.subject)
    await run_in_threadpool(ipfilter.reload)
    await run_in_threadpool(_audit, auditor, request, admin, "ip_rule_added", f"{body.action} {body.cidr}")
    return IpRuleOut.model_validate(rule)


@router.delete(
    "/ip-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: error_response("No such IP rule")},
)
async def remove_ip_rule(
    rule_id: Annotated[int, Path(ge=1, le=2**31)],
    request: Request,
    admin: AdminPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
    ipfilter: IpFilterDep,
) -> Response:
    if not await run_in_threadpool(delete_ip_rule, engine, rule_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No IP rule {rule_id}")
    await run_in_threadpool(ipfilter.reload)
    await run_in_threadpool(_audit, auditor, request, admin, "ip_rule_removed", str(rule_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/security/status")
def security_status(risk: RiskDep, settings: SettingsDep) -> SecurityStatus:
    """The system threat level and the addresses blocked now."""
    blocks = [
        IpReputationOut(
            ip=r.ip,
            score=round(risk.ip_score(r.ip), 2),
            ban_count=r.ban_count,
            blocked_until=r.blocked_until,
            last_reason=r.last_reason,
        )
        for r in risk.active_blocks()
    ]
    return SecurityStatus(
        threat_level=risk.threat_level(),
        active_blocks=blocks,
        dry_run=settings.security_dry_run,
    )


@router.delete(
    "/ip-reputation/{ip}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: error_response("No reputation kept for this address")},
)
def unblock_ip(
    ip: Annotated[str, Path(max_length=64)],
    request: Request,
    admin: AdminPrincipal,
    engine: EngineDep,
    auditor: AuditorDep,
    risk: RiskDep,
) -> Response:
    """Forget an address's score and block (a false positive)."""
    found = risk.unblock(ip)
    found = delete_reputation(engine, ip) or found
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No reputation for {ip}")
    _audit(auditor, request, admin, "ip_unblocked", ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

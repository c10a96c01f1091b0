"""Users, their store assignments, and device API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, delete, func, insert, select, update

from chainsync.ops_store.tables import device_keys, user_stores, user_totp, users
from chainsync.ops_store.times import aware as _aware
from chainsync.passwords import hash_password

Role = Literal["admin", "manager", "cashier"]
ROLES: tuple[Role, ...] = ("admin", "manager", "cashier")
DEVICE_KEY_PREFIX = "csk_"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    password_hash: str
    role: Role
    is_active: bool
    store_ids: frozenset[str]
    security_version: int = 0  # access tokens issued under another version are refused


@dataclass(frozen=True)
class DeviceKey:
    prefix: str
    store_id: str
    device_id: str
    revoked: bool
    expires_at: datetime | None = None  # UTC; None: until revoked

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def same_username(username: str) -> ColumnElement[bool]:
    """The WHERE clause finding ``username`` whatever its case (usernames are unique case-insensitively)."""
    return func.lower(users.c.username) == username.lower()


def upsert_user(
    engine: Engine, username: str, password: str, role: Role, store_ids: Iterable[str] = ()
) -> User:
    """Create ``username`` or reset its password, role and stores."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    pw_hash = hash_password(password)
    with engine.begin() as conn:
        uid = conn.execute(select(users.c.id).where(same_username(username))).scalar()
        if uid is None:
            uid = conn.execute(  # type: ignore[index]
                insert(users).values(
                    username=username, password_hash=pw_hash, role=role, is_active=True, created_at=_now()
                )
            ).inserted_primary_key[0]
        else:
            conn.execute(
                update(users)
                .where(users.c.id == uid)
                .values(password_hash=pw_hash, role=role, security_version=users.c.security_version + 1)
            )
        conn.execute(delete(user_stores).where(user_stores.c.user_id == uid))
        stores = sorted(set(store_ids))
        if stores:
            conn.execute(insert(user_stores), [{"user_id": uid, "store_id": s} for s in stores])
    user = get_user(engine, username)
    assert user is not None
    return user


def get_user(engine: Engine, username: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(same_username(username))).mappings().first()
        if row is None:
            return None
        stores: list[str] = list(
            conn.execute(select(user_stores.c.store_id).where(user_stores.c.user_id == row["id"])).scalars()
        )
        return User(
            id=row["id"],
            username=row["username"],
            password_hash=row["password_hash"],
            role=row["role"],
            is_active=bool(row["is_active"]),
            store_ids=frozenset(stores),
            security_version=int(row["security_version"]),
        )


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_device_key(
    engine: Engine, store_id: str, device_id: str, *, expires_at: datetime | None = None
) -> str:
    """Issue a new API key for a terminal and return it; only its hash is stored, so show it once.
    ``expires_at`` (UTC) ends it by itself; None keeps it until revoked.

    Format: ``csk_<prefix>_<secret>`` where the 8-character prefix identifies the key in lists."""
    prefix = secrets.token_hex(4)
    key = f"{DEVICE_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(
            insert(device_keys).values(
                prefix=prefix,
                key_hash=_key_hash(key),
                store_id=store_id,
                device_id=device_id,
                created_at=_now(),
                expires_at=expires_at.astimezone(UTC).replace(tzinfo=None) if expires_at else None,
            )
        )
    return key


def rotate_device_key(
    engine: Engine,
    store_id: str,
    device_id: str,
    *,
    grace: timedelta,
    expires_at: datetime | None = None,
) -> tuple[str, list[str]]:
    """Issue a new key for the terminal and let its other live keys expire after ``grace`` (time for the
    terminal to switch), unless they expire sooner anyway. Returns the new key and the retiring prefixes."""
    key = create_device_key(engine, store_id, device_id, expires_at=expires_at)
    new_prefix = key.removeprefix(DEVICE_KEY_PREFIX).split("_", 1)[0]
    retire_at = (datetime.now(UTC) + grace).replace(tzinfo=None)
    live = (
        (device_keys.c.store_id == store_id)
        & (device_keys.c.device_id == device_id)
        & (device_keys.c.prefix != new_prefix)
        & device_keys.c.revoked_at.is_(None)
    )
    with engine.begin() as conn:
        retiring: list[str] = list(
            conn.execute(
                select(device_keys.c.prefix).where(
                    live & (device_keys.c.expires_at.is_(None) | (device_keys.c.expires_at > retire_at))
                )
            ).scalars()
        )
        if retiring:
            conn.execute(
                update(device_keys).where(device_keys.c.prefix.in_(retiring)).values(expires_at=retire_at)
            )
    return key, retiring


def verify_device_key(engine: Engine, key: str) -> DeviceKey | None:
    """The active key matching ``key``, or None (unknown, malformed or revoked)."""
    if not key.startswith(DEVICE_KEY_PREFIX):
        return None
    prefix = key[len(DEVICE_KEY_PREFIX) :].split("_", 1)[0]
    with engine.connect() as conn:
        row = conn.execute(select(device_keys).where(device_keys.c.prefix == prefix)).mappings().first()
    if row is None or not hmac.compare_digest(row["key_hash"], _key_hash(key)):
        return None
    if row["revoked_at"] is not None:
        return None
    expires = row["expires_at"].replace(tzinfo=UTC) if row["expires_at"] is not None else None
    found = DeviceKey(
        prefix=prefix, store_id=row["store_id"], device_id=row["device_id"], revoked=False, expires_at=expires
    )
    return None if found.expired() else found


def revoke_device_key(engine: Engine, prefix: str) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            update(device_keys)
            .where(device_keys.c.prefix == prefix, device_keys.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
    return result.rowcount > 0


# --- admin listings -----------------------------------------------------------------------------------


def list_users(engine: Engine) -> list[dict[str, Any]]:
    """Every user without the password hash: username, role, is_active, stores, totp_enabled."""
    with engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.username)).mappings().all()
        assigned: dict[int, list[str]] = {}
        for link in conn.execute(select(user_stores.c.user_id, user_stores.c.store_id)).all():
            assigned.setdefault(int(link.user_id), []).append(str(link.store_id))
        totp = {uid: bool(en) for uid, en in conn.execute(select(user_totp.c.user_id, user_totp.c.enabled))}
    return [
        {
            "username": r["username"],
            "role": r["role"],
            "is_active": bool(r["is_active"]),
            "store_ids": sorted(assigned.get(r["id"], [])),
            "totp_enabled": totp.get(r["id"], False),
            "created_at": _aware(r["created_at"]),
        }
        for r in rows
    ]


def update_user(
    engine: Engine,
    username: str,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    store_ids: Iterable[str] | None = None,
    password_hash: str | None = None,
) -> bool:
    """Change a user (found whatever the case of ``username``). Any change bumps the user's security
    version, which ends every access token issued before it (see migration 0009)."""
    with engine.begin() as conn:
        uid = conn.execute(select(users.c.id).where(same_username(username))).scalar()
        if uid is None:
            return False
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if is_active is not None:
            values["is_active"] = is_active
        if password_hash is not None:
            values["password_hash"] = password_hash
        if values or store_ids is not None:
            values["security_version"] = users.c.security_version + 1
            conn.execute(update(users).where(users.c.id == uid).values(**values))
        if store_ids is not None:
            conn.execute(delete(user_stores).where(user_stores.c.user_id == uid))
            stores = sorted(set(store_ids))
            if stores:
                conn.execute(insert(user_stores), [{"user_id": uid, "store_id": s} for s in stores])
    return True


def list_device_keys(engine: Engine, store_id: str | None = None) -> list[dict[str, Any]]:
    """Device keys without their hashes: prefix, store, device, created, revoked, expires."""
    stmt = select(
        device_keys.c.prefix,
        device_keys.c.store_id,
        device_keys.c.device_id,
        device_keys.c.created_at,
        device_keys.c.revoked_at,
        device_keys.c.expires_at,
    ).order_by(device_keys.c.store_id, device_keys.c.device_id, device_keys.c.created_at)
    if store_id is not None:
        stmt = stmt.where(device_keys.c.store_id == store_id)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        {
            **r,
            "created_at": _aware(r["created_at"]),
            "revoked_at": _aware(r["revoked_at"]),
            "expires_at": _aware(r["expires_at"]),
        }
        for r in rows
    ]

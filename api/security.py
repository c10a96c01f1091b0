"""Access and refresh tokens: the only module that creates or reads a JWT.

Access tokens are short-lived JWTs (``CHAINSYNC_ACCESS_TOKEN_MINUTES``); refresh tokens are opaque random
strings (``csr_...``) of which the ops store keeps only a hash, rotated on every use (see
:mod:`chainsync.ops_store.security`). Access tokens are signed with ``settings.jwt_key()`` and decoded
with the configured algorithm only, so ``alg=none`` and tokens signed with any other key or algorithm are
refused.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt

from chainsync.settings import Settings

ALL_STORES = "*"

PrincipalRole = Literal["admin", "manager", "cashier", "device"]


class InvalidToken(Exception):
    """The token is missing a claim, expired, malformed or not signed by us."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int  # seconds


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    role: str
    stores: tuple[str, ...]
    jti: str
    expires_at: datetime
    family: str | None = None  # the refresh-token family the token was issued with (logout revokes it)


def create_access_token(
    settings: Settings,
    *,
    subject: str,
    role: str,
    stores: list[str] | tuple[str, ...],
    now: datetime | None = None,
    family: str | None = None,
) -> AccessToken:
    """Sign an access token for ``subject`` valid ``settings.access_token_minutes`` minutes.

    ``stores`` holds the store ids the subject may see; ``["*"]`` means every store (admins)."""
    issued = now or datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_minutes)
    claims = {
        "sub": subject,
        "role": role,
        "stores": list(stores),
        "iat": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if family:
        claims["fam"] = family
    token = jwt.encode(claims, settings.jwt_key(), algorithm=settings.jwt_algorithm)
    return AccessToken(token=token, expires_in=int(lifetime.total_seconds()))


def decode_access_token(settings: Settings, token: str) -> TokenClaims:
    """Verify signature, algorithm and expiry of ``token`` and return its claims, or raise InvalidToken."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_key(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "role", "stores", "iat", "exp", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    stores = claims["stores"]
    if (
        not isinstance(claims["sub"], str)
        or claims["role"] not in ("admin", "manager", "cashier")
        or not isinstance(stores, list)
        or not all(isinstance(s, str) for s in stores)
    ):
        raise InvalidToken("malformed claims")
    return TokenClaims(
        subject=claims["sub"],
        role=claims["role"],
        stores=tuple(stores),
        jti=str(claims["jti"]),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        family=claims["fam"] if isinstance(claims.get("fam"), str) else None,
    )


REFRESH_TOKEN_PREFIX = "csr_"


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits); only its SHA-256 is stored."""
    return f"{REFRESH_TOKEN_PREFIX}{secrets.token_urlsafe(32)}"


def new_token_family() -> str:
    return uuid.uuid4().hex

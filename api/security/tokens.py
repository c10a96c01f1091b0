"""Access and refresh tokens: the only module that creates or reads a JWT.

Access tokens are short-lived JWTs (``CHAINSYNC_ACCESS_TOKEN_MINUTES``); refresh tokens are opaque random
strings (``csr_...``) of which the ops store keeps only a hash, rotated on every use (see
:mod:`chainsync.ops_store.tokens`). Access tokens are signed with ``settings.jwt_key()`` and decoded
with the configured algorithm only, so ``alg=none`` and tokens signed with any other key or algorithm are
refused.

A session ends before its tokens expire: every access token carries its login (``fam``, the refresh-token
family) and the user's security version (``sv``). :class:`RevokedTokens` keeps in memory what ends tokens
(ids ended by logout, logins revoked by logout or refresh-token reuse, each user's current security version,
see :mod:`chainsync.ops_store.sessions`), re-read from the ops store at most every
``CHAINSYNC_REVOCATION_CACHE_SECONDS`` so a request costs no query, and applied at once in the process that
made the change. With Redis (``CHAINSYNC_REDIS_URL``) a logout, a revoked login and a changed user are also
pushed to the other processes, which apply them at once (:mod:`api.shared`); the re-read stays as the
fallback.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine

from api.log import get_logger
from chainsync.ops_store.sessions import SessionState, read_session_state
from chainsync.ops_store.tokens import active_revocations, revoke_access_token
from chainsync.ops_store.totp import TotpCipher
from chainsync.ops_store.users import ROLES, Role
from chainsync.settings import Settings

log = get_logger("api.security.tokens")

ALL_STORES = "*"

PrincipalRole = Literal[Role, "device"]  # the users' roles (chainsync.ops_store.users), and terminals


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
    security_version: int = 0  # the user's security version when the token was issued


def create_access_token(
    settings: Settings,
    *,
    subject: str,
    role: str,
    stores: list[str] | tuple[str, ...],
    now: datetime | None = None,
    family: str | None = None,
    security_version: int = 0,
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
        "sv": security_version,
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
        or claims["role"] not in ROLES
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
        security_version=claims["sv"] if isinstance(claims.get("sv"), int) else 0,
    )


REFRESH_TOKEN_PREFIX = "csr_"


def new_refresh_token() -> str:
    """A fresh opaque refresh token (256 random bits); only its SHA-256 is stored."""
    return f"{REFRESH_TOKEN_PREFIX}{secrets.token_urlsafe(32)}"


def new_token_family() -> str:
    return uuid.uuid4().hex


class RevokedTokens:
    """What ends access tokens before they expire, shared by every API process through the ops store:
    ids ended by logout (``revoked_tokens``), revoked logins and users' security versions
    (:func:`chainsync.ops_store.sessions.read_session_state`).

    A change made here takes effect in this process at once (``revoke``, ``revoke_family``,
    ``user_changed``); one made by another process is seen once the cached state is older than ``max_age_s``
    (the documented bound), when the next request re-reads it (``stale`` then ``refresh``, on a worker
    thread). Expired ids are dropped, from the store on each logout and from memory on each re-read."""

    def __init__(
        self,
        engine: Engine,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        token_lifetime: timedelta = timedelta(minutes=15),
    ) -> None:
        self.engine = engine
        self.max_age_s = max_age_s
        self.clock = clock
        self.token_lifetime = token_lifetime
        self._shared: dict[str, datetime] = {}  # as last read from the store
        self._local: dict[str, datetime] = {}  # revoked here (kept even if a re-read raced with the write)
        self._sessions = SessionState()
        self._local_families: dict[str, datetime] = {}  # revoked here, until they cannot matter any more
        self._read_at = float("-inf")
        self._refreshing = threading.Lock()
        self._local_lock = threading.Lock()  # ``revoke`` (request threads) and the prune in ``refresh``
        # Called after each revocation is stored (pushes it to the other processes, see api.shared).
        self.on_revoke: Callable[[str, datetime], None] | None = None
        self.on_session_change: Callable[[dict[str, str]], None] | None = None

    def revoke(self, jti: str, expires_at: datetime) -> None:
        revoke_access_token(self.engine, jti, expires_at)
        self.remember(jti, expires_at)
        if self.on_revoke is not None:
            self.on_revoke(jti, expires_at)

    def remember(self, jti: str, expires_at: datetime) -> None:
        """Refuse ``jti`` here from now on (stored already: by this process's :meth:`revoke`, or by
        another process that pushed it); dropped once expired, like the others."""
        with self._local_lock:
            self._local[jti] = expires_at

    def revoke_family(self, family: str) -> None:
        """A login revoked here (already written to the store by the caller): its tokens end now, here
        and, with Redis, on every other process at once."""
        self.remember_family(family)
        if self.on_session_change is not None:
            self.on_session_change({"family": family})

    def remember_family(self, family: str) -> None:
        """Refuse every token of the login ``family`` here from now on (revoked in the store already)."""
        with self._local_lock:
            self._local_families[family] = datetime.now(UTC) + self.token_lifetime

    def user_changed(self) -> None:
        """A user's security version moved here: re-read at once instead of waiting for the bound, and
        have the other processes re-read too (with Redis)."""
        self.expire()
        self.refresh()
        if self.on_session_change is not None:
            self.on_session_change({})

    def expire(self) -> None:
        """Make the next request re-read the store (pushes may have been missed)."""
        self._read_at = float("-inf")

    def stale(self) -> bool:
        return self.clock() - self._read_at >= self.max_age_s

    def refresh(self) -> None:
        """Re-read the store (two queries); a refresh already under way elsewhere is not repeated. When the
        store cannot be read the last state is kept and the read is tried again after ``max_age_s``."""
        if not self._refreshing.acquire(blocking=False):
            return
        started = self.clock()
        try:
            now = datetime.now(UTC)
            try:
                self._shared = active_revocations(self.engine, now)
                self._sessions = read_session_state(self.engine, self.token_lifetime, now)
            except Exception as exc:  # the store is busy or gone: keep what is known
                log.error("revoked_tokens_read_failed", error_type=type(exc).__name__)
            with self._local_lock:
                local = list(self._local.items())
                families = list(self._local_families.items())
            expired = [jti for jti, exp in local if exp <= now]  # compared outside the lock
            faded = [fam for fam, until in families if until <= now]
            with self._local_lock:  # only expired entries go: a revocation made meanwhile stays
                for jti in expired:
                    self._local.pop(jti, None)
                for fam in faded:
                    self._local_families.pop(fam, None)
        finally:
            self._read_at = started
            self._refreshing.release()

    def __contains__(self, jti: object) -> bool:
        return jti in self._local or jti in self._shared

    def session_ended(self, claims: TokenClaims | None = None, **token: object) -> str | None:
        """Why the token (its claims, or ``subject``/``family``/``security_version`` given by name) is
        dead, or None while its session lasts."""
        subject = claims.subject if claims else str(token.get("subject"))
        family = claims.family if claims else token.get("family")
        version = claims.security_version if claims else token.get("security_version")
        if family is not None and (
            family in self._local_families or family in self._sessions.revoked_families
        ):
            return "Session has ended (logged out or revoked)"
        key = subject.lower()
        if key not in self._sessions.versions:
            return (
                None  # no such user: users are deactivated, never deleted (see chainsync.ops_store.sessions)
            )
        current = self._sessions.versions[key]
        if current is None:
            return "Session has ended (the user is inactive)"
        if version != current:
            return "Session has ended (the user's access changed; log in again)"
        return None

    def may_be_behind(self, subject: str, security_version: int) -> bool:
        """True when a token looks newer than what was last read (a user created, or changed and logged in
        again, on another process since): worth one early re-read, at most every 0.2 s."""
        key = subject.lower()
        current = self._sessions.versions.get(key)
        newer = current is not None and security_version > current
        return newer and self.clock() - self._read_at >= 0.2


def totp_cipher(settings: Settings) -> TotpCipher:
    """The cipher of TOTP secrets at rest: the Fernet keys of ``CHAINSYNC_TOTP_ENCRYPTION_KEY`` (comma-
    separated; the first encrypts, all decrypt, for rotation), or when it is unset one key derived from the
    JWT secret with HKDF-SHA256 (so changing the JWT secret then makes enrolled users enrol again)."""
    configured = settings.totp_encryption_key.get_secret_value() if settings.totp_encryption_key else ""
    keys = [k.strip().encode("ascii") for k in configured.split(",") if k.strip()]
    if not keys:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"chainsync totp secret encryption v1"
        ).derive(settings.jwt_key().encode())
        keys = [base64.urlsafe_b64encode(derived)]
    return TotpCipher(keys)

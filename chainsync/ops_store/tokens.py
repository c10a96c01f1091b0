"""Token state: refresh tokens (stored as hashes, rotated within a family, a reused one revokes its
family) and access tokens revoked by logout before they expire.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Engine,
    delete,
    func,
    insert,
    select,
    update,
)

from chainsync.ops_store.tables import (
    refresh_tokens,
    revoked_tokens,
)
from chainsync.ops_store.times import aware as _aware
from chainsync.ops_store.times import naive as _naive
from chainsync.ops_store.times import utcnow

log = logging.getLogger("chainsync.ops_store.tokens")

# --- refresh tokens ----------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def store_refresh_token(
    engine: Engine, token: str, *, family_id: str, username: str, issued_at: datetime, expires_at: datetime
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(refresh_tokens).values(
                token_hash=token_hash(token),
                family_id=family_id,
                username=username,
                issued_at=_naive(issued_at),
                expires_at=_naive(expires_at),
            )
        )


@dataclass(frozen=True)
class RefreshUse:
    """The outcome of presenting a refresh token: ``ok`` (rotated now), ``reused`` (already rotated:
    the family is revoked), ``revoked``, ``expired`` or ``unknown``."""

    status: str
    username: str | None = None
    family_id: str | None = None


def use_refresh_token(engine: Engine, token: str, now: datetime | None = None) -> RefreshUse:
    """Mark ``token`` rotated (single use). A token presented a second time revokes its whole family."""
    now = now or utcnow()
    with engine.begin() as conn:
        row = (
            conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash(token)))
            .mappings()
            .first()
        )
        if row is None:
            return RefreshUse("unknown")
        use = RefreshUse("ok", row["username"], row["family_id"])
        if row["revoked_at"] is not None:
            return RefreshUse("revoked", use.username, use.family_id)
        if row["rotated_at"] is not None:
            conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.family_id == row["family_id"], refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=_naive(now))
            )
            return RefreshUse("reused", use.username, use.family_id)
        if _aware(row["expires_at"]) <= now:  # type: ignore[operator]
            return RefreshUse("expired", use.username, use.family_id)
        conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.token_hash == row["token_hash"])
            .values(rotated_at=_naive(now))
        )
        return use


def revoke_refresh_family(engine: Engine, family_id: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=_naive(utcnow()))
        ).rowcount


def revoke_user_refresh_tokens(engine: Engine, username: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            update(refresh_tokens)
            .where(refresh_tokens.c.username == username, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=_naive(utcnow()))
        ).rowcount


def family_is_active(engine: Engine, family_id: str) -> bool:
    """True while any token of the family is unrevoked (logout or reuse revokes them all)."""
    with engine.connect() as conn:
        return (
            conn.execute(
                select(func.count())
                .select_from(refresh_tokens)
                .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            ).scalar()
            or 0
        ) > 0


# --- access tokens revoked by logout -------------------------------------------------------------------


def revoke_access_token(engine: Engine, jti: str, expires_at: datetime, now: datetime | None = None) -> int:
    """Record that the access token ``jti`` (valid until ``expires_at``) is ended, for every API process,
    and delete the rows of tokens that have expired anyway; returns how many were pruned."""
    now = now or utcnow()
    with engine.begin() as conn:
        pruned = conn.execute(
            delete(revoked_tokens).where(revoked_tokens.c.expires_at <= _naive(now))
        ).rowcount
        known = conn.execute(select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)).first()
        if known is None:
            conn.execute(
                insert(revoked_tokens).values(
                    jti=jti[:64], expires_at=_naive(expires_at), revoked_at=_naive(now)
                )
            )
    return int(pruned)


def active_revocations(engine: Engine, now: datetime | None = None) -> dict[str, datetime]:
    """The revoked access tokens that have not expired yet: ``{jti: expires_at}`` (a few per logout in
    the last access-token lifetime, so the whole set is read at once)."""
    now = now or utcnow()
    with engine.connect() as conn:
        rows = conn.execute(
            select(revoked_tokens.c.jti, revoked_tokens.c.expires_at).where(
                revoked_tokens.c.expires_at > _naive(now)
            )
        ).all()
    return {str(r.jti): _aware(r.expires_at) for r in rows}  # type: ignore[misc]

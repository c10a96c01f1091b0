"""Second factor: TOTP secrets, encrypted at rest (Fernet, key rotation by MultiFernet), and the last
used step so a code cannot be replayed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import (
    Engine,
    delete,
    insert,
    select,
    update,
)

from chainsync.ops_store.tables import (
    user_totp,
)
from chainsync.ops_store.times import naive as _naive
from chainsync.ops_store.times import utcnow

log = logging.getLogger("chainsync.ops_store.totp")

# --- TOTP -------------------------------------------------------------------------------------------------


class TotpCipher:
    """Encrypts TOTP secrets at rest with Fernet (AES-128-CBC + HMAC-SHA256). Stored values carry the
    prefix ``fernet:``; a value without it is a secret stored in clear before encryption, read as is.
    Several keys rotate: the first encrypts, every one decrypts, and :func:`get_totp` rewrites a value
    that is in clear or under an older key."""

    PREFIX = "fernet:"

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key")
        self._primary = Fernet(keys[0])
        self._older = [Fernet(k) for k in keys[1:]]

    def encrypt(self, secret: str) -> str:
        return self.PREFIX + self._primary.encrypt(secret.encode()).decode("ascii")

    def open(self, stored: str) -> tuple[str, bool]:
        """``(clear secret, current)``: ``current`` is False when the value should be written again (it
        is in clear, or under an older key). Raises ``cryptography.fernet.InvalidToken`` when no key
        opens it."""
        if not stored.startswith(self.PREFIX):
            return stored, False
        token = stored[len(self.PREFIX) :].encode("ascii")
        try:
            return self._primary.decrypt(token).decode(), True
        except InvalidToken:
            if not self._older:
                raise
        return MultiFernet(self._older).decrypt(token).decode(), False

    def decrypt(self, stored: str) -> str:
        return self.open(stored)[0]


@dataclass(frozen=True)
class TotpState:
    secret: str  # in clear
    enabled: bool
    last_step: int | None


def get_totp(engine: Engine, user_id: int, cipher: TotpCipher) -> TotpState | None:
    """The user's TOTP state with the secret decrypted. A secret still stored in clear, or under an older
    key, is encrypted again with the current key now; one that no configured key opens is deleted (None:
    the user enrols again)."""
    with engine.connect() as conn:
        row = conn.execute(select(user_totp).where(user_totp.c.user_id == user_id)).mappings().first()
    if row is None:
        return None
    stored = str(row["secret"])
    try:
        secret, current = cipher.open(stored)
    except InvalidToken:
        # Encrypted under a key no longer configured (the key replaced, or the JWT secret changed with no
        # key set): the secret is lost, so the enrolment is void and the user enrols again.
        log.warning("TOTP secret of user %s opens with no configured key; enrolment removed", user_id)
        with engine.begin() as conn:
            conn.execute(
                delete(user_totp).where(user_totp.c.user_id == user_id, user_totp.c.secret == stored)
            )
        return None
    if not current:
        with engine.begin() as conn:
            conn.execute(
                update(user_totp)
                .where(user_totp.c.user_id == user_id, user_totp.c.secret == stored)
                .values(secret=cipher.encrypt(secret))
            )
    return TotpState(secret=secret, enabled=bool(row["enabled"]), last_step=row["last_step"])


def set_totp_secret(engine: Engine, user_id: int, secret: str, cipher: TotpCipher) -> None:
    """Start (or restart) enrolment with a new, not yet enabled secret (stored encrypted)."""
    with engine.begin() as conn:
        conn.execute(delete(user_totp).where(user_totp.c.user_id == user_id))
        conn.execute(
            insert(user_totp).values(
                user_id=user_id, secret=cipher.encrypt(secret), enabled=False, created_at=_naive(utcnow())
            )
        )


def mark_totp_used(engine: Engine, user_id: int, step: int, *, enable: bool = False) -> bool:
    """Record the time step of an accepted code; False when that step (or a later one) was already used,
    i.e. the code is a replay."""
    with engine.begin() as conn:
        values: dict[str, Any] = {"last_step": step}
        if enable:
            values["enabled"] = True
        done = conn.execute(
            update(user_totp)
            .where(
                user_totp.c.user_id == user_id,
                (user_totp.c.last_step.is_(None)) | (user_totp.c.last_step < step),
            )
            .values(**values)
        )
    return done.rowcount > 0


def clear_totp(engine: Engine, user_id: int) -> bool:
    with engine.begin() as conn:
        return conn.execute(delete(user_totp).where(user_totp.c.user_id == user_id)).rowcount > 0

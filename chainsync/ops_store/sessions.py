"""What ends a session, read at once for the API's in-memory check of every authenticated request.

An access token is dead when (besides its own expiry and a logout of that very token, see
``revoked_tokens``):

* its **login** (refresh-token family) was revoked: a logout with any token of the login, or the reuse of a
  spent refresh token (theft) — every token of the family then ends, the thief's and the victim's alike;
* its **user's security version** moved on: deactivation, a role or store change, a password reset
  (``users.security_version``, bumped by ``update_user``/``upsert_user``) — every token of the user ends;
* its user is inactive. (Users are deactivated, never deleted; a token naming no user at all is judged by
  its signature, expiry and login alone.)

Families revoked longer ago than an access token lives cannot end a token any more, so only those of the
last ``lifetime`` are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from chainsync.ops_store.tables import refresh_tokens, users


@dataclass(frozen=True)
class SessionState:
    """``versions``: the current security version of every user by lower-case username, None for an
    inactive one; ``revoked_families``: logins revoked within the last access-token lifetime."""

    versions: dict[str, int | None] = field(default_factory=dict)
    revoked_families: frozenset[str] = frozenset()


def read_session_state(engine: Engine, lifetime: timedelta, now: datetime | None = None) -> SessionState:
    """One consistent read of the active users' versions and the recently revoked logins."""
    now = now or datetime.now(UTC)
    since = (now - lifetime).astimezone(UTC).replace(tzinfo=None)
    with engine.connect() as conn:
        rows = conn.execute(select(users.c.username, users.c.security_version, users.c.is_active)).all()
        family_ids: list[str] = list(
            conn.execute(
                select(refresh_tokens.c.family_id).where(refresh_tokens.c.revoked_at >= since).distinct()
            ).scalars()
        )
    versions: dict[str, int | None] = {
        str(row.username).lower(): int(row.security_version) if row.is_active else None for row in rows
    }
    return SessionState(versions=versions, revoked_families=frozenset(family_ids))

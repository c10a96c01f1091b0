"""Security state in the ops store: the hash-chained audit trail, IP reputation, IP rules, refresh
tokens, access tokens revoked by logout, TOTP secrets (encrypted), and the user/device-key listings admins
need.

Times are stored as naive UTC (as the rest of the ops store does) and returned timezone-aware.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import (
    Engine,
    RowMapping,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from chainsync.ops_store import cursor_locks
from chainsync.ops_store.tables import (
    device_keys,
    ip_reputation,
    ip_rules,
    refresh_tokens,
    revoked_tokens,
    security_audit,
    user_stores,
    user_totp,
    users,
)
from chainsync.ops_store.users import same_username
from chainsync.settings import Settings

log = logging.getLogger("chainsync.ops_store.security")

GENESIS_HASH = "0" * 64

# The columns a record's hash covers, in this order (everything but seq and the hashes themselves).
AUDIT_FIELDS = (
    "occurred_at",
    "category",
    "action",
    "outcome",
    "severity",
    "actor",
    "role",
    "source_ip",
    "user_agent",
    "request_id",
    "method",
    "route",
    "risk_score",
    "detail",
)


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- audit trail ----------------------------------------------------------------------------------


def audit_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the previous hash and the record's canonical JSON (sorted keys, UTC ISO times)."""
    body = {}
    for name in AUDIT_FIELDS:
        value = record.get(name)
        if isinstance(value, datetime):
            value = _naive(value).isoformat(timespec="microseconds")
        elif isinstance(value, float):
            value = round(value, 4)
        body[name] = value
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def append_audit(engine: Engine, record: Mapping[str, Any]) -> tuple[int, str]:
    """Append one audit record, chained to the newest one, and return ``(seq, record_hash)``.

    The read of the previous hash and the insert share one write transaction (``BEGIN IMMEDIATE`` on
    SQLite, the audit's commit-order lock on PostgreSQL), so concurrent writers cannot fork the chain."""
    values = {name: record.get(name) for name in AUDIT_FIELDS}
    values["occurred_at"] = _naive(values["occurred_at"] or utcnow())
    values["severity"] = values["severity"] or "info"
    with engine.begin() as conn:
        cursor_locks.hold(conn, cursor_locks.AUDIT)  # PostgreSQL: the read and the insert, one at a time
        prev = conn.execute(
            select(security_audit.c.record_hash).order_by(security_audit.c.seq.desc()).limit(1)
        ).scalar()
        prev_hash = prev or GENESIS_HASH
        digest = audit_hash(prev_hash, values)
        seq = conn.execute(
            insert(security_audit).values(**values, prev_hash=prev_hash, record_hash=digest)
        ).inserted_primary_key[0]  # type: ignore[index]
    return int(seq), digest


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AuditAnchor:
    """The chain's head as seen from outside the table (each serving snapshot records one): records up to
    ``seq`` existed, and record ``seq`` hashed to ``record_hash``. ``where`` says where it was kept."""

    seq: int
    record_hash: str
    where: str = ""


def audit_head(engine: Engine) -> AuditAnchor | None:
    """The newest audit record's ``(seq, record_hash)``, to be kept outside the table."""
    with engine.connect() as conn:
        row = conn.execute(
            select(security_audit.c.seq, security_audit.c.record_hash)
            .order_by(security_audit.c.seq.desc())
            .limit(1)
        ).first()
    return None if row is None else AuditAnchor(seq=int(row.seq), record_hash=str(row.record_hash))


def verify_audit_chain(engine: Engine, batch: int = 5000, anchors: Sequence[AuditAnchor] = ()) -> ChainReport:
    """Recompute every record's hash in order; the first record whose stored hash or link does not
    match (an edit, a deletion, an insertion) is reported. ``anchors`` (heads recorded outside the table)
    also catch what the chain alone cannot: the newest records deleted (the head is gone) or replaced by
    others reusing their numbers (the anchored record's hash differs)."""
    by_seq = {a.seq: a for a in anchors}
    prev_hash = GENESIS_HASH
    checked = 0
    last_seq = 0
    with engine.connect() as conn:
        while True:
            rows = (
                conn.execute(
                    select(security_audit)
                    .where(security_audit.c.seq > last_seq)
                    .order_by(security_audit.c.seq)
                    .limit(batch)
                )
                .mappings()
                .all()
            )
            if not rows:
                break
            for row in rows:
                if row["prev_hash"] != prev_hash:
                    return ChainReport(False, checked, row["seq"], "link to the previous record is broken")
                if audit_hash(prev_hash, dict(row)) != row["record_hash"]:
                    return ChainReport(False, checked, row["seq"], "record content does not match its hash")
                anchor = by_seq.get(row["seq"])
                if anchor is not None and anchor.record_hash != row["record_hash"]:
                    return ChainReport(
                        False, checked, row["seq"], f"record differs from the head recorded in {anchor.where}"
                    )
                prev_hash = row["record_hash"]
                last_seq = row["seq"]
                checked += 1
    missing = [a for a in anchors if a.seq <= last_seq and not _has_seq(engine, a.seq)]
    if missing:
        gone = min(missing, key=lambda a: a.seq)
        return ChainReport(
            False,
            checked,
            gone.seq,
            f"record {gone.seq} recorded in {gone.where} is missing (numbers reused?)",
        )
    beyond = [a for a in anchors if a.seq > last_seq]
    if beyond:
        head = max(beyond, key=lambda a: a.seq)
        return ChainReport(
            False,
            checked,
            last_seq + 1,
            f"records {last_seq + 1}..{head.seq} are missing (the head recorded in {head.where} is gone)",
        )
    return ChainReport(ok=True, checked=checked)


def _has_seq(engine: Engine, seq: int) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(select(security_audit.c.seq).where(security_audit.c.seq == seq)).first() is not None
        )


def query_audit(
    engine: Engine,
    *,
    category: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    severity: str | None = None,
    source_ip: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit records newest first, filtered; page with ``before_seq`` (the last seq of the page before)."""
    conds = []
    for col, value in (
        (security_audit.c.category, category),
        (security_audit.c.action, action),
        (security_audit.c.outcome, outcome),
        (security_audit.c.severity, severity),
        (security_audit.c.source_ip, source_ip),
        (security_audit.c.actor, actor),
    ):
        if value is not None:
            conds.append(col == value)
    if since is not None:
        conds.append(security_audit.c.occurred_at >= _naive(since))
    if until is not None:
        conds.append(security_audit.c.occurred_at < _naive(until))
    if before_seq is not None:
        conds.append(security_audit.c.seq < before_seq)
    stmt = select(security_audit).order_by(security_audit.c.seq.desc()).limit(limit)
    if conds:
        stmt = stmt.where(and_(*conds))
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        item["occurred_at"] = _aware(item["occurred_at"])
        out.append(item)
    return out


def count_audit_since(engine: Engine, since: datetime, severity: str | None = None) -> int:
    stmt = (
        select(func.count()).select_from(security_audit).where(security_audit.c.occurred_at >= _naive(since))
    )
    if severity is not None:
        stmt = stmt.where(security_audit.c.severity == severity)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


# --- IP reputation ------------------------------------------------------------------------------------


@dataclass
class Reputation:
    ip: str
    score: float
    score_at: datetime
    ban_count: int = 0
    blocked_until: datetime | None = None
    last_reason: str | None = None
    updated_at: datetime | None = None  # when the row was last written (read back only)


def _reputation(r: RowMapping) -> Reputation:
    return Reputation(
        ip=r["ip"],
        score=float(r["score"]),
        score_at=_aware(r["score_at"]),  # type: ignore[arg-type]
        ban_count=int(r["ban_count"]),
        blocked_until=_aware(r["blocked_until"]),
        last_reason=r["last_reason"],
        updated_at=_aware(r["updated_at"]),
    )


def load_reputations(engine: Engine) -> list[Reputation]:
    with engine.connect() as conn:
        rows = conn.execute(select(ip_reputation)).mappings().all()
    return [_reputation(r) for r in rows]


def sync_query(changed_since: datetime | None, now: datetime) -> Select[Any]:
    """The query of :func:`reputations_to_sync` (served by the indexes on ``blocked_until`` and
    ``updated_at``, migration 0006)."""
    stmt = select(ip_reputation)
    if changed_since is not None:
        stmt = stmt.where(
            or_(
                ip_reputation.c.blocked_until > _naive(now),
                ip_reputation.c.updated_at >= _naive(changed_since),
            )
        )
    return stmt


def reputations_to_sync(engine: Engine, changed_since: datetime | None, now: datetime) -> list[Reputation]:
    """The reputations another API process must know: every address whose block is in force at ``now``,
    and every row written at or after ``changed_since`` (all rows when it is None). One query."""
    with engine.connect() as conn:
        rows = conn.execute(sync_query(changed_since, now)).mappings().all()
    return [_reputation(r) for r in rows]


# A score below this share of the block score is as good as none: its address may be forgotten.
NEGLIGIBLE_SHARE = 0.01


def decayed_score(score: float, score_at: datetime, now: datetime, half_life_s: float) -> float:
    """``score`` (computed at ``score_at``) at ``now``: it halves every ``half_life_s`` seconds."""
    elapsed = max(0.0, (now - score_at).total_seconds())
    return score * 0.5 ** (elapsed / half_life_s)


@dataclass(frozen=True)
class ReputationRetention:
    """When a reputation may be forgotten (see :func:`reputation_prunable`)."""

    half_life_s: float  # scores halve every this many seconds
    negligible_score: float  # a decayed score below this counts as none
    retention: timedelta  # how long a once-blocked address is remembered

    @classmethod
    def from_settings(cls, settings: Settings) -> ReputationRetention:
        return cls(
            half_life_s=settings.risk_half_life_minutes * 60,
            negligible_score=settings.risk_block_score * NEGLIGIBLE_SHARE,
            retention=timedelta(days=settings.risk_reputation_retention_days),
        )


def reputation_prunable(rep: Reputation, now: datetime, keep: ReputationRetention) -> bool:
    """True when ``rep`` can be deleted at ``now`` without changing any decision: no block in force, a
    decayed score below ``keep.negligible_score``, and, for an address that was ever blocked
    (``ban_count > 0``, which makes its next block longer), nothing about it (signal, write, block end)
    for ``keep.retention``."""
    if rep.blocked_until is not None and rep.blocked_until > now:
        return False
    if decayed_score(rep.score, rep.score_at, now, keep.half_life_s) >= keep.negligible_score:
        return False
    if rep.ban_count <= 0:
        return True
    last_seen = max(t for t in (rep.score_at, rep.updated_at, rep.blocked_until) if t is not None)
    return now - last_seen >= keep.retention


def prunable_reputations(
    engine: Engine, now: datetime, keep: ReputationRetention, page: int = 5000
) -> list[tuple[str, datetime]]:
    """``(ip, updated_at as read)`` of every reputation :func:`reputation_prunable` allows at ``now``.
    Candidates (no block in force) are read in pages of ``page`` addresses, each its own short
    transaction (a transaction holds the SQLite write lock here), and judged in Python."""
    found: list[tuple[str, datetime]] = []
    after = ""
    while True:
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    select(ip_reputation)
                    .where(
                        ip_reputation.c.ip > after,
                        or_(
                            ip_reputation.c.blocked_until.is_(None),
                            ip_reputation.c.blocked_until <= _naive(now),
                        ),
                    )
                    .order_by(ip_reputation.c.ip)
                    .limit(page)
                )
                .mappings()
                .all()
            )
        found += [(r["ip"], r["updated_at"]) for r in rows if reputation_prunable(_reputation(r), now, keep)]
        if len(rows) < page:
            return found
        after = rows[-1]["ip"]


def delete_unchanged_reputations(engine: Engine, seen: list[tuple[str, datetime]], batch: int = 500) -> int:
    """Delete each ``(ip, updated_at)`` row unless it was written again since (its ``updated_at`` has
    moved), so a signal that arrives after the judgement wins; returns how many went."""
    stmt = delete(ip_reputation).where(
        ip_reputation.c.ip == bindparam("doomed_ip"),
        ip_reputation.c.updated_at == bindparam("seen_updated_at"),
    )
    params = [{"doomed_ip": ip, "seen_updated_at": _naive(at)} for ip, at in seen]
    deleted = 0
    for start in range(0, len(params), batch):
        with engine.begin() as conn:  # short write transactions: the API keeps writing meanwhile
            deleted += conn.execute(stmt, params[start : start + batch]).rowcount
    return deleted


def prune_reputations(engine: Engine, now: datetime, keep: ReputationRetention) -> int:
    """Delete the reputations :func:`reputation_prunable` allows at ``now`` (unless written again
    meanwhile); returns how many went."""
    return delete_unchanged_reputations(engine, prunable_reputations(engine, now, keep))


def save_reputation(engine: Engine, rep: Reputation) -> None:
    """Write ``rep``'s score; its block only when it ends later than the stored one, so a process that
    has not seen a block made elsewhere yet cannot shorten or clear it (an admin unblock deletes the
    row: :func:`delete_reputation`). ``ban_count`` goes with the block it counts."""
    blocked_until = _naive(rep.blocked_until) if rep.blocked_until else None
    values: dict[str, Any] = {
        "score": rep.score,
        "score_at": _naive(rep.score_at),
        "last_reason": (rep.last_reason or "")[:200] or None,
        "updated_at": _naive(utcnow()),
    }
    merged = values
    if blocked_until is not None:
        later = or_(ip_reputation.c.blocked_until.is_(None), ip_reputation.c.blocked_until < blocked_until)
        merged = {
            **values,
            "blocked_until": case((later, blocked_until), else_=ip_reputation.c.blocked_until),
            "ban_count": case((later, rep.ban_count), else_=ip_reputation.c.ban_count),
        }
    with engine.begin() as conn:
        done = conn.execute(update(ip_reputation).where(ip_reputation.c.ip == rep.ip).values(**merged))
        if done.rowcount == 0:
            conn.execute(
                insert(ip_reputation).values(
                    ip=rep.ip, ban_count=rep.ban_count, blocked_until=blocked_until, **values
                )
            )


def delete_reputation(engine: Engine, ip: str) -> bool:
    with engine.begin() as conn:
        return conn.execute(delete(ip_reputation).where(ip_reputation.c.ip == ip)).rowcount > 0


# --- IP rules -------------------------------------------------------------------------------------------


def list_ip_rules(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(ip_rules).order_by(ip_rules.c.id)).mappings().all()
    return [{**r, "created_at": _aware(r["created_at"])} for r in rows]


def add_ip_rule(engine: Engine, cidr: str, action: str, note: str | None, created_by: str) -> dict[str, Any]:
    """Add (or return the existing) rule ``action`` for ``cidr``."""
    with engine.begin() as conn:
        row = (
            conn.execute(select(ip_rules).where(ip_rules.c.cidr == cidr, ip_rules.c.action == action))
            .mappings()
            .first()
        )
        if row is None:
            conn.execute(
                insert(ip_rules).values(
                    cidr=cidr, action=action, note=note, created_by=created_by, created_at=_naive(utcnow())
                )
            )
            row = (
                conn.execute(select(ip_rules).where(ip_rules.c.cidr == cidr, ip_rules.c.action == action))
                .mappings()
                .one()
            )
    return {**row, "created_at": _aware(row["created_at"])}


def delete_ip_rule(engine: Engine, rule_id: int) -> bool:
    with engine.begin() as conn:
        return conn.execute(delete(ip_rules).where(ip_rules.c.id == rule_id)).rowcount > 0


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


# --- users and device keys (admin listings) ----------------------------------------------------------


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

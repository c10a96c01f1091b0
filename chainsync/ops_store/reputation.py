"""Address-level security state: the decaying reputation of each client IP (what the API's risk engine
scores, shared by every process through the ops store) and the admins' allow/deny rules by CIDR.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    RowMapping,
    Select,
    bindparam,
    case,
    delete,
    insert,
    or_,
    select,
    update,
)

from chainsync.ops_store.tables import (
    ip_reputation,
    ip_rules,
)
from chainsync.ops_store.times import aware as _aware
from chainsync.ops_store.times import naive as _naive
from chainsync.ops_store.times import utcnow
from chainsync.settings import Settings

log = logging.getLogger("chainsync.ops_store.reputation")

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

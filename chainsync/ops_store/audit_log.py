"""The security audit trail: an append-only, hash-chained log (each record's hash covers the previous
record's hash and its own fields), read back by filter, verified end to end or from a published anchor.

Times are stored as naive UTC (as the rest of the ops store does) and returned timezone-aware.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    func,
    insert,
    select,
)

from chainsync.ops_store import cursor_locks
from chainsync.ops_store.tables import (
    security_audit,
)
from chainsync.ops_store.times import aware as _aware
from chainsync.ops_store.times import naive as _naive
from chainsync.ops_store.times import utcnow

log = logging.getLogger("chainsync.ops_store.audit_log")

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

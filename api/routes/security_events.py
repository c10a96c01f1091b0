"""``GET /api/observability/security/events`` (admins): the security audit trail, filtered and paged,
newest first, with the system threat level. Included by the observability router."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, RiskDep, SettingsDep
from api.security.audit import CATEGORIES
from api.security.principals import AdminPrincipal
from chainsync.ops_store.audit_log import AuditAnchor, query_audit, verify_audit_chain
from chainsync.risk import ThreatLevel
from chainsync.serving import audit_anchors

router = APIRouter(prefix="/security")

Category = Literal["authentication", "authorization", "data_access", "network", "application", "admin"]
assert set(Category.__args__) == set(CATEGORIES)  # type: ignore[attr-defined]


class SecurityRecord(BaseModel):
    seq: int
    occurred_at: datetime
    category: str
    action: str
    outcome: str
    severity: str
    actor: str | None
    role: str | None
    source_ip: str | None
    user_agent: str | None
    request_id: str | None
    method: str | None
    route: str | None
    risk_score: float | None
    detail: str | None
    record_hash: str


class ChainStatus(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


class SecurityEvents(BaseModel):
    items: list[SecurityRecord]
    next_before_seq: int | None  # pass as before_seq for the next (older) page; None: no more
    threat_level: ThreatLevel
    chain: ChainStatus | None = None


Text = Annotated[str | None, Query(max_length=128)]


@router.get("/events", summary="Security audit trail (filters, pagination)")
async def security_events(
    engine: EngineDep,
    settings: SettingsDep,
    risk: RiskDep,
    _admin: AdminPrincipal,
    category: Category | None = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    outcome: Literal["success", "failure", "denied", "blocked"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    source_ip: Annotated[str | None, Query(max_length=64)] = None,
    actor: Text = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    verify: bool = False,
) -> SecurityEvents:
    """Audit records newest first. ``verify=true`` also re-checks the whole hash chain."""
    rows = await run_in_threadpool(
        lambda: query_audit(
            engine,
            category=category,
            action=action,
            outcome=outcome,
            severity=severity,
            source_ip=source_ip,
            actor=actor,
            since=since,
            until=until,
            before_seq=before_seq,
            limit=limit + 1,
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    chain = None
    if verify:
        # Heads recorded in the serving snapshots (outside the table) also catch a truncated chain.
        anchors = [
            AuditAnchor(a["seq"], a["record_hash"], f"snapshot {a['version']}")
            for a in await run_in_threadpool(audit_anchors, settings.serving)
        ]
        report = await run_in_threadpool(lambda: verify_audit_chain(engine, anchors=anchors))
        chain = ChainStatus(
            ok=report.ok, checked=report.checked, first_bad_seq=report.first_bad_seq, reason=report.reason
        )
    return SecurityEvents(
        items=[SecurityRecord.model_validate(r) for r in rows],
        next_before_seq=rows[-1]["seq"] if more and rows else None,
        threat_level=risk.threat_level(),
        chain=chain,
    )

"""The security audit trail: what the API records about itself.

Every record goes to the hash-chained ``security_audit`` table (time UTC, category, action, outcome,
severity, actor, role, IP, user agent, request id, route, risk score, detail); the kinds the pipeline knows
(:data:`chainsync.schemas.events.SecurityKind`) also go to the event inbox as a ``SecurityEvent``, which
feeds ``fct_security_events``. Never pass a password, token, API key or TOTP code.

:class:`Auditor` (one per app, ``app.state.auditor``) honours ``SECURITY_AUDIT_ENABLED`` and posts
critical records to ``MONITORING_ALERT_WEBHOOK`` on a background thread (never blocking a request).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, get_args

import structlog
from sqlalchemy import Engine

from api.log import get_logger
from chainsync.alerts import alert_payload, send_alert_in_background
from chainsync.ops_store.audit_log import append_audit
from chainsync.ops_store.events import InboxRow, append_events
from chainsync.schemas.events import SecurityEvent, SecurityKind
from chainsync.settings import Settings

# Events the API writes about itself are filed under the head office and the API "device".
AUDIT_STORE_ID = "HQ"
AUDIT_DEVICE_ID = "api"

INBOX_KINDS = frozenset(get_args(SecurityKind))

CATEGORIES = ("authentication", "authorization", "data_access", "network", "application", "admin")

# The category of each action; anything unlisted is "application".
_CATEGORY = {
    "login_success": "authentication",
    "login_failure": "authentication",
    "logout": "authentication",
    "2fa_success": "authentication",
    "2fa_failure": "authentication",
    "2fa_enrolled": "authentication",
    "token_refresh": "authentication",
    "refresh_token_reuse": "authentication",
    "refresh_failure": "authentication",
    "device_login_failure": "authentication",
    "bad_credentials": "authentication",
    "authorization_denied": "authorization",
    "data_access": "data_access",
    "rate_limited": "network",
    "ip_blocked": "network",
    "ip_banned": "network",
    "credential_stuffing": "network",
    "suspicious_request": "network",
    "validation_failure": "application",
    "suspicious_input": "application",
}

log = get_logger("api.security.audit")


def category_of(action: str) -> str:
    if action.startswith("admin_"):
        return "admin"
    return _CATEGORY.get(action, "application")


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else None


def record_security_event(
    engine: Engine,
    *,
    kind: str,
    outcome: str,
    username: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    detail: str | None = None,
    role: str | None = None,
    severity: str = "info",
    risk_score: float | None = None,
    method: str | None = None,
    route: str | None = None,
    actor: str | None = None,
    inbox: bool = True,
) -> SecurityEvent | None:
    """Append one audit record (committed when this returns) and, for the pipeline's kinds, one
    ``SecurityEvent`` to the event inbox (unless ``inbox`` is False: high-volume records such as
    validation failures stay in the audit trail only). Returns the inbox event, if one was written.

    The request id of the request being handled (bound to the logging context by the middleware, and
    carried into worker threads) goes into the audit record and is appended to the inbox event's
    ``detail``, so the audit trail and the logs join up."""
    rid = structlog.contextvars.get_contextvars().get("request_id")
    now = datetime.now(UTC)
    append_audit(
        engine,
        {
            "occurred_at": now,
            "category": category_of(kind),
            "action": kind,
            "outcome": outcome,
            "severity": severity,
            "actor": _clip(actor or username, 160),
            "role": role,
            "source_ip": _clip(source_ip, 64),
            "user_agent": _clip(user_agent, 512),
            "request_id": _clip(rid, 64),
            "method": method,
            "route": _clip(route, 200),
            "risk_score": risk_score,
            "detail": _clip(detail, 2048),
        },
    )
    if not inbox or kind not in INBOX_KINDS:
        return None
    inbox_detail = detail
    if risk_score is not None:
        inbox_detail = f"{inbox_detail or kind} (risk_score={risk_score:.1f})"
    if rid:
        suffix = f" [request_id={rid}]"
        inbox_detail = (inbox_detail or "")[: 1024 - len(suffix)] + suffix
    event = SecurityEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": now.isoformat(),
            "store_id": AUDIT_STORE_ID,
            "device_id": AUDIT_DEVICE_ID,
            "kind": kind,
            "outcome": outcome if outcome in ("success", "failure", "denied", "blocked") else "failure",
            "username": _clip(username, 128),
            "source_ip": _clip(source_ip, 64),
            "user_agent": _clip(user_agent, 512),
            "detail": _clip(inbox_detail, 1024),
        }
    )
    append_events(engine, [InboxRow.from_event(event)])
    return event


class Auditor:
    """Records audit events for one app, honouring ``SECURITY_AUDIT_ENABLED``, and alerts on critical ones."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @property
    def enabled(self) -> bool:
        return self.settings.security_audit_enabled

    def record(self, *, kind: str, outcome: str, severity: str = "info", **fields: Any) -> None:
        """Write the record (when auditing is on) and alert when ``severity`` is critical. Never raises:
        a failing audit write is logged, and the request it describes goes on."""
        if self.enabled:
            try:
                record_security_event(self.engine, kind=kind, outcome=outcome, severity=severity, **fields)
            except Exception as exc:  # the audit must never turn a request into a 500
                log.error("audit_write_failed", kind=kind, error_type=type(exc).__name__)
        if severity == "critical":
            self.alert(kind, outcome, **fields)

    def alert(self, kind: str, outcome: str, **fields: Any) -> None:
        url = self.settings.monitoring_alert_webhook
        if not url:
            return
        details = {k: v for k, v in fields.items() if k != "user_agent" and v is not None}
        summary = f"security: {kind} ({outcome})"
        if fields.get("source_ip"):
            summary += f" from {fields['source_ip']}"
        send_alert_in_background(url, alert_payload(f"security.{kind}", summary, "critical", **details))

"""The security audit trail: events the API writes about itself, appended to the event inbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine

from chainsync.ops_store.events import InboxRow, append_events
from chainsync.schemas.events import SecurityEvent

# Events the API writes about itself are filed under the head office and the API "device".
AUDIT_STORE_ID = "HQ"
AUDIT_DEVICE_ID = "api"


def record_security_event(
    engine: Engine,
    *,
    kind: str,
    outcome: str,
    username: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    detail: str | None = None,
) -> SecurityEvent:
    """Append one security event (committed when this returns). Never pass a password or token.

    The request id of the request being handled (bound to the logging context by the middleware, and
    carried into worker threads) is appended to ``detail``, so the audit trail and the logs join up."""
    rid = structlog.contextvars.get_contextvars().get("request_id")
    if rid:
        suffix = f" [request_id={rid}]"
        detail = (detail or "")[: 1024 - len(suffix)] + suffix
    event = SecurityEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC).isoformat(),
            "store_id": AUDIT_STORE_ID,
            "device_id": AUDIT_DEVICE_ID,
            "kind": kind,
            "outcome": outcome,
            "username": username[:128] if username else None,
            "source_ip": source_ip[:64] if source_ip else None,
            "user_agent": user_agent[:512] if user_agent else None,
            "detail": detail,
        }
    )
    append_events(engine, [InboxRow.from_event(event)])
    return event

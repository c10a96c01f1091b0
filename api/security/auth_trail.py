"""Failed authentications that are not logins: a forged, expired or revoked bearer token, a bad or revoked
device key, over HTTP or a WebSocket. Each is scored by the risk engine (``bad_credentials``, so probing
with made-up tokens leads to a block like password guessing does) and written to the audit trail as a
``bad_credentials`` authentication record, every one of them until an address floods: then at most
``per_address`` a minute per address and ``total`` in all are written, the next one saying how many were
held back (:class:`api.security.sampling.InboxSampler`). Logins have records of their own (``login_failure``).

A request that presents no credential at all is not an attempt and is not recorded."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from api.security.sampling import InboxSampler

KIND = "bad_credentials"
DEVICE_KEY_PREFIX = "csk_"


def presented_credential(authorization: str | None, api_key: str | None) -> str | None:
    """What the caller presented: ``device key``, ``bearer token`` or None (nothing)."""
    if api_key:
        return "device key"
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return "device key" if value.strip().startswith(DEVICE_KEY_PREFIX) else "bearer token"
        return "authorization header"
    return None


class AuthFailureTrail:
    """Scores and audits failed authentications for one app (see the module docstring)."""

    def __init__(self, risk: Any, auditor: Any, *, per_address: int = 20, total: int = 300) -> None:
        self.risk = risk
        self.auditor = auditor
        self.sampler = InboxSampler(burst=1, per_address=per_address, total=total)

    async def record(
        self,
        *,
        ip: str | None,
        what: str,
        channel: str,
        method: str | None,
        route: str | None,
        user_agent: str | None,
        reason: str | None = None,
    ) -> None:
        """Score one failure of ``what`` (``bearer token``, ``device key`` …) over ``channel`` (``HTTP`` or
        ``WebSocket``) and audit it unless the address is flooding."""
        decision = await run_in_threadpool(self.risk.observe, ip, KIND)
        held_back = self.sampler.admit(ip or "unknown")
        if held_back is None:
            return
        detail = f"{channel} {method or ''} {route or ''}: {what} refused".replace("  ", " ")
        if reason:
            detail += f" ({reason})"
        if held_back:
            detail += f"; {held_back} earlier from this address not recorded"
        auditor = self.auditor
        await run_in_threadpool(
            lambda: auditor.record(
                kind=KIND,
                outcome="failure",
                severity="warning",
                source_ip=ip,
                user_agent=user_agent,
                method=method,
                route=route,
                risk_score=decision.risk_score,
                detail=detail,
                inbox=False,
            )
        )

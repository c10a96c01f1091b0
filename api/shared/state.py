"""One API process's Redis parts (the bus, the control channel), built, wired to the caches they push for,
started and stopped together; and the AI cache clear that reaches every process. See :mod:`api.shared`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from api.queries import snapshots
from api.security.risk import RiskEngine
from api.security.tokens import RevokedTokens
from api.shared.bus import RedisBus
from api.shared.control import ControlChannel
from api.shared.redis import READ_TIMEOUT_SECONDS, RedisKeys, connect
from api.ws.hub import Hub
from chainsync.ops_store.reputation import Reputation
from chainsync.settings import Settings

# Push kinds on the control channel.
REVOKED = "revoked"
SESSIONS = "sessions"  # a login revoked ({"family": ...}) or a user changed ({}): see RevokedTokens
RISK_BLOCK = "risk_block"
RISK_UNBLOCK = "risk_unblock"
AI_CACHE_CLEAR = "ai_cache_clear"
IP_RULES = "ip_rules"


def _in_thread(work: Callable[[], object]) -> None:
    """Run ``work`` on a worker thread (from a push handler, on the event loop), not waiting for it."""
    asyncio.get_running_loop().run_in_executor(None, work)


@dataclass
class SharedState:
    """The Redis parts of one API process (see the module docstring)."""

    keys: RedisKeys
    bus: RedisBus
    control: ControlChannel

    @classmethod
    def build(cls, settings: Settings, hub: Hub, revoked: RevokedTokens, risk: RiskEngine) -> SharedState:
        """Wire the parts for ``settings.redis_url`` (which must be set); nothing connects before
        :meth:`start`."""
        assert settings.redis_url, "SharedState needs CHAINSYNC_REDIS_URL"
        keys = RedisKeys(settings.redis_key_prefix)
        writer = connect(settings.redis_url)
        # The blocking stream read and the subscription each hold a connection of their own.
        reader = connect(settings.redis_url, read_timeout_s=READ_TIMEOUT_SECONDS)
        listener = connect(settings.redis_url, read_timeout_s=READ_TIMEOUT_SECONDS)
        bus = RedisBus(hub, writer, reader, keys, maxlen=settings.ws_replay_buffer)
        control = ControlChannel(writer, listener, keys)

        revoked.on_revoke = lambda jti, expires_at: control.send(
            REVOKED, {"jti": jti, "expires_at": expires_at.isoformat()}
        )
        control.on(REVOKED, lambda d: revoked.remember(d["jti"], datetime.fromisoformat(d["expires_at"])))
        revoked.on_session_change = lambda data: control.send(SESSIONS, data)
        control.on(
            SESSIONS,
            lambda d: revoked.remember_family(str(d["family"])) if d.get("family") else revoked.expire(),
        )
        risk.on_block = lambda rep: control.send(RISK_BLOCK, _reputation_out(rep))
        control.on(RISK_BLOCK, lambda d: risk.apply_pushed(_reputation_in(d)))
        risk.on_unblock = lambda ip: control.send(RISK_UNBLOCK, {"ip": ip})
        control.on(RISK_UNBLOCK, lambda d: risk.lift_pushed(str(d["ip"])))
        control.on(AI_CACHE_CLEAR, lambda d: snapshots.clear_cache(keep_version=d.get("keep_version")))
        ipfilter = risk.ipfilter
        ipfilter.on_change = lambda: control.send(IP_RULES, {})
        control.on(IP_RULES, lambda d: _in_thread(ipfilter.load))  # a query: off the event loop
        # Pushes made while this process was not subscribed are lost: re-read what they would have said.
        control.on_resubscribe.extend([revoked.expire, risk.expire, lambda: _in_thread(ipfilter.load)])
        return cls(keys=keys, bus=bus, control=control)

    async def start(self) -> None:
        """Follow the stream and subscribe (when Redis is down now, both keep trying in the background)."""
        await self.control.start()
        await self.bus.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.control.stop()
        for client in {id(c): c for c in (self.bus.writer, self.bus.reader, self.control.listener)}.values():
            await client.aclose()


def clear_ai_cache(shared: SharedState | None, keep_version: str | None = None) -> int:
    """Drop this process's cached snapshot tables (but those of ``keep_version``) and, with Redis, have
    every other process do the same; returns how many went here."""
    cleared = snapshots.clear_cache(keep_version=keep_version)
    if shared is not None:
        shared.control.send(AI_CACHE_CLEAR, {"keep_version": keep_version})
    return cleared


async def get_shared_state(request: Request) -> SharedState | None:
    return getattr(request.app.state, "shared", None)


SharedStateDep = Annotated[SharedState | None, Depends(get_shared_state)]


def _reputation_out(rep: Reputation) -> dict[str, Any]:
    return {
        "ip": rep.ip,
        "score": rep.score,
        "score_at": rep.score_at.isoformat(),
        "ban_count": rep.ban_count,
        "blocked_until": rep.blocked_until.isoformat() if rep.blocked_until else None,
        "last_reason": rep.last_reason,
    }


def _reputation_in(d: dict[str, Any]) -> Reputation:
    return Reputation(
        ip=str(d["ip"]),
        score=float(d["score"]),
        score_at=datetime.fromisoformat(d["score_at"]),
        ban_count=int(d["ban_count"]),
        blocked_until=datetime.fromisoformat(d["blocked_until"]) if d.get("blocked_until") else None,
        last_reason=d.get("last_reason"),
    )

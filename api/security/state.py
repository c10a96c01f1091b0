"""The security layer's wiring: its parts built on ``app.state`` once the ops store is open (the typed
dependencies of :mod:`api.deps` hand them to the routes)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from api.log import get_logger
from api.security.audit import Auditor
from api.security.auth_trail import AuthFailureTrail
from api.security.ipfilter import IpFilter
from api.security.risk import RiskEngine
from api.security.tokens import RevokedTokens, totp_cipher

log = get_logger("api.security.state")


def install_security_state(app: Any, settings: Any, engine: Any) -> None:
    """Build the firewall's parts on ``app.state`` once the ops store is open (at start-up): the IP
    lists (settings plus admin rules), the risk engine (reputations restored), the auditor, and the
    access tokens revoked by logout (in the store, shared by every process; cached here), and the cipher
    of TOTP secrets."""
    app.state.ipfilter = IpFilter(settings, engine)
    app.state.risk = RiskEngine(settings, engine, app.state.ipfilter)
    app.state.auditor = Auditor(engine, settings)
    app.state.revoked_tokens = RevokedTokens(
        engine,
        settings.revocation_cache_seconds,
        token_lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    app.state.totp_cipher = totp_cipher(settings)
    app.state.auth_failures = AuthFailureTrail(app.state.risk, app.state.auditor)
    if settings.ws_ip_allowlist or settings.ws_ip_denylist:
        log.warning(
            "deprecated_setting",
            detail="CHAINSYNC_WS_IP_ALLOWLIST/_DENYLIST still narrow WebSockets, but the firewall's "
            "CHAINSYNC_IP_ALLOWLIST/_DENYLIST and admin IP rules now apply to them too: move the lists there",
        )

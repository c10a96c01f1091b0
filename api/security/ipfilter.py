"""Who is really calling (the client address behind trusted proxies) and the IP allow/deny lists.

``X-Forwarded-For`` is read only when the TCP peer is a configured trusted proxy, and then from the right:
the first address that is not itself a trusted proxy is the client. A header sent by anyone else is
ignored, so spoofing it changes nothing.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine
from starlette.types import Scope

from chainsync.ops_store.reputation import list_ip_rules
from chainsync.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> list[Network]:
    return [ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()]


def parse_address(value: str | None) -> Address | None:
    if not value:
        return None
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _within(addr: Address | None, networks: list[Network]) -> bool:
    return addr is not None and any(addr.version == n.version and addr in n for n in networks)


def resolve_client_ip(scope: Scope, trusted_proxies: list[Network]) -> str | None:
    """The client's address for this request: the peer, or, when the peer is a trusted proxy, the right-most
    untrusted address of ``X-Forwarded-For``."""
    client = scope.get("client")
    peer = client[0] if client else None
    if not trusted_proxies or not _within(parse_address(peer), trusted_proxies):
        return peer
    forwarded: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            forwarded.extend(p.strip() for p in value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        addr = parse_address(hop)
        if addr is None:
            return peer  # a malformed chain: trust nothing in it
        if not _within(addr, trusted_proxies):
            return str(addr)
    return peer


def client_ip_of(scope: Scope) -> str | None:
    """The address :class:`api.security.firewall.FirewallMiddleware` resolved for this request (or the
    peer)."""
    state = scope.get("state") or {}
    if "client_ip" in state:
        return state["client_ip"]
    client = scope.get("client")
    return client[0] if client else None


Verdict = Literal["allowed", "denied", "not_allowlisted"]


@dataclass(frozen=True)
class IpDecision:
    verdict: Verdict
    allowlisted: bool


class IpFilter:
    """Allow and deny lists from the settings plus the admins' rules in the ops store (reloaded after
    each change). A deny wins over an allow; with ``ip_allowlist_only`` the allowlist is exclusive.

    With Redis, a change is pushed to the other API processes (``on_change``, :mod:`api.shared`), which
    re-read the rules at once (:meth:`load`)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._allow = parse_networks(settings.ip_allowlist)
        self._deny = parse_networks(settings.ip_denylist)
        self.on_change: Callable[[], None] | None = None
        self.load()

    def reload(self) -> None:
        """Re-read the rules after an admin changed them here, and have the other processes do the same."""
        self.load()
        if self.on_change is not None:
            self.on_change()

    def load(self) -> None:
        """Read the settings' lists and the ops store's rules (one query)."""
        allow = parse_networks(self.settings.ip_allowlist)
        deny = parse_networks(self.settings.ip_denylist)
        if self.engine is not None:
            for rule in list_ip_rules(self.engine):
                net = ipaddress.ip_network(rule["cidr"], strict=False)
                (allow if rule["action"] == "allow" else deny).append(net)
        with self._lock:
            self._allow, self._deny = allow, deny

    def is_allowlisted(self, ip: str | None) -> bool:
        return _within(parse_address(ip), self._allow)

    def decide(self, ip: str | None) -> IpDecision:
        addr = parse_address(ip)
        allowlisted = _within(addr, self._allow)
        if _within(addr, self._deny):
            return IpDecision("denied", allowlisted)
        if self.settings.ip_allowlist_only and not allowlisted:
            return IpDecision("not_allowlisted", False)
        return IpDecision("allowed", allowlisted)

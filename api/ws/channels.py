"""Who may follow which channel. One place for the rule, so the hub never decides authorization.

| channel                | admin | manager (own stores) | cashier (own stores) | device (own store) |
|------------------------|-------|----------------------|----------------------|--------------------|
| ``sales:<store>``      | yes   | yes                  | yes                  | no                 |
| ``sync:<store>``       | yes   | yes                  | no                   | yes                |
| ``anomalies:<store>``  | yes   | yes                  | no                   | no                 |
| ``snapshot``           | yes   | yes                  | no                   | no                 |
| ``metrics``            | yes   | yes                  | no                   | no                 |
| ``security``           | yes   | no                   | no                   | no                 |

``<family>:*`` (every store) is for principals who see every store (admins).
"""

from __future__ import annotations

from api.security.principals import Principal

STORE_FAMILIES: dict[str, frozenset[str]] = {
    "sales": frozenset({"admin", "manager", "cashier"}),
    "sync": frozenset({"admin", "manager", "device"}),
    "anomalies": frozenset({"admin", "manager"}),
}
GLOBAL_CHANNELS: dict[str, frozenset[str]] = {
    "snapshot": frozenset({"admin", "manager"}),
    "metrics": frozenset({"admin", "manager"}),
    "security": frozenset({"admin"}),
}


def allowed(principal: Principal, channel: str) -> bool:
    """May ``principal`` follow ``channel``?"""
    if channel in GLOBAL_CHANNELS:
        return principal.role in GLOBAL_CHANNELS[channel]
    family, sep, store = channel.partition(":")
    if not sep or family not in STORE_FAMILIES or principal.role not in STORE_FAMILIES[family]:
        return False
    if store == "*":
        return principal.stores is None
    return bool(store) and principal.can_see(store)


def default_channels(principal: Principal) -> list[str]:
    """Everything ``principal`` may follow: families for all-store principals, else one per store."""
    out = [c for c, roles in GLOBAL_CHANNELS.items() if principal.role in roles]
    for family, roles in STORE_FAMILIES.items():
        if principal.role not in roles:
            continue
        if principal.stores is None:
            out.append(f"{family}:*")
        else:
            out.extend(f"{family}:{store}" for store in sorted(principal.stores))
    return out

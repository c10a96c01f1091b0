"""Sampling under flood: which of many similar security records are written in full.

Counted per API process and per minute, like the rate limits; used for validation failures reaching the
event inbox (:mod:`api.security.firewall`) and for failed authentications reaching the audit trail
(:mod:`api.security.auth_trail`)."""

from __future__ import annotations

import time
from typing import Any


class InboxSampler:
    """Which validation failures also go to the event inbox (for ``fct_security_events``/``fct_ip_risk``).

    One failure is usually a client bug; a burst from one address is probing. So an address's failures go
    to the inbox from its ``burst``-th within a minute on, at most ``per_address`` of them per address and
    ``total`` in all per minute, so a flood cannot fill the inbox (every failure is still audited and
    scored). Counted per process, like the rate limits."""

    def __init__(self, burst: int, per_address: int, total: int, clock: Any = time.monotonic) -> None:
        self.burst = burst
        self.per_address = per_address
        self.total = total
        self.clock = clock
        self._window = -1
        self._seen: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        self._sent_total = 0
        self._held_back: dict[str, int] = {}  # failures not sent since the address's last inbox event

    def admit(self, ip: str) -> int | None:
        """None when this failure stays out of the inbox; else how many from ``ip`` were held back since
        its last inbox event (the event says so)."""
        window = int(self.clock() // 60)
        if window != self._window:
            self._window, self._seen, self._sent, self._sent_total = window, {}, {}, 0
            if len(self._held_back) > 10_000:
                self._held_back.clear()
        seen = self._seen[ip] = self._seen.get(ip, 0) + 1
        if seen < self.burst or self._sent.get(ip, 0) >= self.per_address or self._sent_total >= self.total:
            self._held_back[ip] = self._held_back.get(ip, 0) + 1
            return None
        self._sent[ip] = self._sent.get(ip, 0) + 1
        self._sent_total += 1
        return self._held_back.pop(ip, 0)

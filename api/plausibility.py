"""Plausible events: what a terminal may claim about time, beyond what the event schema checks.

A compromised or misconfigured terminal could post sales dated 2001 or 2099 and move any day's figures.
An event's ``occurred_at`` must fall within the offline window the chain allows into the past
(``CHAINSYNC_EVENT_MAX_AGE_DAYS``, 30 days by default: a terminal offline longer must be re-provisioned)
and no further into the future than a small clock skew (``CHAINSYNC_EVENT_CLOCK_SKEW_SECONDS``, 900 s:
the clock of a terminal that was offline drifts).
Each line of a sale must also be one a store would ring up: at most ``CHAINSYNC_EVENT_MAX_LINE_QUANTITY``
units (1,000) at most ``CHAINSYNC_EVENT_MAX_UNIT_PRICE_CENTS`` (10,000,000: 100,000.00) a unit — the event
schema's own bounds (100,000 units, 1,000,000.00) only keep the arithmetic safe.
Each refusal names the field and the reason, as any validation error does (422). Ingest and offline-sync
uploads apply the same rules; historical imports (``chainsync import``) do not, they are not terminals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chainsync.settings import Settings


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The ``occurred_at`` values accepted now (UTC, inclusive)."""

    earliest: datetime
    latest: datetime
    max_line_quantity: int = 1_000_000_000
    max_unit_price_cents: int = 1_000_000_000_000

    @classmethod
    def now(cls, settings: Settings, now: datetime | None = None) -> TimeWindow:
        now = now or datetime.now(UTC)
        return cls(
            earliest=now - timedelta(days=settings.event_max_age_days),
            latest=now + timedelta(seconds=settings.event_clock_skew_seconds),
            max_line_quantity=settings.event_max_line_quantity,
            max_unit_price_cents=settings.event_max_unit_price_cents,
        )

    def errors(self, event: Any, prefix: str = "") -> list[dict[str, str]]:
        """Every rule ``event`` breaks, as validation errors (fields under ``prefix``)."""
        out = []
        timing = self.error(event.occurred_at, field=f"{prefix}occurred_at")
        if timing is not None:
            out.append(timing)
        # A sale's lines (the model, or the wire decoder's object of one); other events have none.
        for i, line in enumerate(getattr(event, "lines", None) or ()):
            if line.quantity > self.max_line_quantity:
                out.append(
                    {
                        "field": f"{prefix}lines.{i}.quantity",
                        "message": f"is more than a store would ring up on one line "
                        f"(at most {self.max_line_quantity})",
                    }
                )
            if line.unit_price_cents > self.max_unit_price_cents:
                out.append(
                    {
                        "field": f"{prefix}lines.{i}.unit_price_cents",
                        "message": f"is more than any product's price (at most {self.max_unit_price_cents})",
                    }
                )
        return out

    def admits(self, occurred_at: datetime) -> bool:
        return self.earliest <= occurred_at <= self.latest

    def error(self, occurred_at: datetime, field: str = "occurred_at") -> dict[str, str] | None:
        """The validation error for ``occurred_at`` outside the window, else None."""
        if occurred_at < self.earliest:
            return {
                "field": field,
                "message": f"is more than {(self.latest - self.earliest).days} days in the past "
                f"(earliest accepted {self.earliest.isoformat(timespec='seconds')})",
            }
        if occurred_at > self.latest:
            return {
                "field": field,
                "message": "is in the future beyond the clock-skew tolerance "
                f"(latest accepted {self.latest.isoformat(timespec='seconds')}); check the terminal's clock",
            }
        return None

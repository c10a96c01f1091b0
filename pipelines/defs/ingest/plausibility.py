"""Plausible sale lines in the warehouse: the ingest API's rules (``api/plausibility.py``) applied again to
what lands, whatever wrote it — a terminal through the API, an offline upload, or a historical import
(``chainsync import``), which the API's checks never see.

The same settings bound a line: at most ``CHAINSYNC_EVENT_MAX_LINE_QUANTITY`` units (1,000) at most
``CHAINSYNC_EVENT_MAX_UNIT_PRICE_CENTS`` (10,000,000) a unit. The time rule differs, because imported
history is legitimately old: ``occurred_at`` may be any time from :data:`EARLIEST_OCCURRED_AT`
(2000-01-01) on, and no later than the row's ``received_at`` (the time of the upload or the import) plus
one day (:data:`FUTURE_TOLERANCE_SECONDS`; more if ``CHAINSYNC_EVENT_CLOCK_SKEW_SECONDS`` says so). A day,
not the terminals' 900 s: history is imported by the day (a daily total is stamped at noon UTC, and a
store's business day ends up to 14 hours after UTC midnight), so a demo imported just after midnight
holds sales that are "later" than its import by hours; terminals' own events were already held to the
900 s skew by the API. The API's offline window (``CHAINSYNC_EVENT_MAX_AGE_DAYS``)
is the API's alone: it is about terminals, not history.

A line that breaks a rule is not loaded: the landing moves it to ``raw.sale_lines_quarantine`` with its
reason (:func:`quarantine_rules`), and the blocking great-expectations suite on the landed lines
(:func:`add_line_expectations`, ``checks.py``) fails if one got through anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chainsync.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

EARLIEST_OCCURRED_AT = datetime(2000, 1, 1)  # UTC: nothing this chain sold is older
FUTURE_TOLERANCE_SECONDS = 86_400  # how far past its receipt a landed line may be dated, at least

# Quarantine reasons (``raw.sale_lines_quarantine.reason``).
QUANTITY_ABOVE_BOUND = "quantity above the per-line bound"
PRICE_ABOVE_BOUND = "unit price above the per-line bound"
IN_THE_FUTURE = "occurred_at in the future"
BEFORE_EARLIEST = "occurred_at before 2000-01-01"

SECONDS_AHEAD = "seconds_ahead_of_receipt"  # the column the GX suite checks the clock rule on

_DEFAULTS = Settings.model_fields


@dataclass(frozen=True)
class LineRules:
    """The bounds a landed sale line must keep (defaults: the settings' defaults)."""

    max_line_quantity: int = _DEFAULTS["event_max_line_quantity"].default
    max_unit_price_cents: int = _DEFAULTS["event_max_unit_price_cents"].default
    clock_skew_seconds: int = _DEFAULTS["event_clock_skew_seconds"].default

    @property
    def future_tolerance_seconds(self) -> int:
        return max(int(self.clock_skew_seconds), FUTURE_TOLERANCE_SECONDS)

    @classmethod
    def from_settings(cls, settings: Settings) -> LineRules:
        return cls(
            max_line_quantity=settings.event_max_line_quantity,
            max_unit_price_cents=settings.event_max_unit_price_cents,
            clock_skew_seconds=settings.event_clock_skew_seconds,
        )


def quarantine_rules(rules: LineRules) -> list[tuple[str, str]]:
    """``(DuckDB condition, reason)`` pairs over a flattened sale line (columns ``quantity``,
    ``unit_price_cents``, ``occurred_at``, ``received_at``), in the order they are tried."""
    return [
        (f"quantity > {int(rules.max_line_quantity)}", QUANTITY_ABOVE_BOUND),
        (f"unit_price_cents > {int(rules.max_unit_price_cents)}", PRICE_ABOVE_BOUND),
        (
            f"occurred_at > received_at + interval {rules.future_tolerance_seconds} second",
            IN_THE_FUTURE,
        ),
        (f"occurred_at < timestamp '{EARLIEST_OCCURRED_AT:%Y-%m-%d %H:%M:%S}'", BEFORE_EARLIEST),
    ]


def quarantine_case(rules: LineRules) -> str:
    """The rules as ``when … then '…'`` branches of the landing's reason ``case``."""
    return "\n".join(f"when {condition} then '{reason}'" for condition, reason in quarantine_rules(rules))


def with_clock_column(lines: pd.DataFrame) -> pd.DataFrame:
    """``lines`` with :data:`SECONDS_AHEAD` (``occurred_at - received_at`` in seconds) for the suite."""
    ahead = (lines["occurred_at"] - lines["received_at"]).dt.total_seconds()
    return lines.assign(**{SECONDS_AHEAD: ahead})


def add_line_expectations(suite: Any, rules: LineRules) -> None:
    """The same rules as great-expectations expectations on landed lines (``with_clock_column`` first)."""
    import great_expectations.expectations as gxe

    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=1, max_value=rules.max_line_quantity)
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="unit_price_cents", min_value=0, max_value=rules.max_unit_price_cents
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column=SECONDS_AHEAD, max_value=rules.future_tolerance_seconds)
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="occurred_at", min_value=EARLIEST_OCCURRED_AT)
    )

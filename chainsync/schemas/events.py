"""Strict event models shared by the API, `chainsync import` and the pipeline.

Rules that hold for every event:

* ``event_id`` is a UUID made by the client and reused on every retry: it is the idempotency key.
* ``occurred_at`` is the device clock and must carry a timezone; it is stored in UTC.
* Money is **integer cents** everywhere (``unit_price_cents``, ``discount_cents``).
* Models are strict: no coercion (``"3"`` is not 3, ``false`` is not 0, floats are not ints) and unknown
  fields are rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

EventType = Literal["sale", "inventory", "security", "sync"]

# Upper bounds keep sums inside 64-bit integers and reject absurd values with a clear message.
MAX_QUANTITY = 100_000
MAX_CENTS = 100_000_000  # one million in currency units per unit price
MAX_LINES = 500

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
ID_MESSAGE = "must be 1-64 characters of letters, digits, '_', '-', '.', ':'"


def id_error_message(error: dict[str, Any]) -> str | None:
    """:data:`ID_MESSAGE` for a pydantic error that is an identifier's pattern mismatch, else None."""
    if (
        error.get("type") == "string_pattern_mismatch"
        and (error.get("ctx") or {}).get("pattern") == ID_PATTERN
    ):
        return ID_MESSAGE
    return None


def _require_text_or_datetime(value: Any) -> Any:
    # Lax datetime parsing would accept numbers as Unix times; a device clock must be explicit.
    if isinstance(value, datetime | str):
        return value
    raise ValueError("must be an ISO 8601 timestamp string with a timezone")


def _require_text_or_uuid(value: Any) -> Any:
    if isinstance(value, UUID | str):
        return value
    raise ValueError("must be a UUID string")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a timezone (e.g. 2026-01-31T10:15:00+01:00)")
    return value.astimezone(UTC)


# Checked by pydantic-core's own regex (a Python validator here cost a call per id, 7 per sale); API error
# bodies say ID_MESSAGE instead of the pattern (api/errors.py, via id_error_message).
Identifier = Annotated[StrictStr, StringConstraints(pattern=ID_PATTERN)]
EventId = Annotated[UUID, BeforeValidator(_require_text_or_uuid)]
AwareTimestamp = Annotated[datetime, BeforeValidator(_require_text_or_datetime), AfterValidator(_to_utc)]
Cents = Annotated[StrictInt, Field(ge=0, le=MAX_CENTS)]


class _LineLike(Protocol):
    @property
    def quantity(self) -> int: ...
    @property
    def unit_price_cents(self) -> int: ...
    @property
    def discount_cents(self) -> int: ...


class _SaleLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def lines(self) -> Sequence[_LineLike]: ...


class _StockMoveLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def quantity_delta(self) -> int | None: ...
    @property
    def counted_level(self) -> int | None: ...


# The rules across fields, written once: the models' validators call them, and so does the fast wire
# decoder compiled from the models (chainsync.schemas.wire).


def check_sale_line(line: _LineLike) -> None:
    """A line's discount is at most what the line is worth."""
    if line.discount_cents > line.quantity * line.unit_price_cents:
        raise ValueError("discount_cents exceeds quantity * unit_price_cents")


def check_inventory_shape(move: _StockMoveLike) -> None:
    """A count carries ``counted_level``; every other kind a ``quantity_delta`` of the kind's sign."""
    if move.kind == "count":
        if move.counted_level is None or move.quantity_delta is not None:
            raise ValueError("a count carries counted_level and no quantity_delta")
        return
    delta = move.quantity_delta
    if delta is None or move.counted_level is not None:
        raise ValueError(f"a {move.kind} carries quantity_delta and no counted_level")
    if move.kind == "receipt" and delta <= 0:
        raise ValueError("a receipt has quantity_delta > 0")
    if move.kind == "shrinkage" and delta >= 0:
        raise ValueError("shrinkage has quantity_delta < 0")
    if move.kind == "adjustment" and delta == 0:
        raise ValueError("an adjustment has quantity_delta != 0")


def sale_totals(sale: _SaleLike) -> tuple[int, int]:
    """``(units, net_cents)`` a transaction adds to sales: positive for a sale, negative for a refund,
    zero for a void. Net is quantity × unit price less discounts, in cents. The one definition (the live
    figures, the ticker and the marts' reading of it)."""
    if sale.kind == "void":
        return 0, 0
    units = net = 0
    for line in sale.lines:  # one pass: the live ticker sums every ingested sale
        units += line.quantity
        net += line.quantity * line.unit_price_cents - line.discount_cents
    return (units, net) if sale.kind == "sale" else (-units, -net)


def omitted_when_none(value: object) -> bool:
    """``exclude_if`` of an optional field the stored form leaves out when it is not set (so events
    stored before the field existed read the same as those after)."""
    return value is None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class EventBase(StrictModel):
    event_id: EventId
    occurred_at: AwareTimestamp
    store_id: Identifier
    device_id: Identifier

    event_type: str = Field(default="", exclude=True)  # set per subclass; never on the wire

    def payload_json(self) -> str:
        """The stored form of the event: compact JSON with UTC timestamps."""
        return self.model_dump_json()


class SaleLine(StrictModel):
    product_id: Identifier
    quantity: Annotated[StrictInt, Field(gt=0, le=MAX_QUANTITY)]
    unit_price_cents: Cents
    discount_cents: Cents = 0

    @model_validator(mode="after")
    def _discount_within_line(self) -> SaleLine:
        check_sale_line(self)
        return self


class SaleEvent(EventBase):
    """A till transaction. Quantities are positive; ``kind`` says whether it sells, refunds or voids."""

    event_type: Literal["sale"] = Field(default="sale", exclude=True)
    transaction_id: Identifier
    kind: Literal["sale", "refund", "void"]
    cashier_id: Identifier
    payment_type: Literal["cash", "card", "mobile", "gift_card", "other"]
    lines: Annotated[list[SaleLine], Field(min_length=1, max_length=MAX_LINES)]
    # A refund names the sale it returns (that sale's ``transaction_id``, same store). Required of
    # terminals' refunds by the API (ops_store/sale_rules.py); imported history may lack it.
    refund_of: Identifier | None = Field(default=None, exclude_if=omitted_when_none)

    def signed_totals(self) -> tuple[int, int]:
        """``(units, net_cents)`` this transaction adds to sales (:func:`sale_totals`)."""
        return sale_totals(self)


class InventoryEvent(EventBase):
    """A stock movement. ``receipt``/``adjustment``/``shrinkage`` carry ``quantity_delta`` (receipt > 0,
    shrinkage < 0, adjustment != 0); ``count`` carries ``counted_level`` (the level found on the shelf)."""

    event_type: Literal["inventory"] = Field(default="inventory", exclude=True)
    product_id: Identifier
    kind: Literal["receipt", "adjustment", "shrinkage", "count"]
    quantity_delta: Annotated[StrictInt, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)] | None = None
    counted_level: Annotated[StrictInt, Field(ge=0, le=10 * MAX_QUANTITY)] | None = None

    @model_validator(mode="after")
    def _shape_by_kind(self) -> InventoryEvent:
        check_inventory_shape(self)
        return self


SecurityKind = Literal[
    "login_success",
    "login_failure",
    "logout",
    "2fa_success",
    "2fa_failure",
    "authorization_denied",
    "rate_limited",
    "ip_blocked",
    "validation_failure",
    "suspicious_input",
    "device_login_failure",
]


class SecurityEvent(EventBase):
    """A security-relevant event, written by the API itself or reported by a device
    (``device_login_failure``). Never carries a password or token."""

    event_type: Literal["security"] = Field(default="security", exclude=True)
    kind: SecurityKind
    username: Annotated[StrictStr, Field(max_length=128)] | None = None
    source_ip: Annotated[StrictStr, Field(max_length=64)] | None = None
    user_agent: Annotated[StrictStr, Field(max_length=512)] | None = None
    outcome: Literal["success", "failure", "denied", "blocked"] = "failure"
    detail: Annotated[StrictStr, Field(max_length=1024)] | None = None


class SyncEvent(EventBase):
    """One offline-sync session of a device: how long it was offline and what its upload did."""

    event_type: Literal["sync"] = Field(default="sync", exclude=True)
    session_id: Identifier
    offline_since: AwareTimestamp | None = None
    items_received: Annotated[StrictInt, Field(ge=0)]
    items_applied: Annotated[StrictInt, Field(ge=0)]
    items_duplicate: Annotated[StrictInt, Field(ge=0)] = 0
    items_rejected: Annotated[StrictInt, Field(ge=0)] = 0
    items_conflict: Annotated[StrictInt, Field(ge=0)] = 0
    duration_ms: Annotated[StrictInt, Field(ge=0)]
    clock_skew_seconds: Annotated[StrictInt, Field(ge=-(10**7), le=10**7)] = 0


EVENT_MODELS: dict[str, type[EventBase]] = {
    "sale": SaleEvent,
    "inventory": InventoryEvent,
    "security": SecurityEvent,
    "sync": SyncEvent,
}

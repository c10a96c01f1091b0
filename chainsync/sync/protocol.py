"""The offline-sync wire format: upload envelopes, upload items and download cursors.

An upload is ``{"batch_id", "sent_at", "offline_since"?, "pending"?, "items": [...]}``; each item is
``{"mutation_id", "type", "base_version"?, "edited_at"?, "payload"}``. ``mutation_id`` is made by the
terminal and reused on every retry: with the device it keys the answer, so a replay changes nothing.
Sale and inventory payloads are the shared event models (:mod:`chainsync.schemas.events`), unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StrictStr, TypeAdapter, model_validator

from chainsync.schemas.events import (
    AwareTimestamp,
    Cents,
    Identifier,
    InventoryEvent,
    SaleEvent,
    StrictModel,
)

SCHEMA_VERSION = 1
"""Version of the download format; a cursor from another version is stale (410)."""

ItemType = Literal["sale", "inventory", "product_override", "product"]
ItemStatus = Literal["applied", "duplicate", "rejected", "conflict"]


class UploadEnvelope(StrictModel):
    """One upload request. ``items`` are validated one by one afterwards, so a bad item is answered on
    its own instead of failing the batch."""

    batch_id: Identifier
    sent_at: AwareTimestamp
    offline_since: AwareTimestamp | None = None
    pending: Annotated[StrictInt, Field(ge=0, le=10_000_000)] = 0
    items: Annotated[list[Any], Field(min_length=1)]


class OverrideValues(StrictModel):
    """Store-level edits of a product a terminal may make offline (or a manager may set)."""

    shelf_label: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    reorder_point: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None

    @model_validator(mode="after")
    def _something(self) -> OverrideValues:
        if self.shelf_label is None and self.reorder_point is None:
            raise ValueError("an override sets shelf_label and/or reorder_point")
        return self

    def values(self) -> dict[str, Any]:
        return self.model_dump(exclude={"product_id"}, exclude_none=True)


class OverrideFields(OverrideValues):
    product_id: Identifier


class CatalogEdit(StrictModel):
    """A catalog or price edit made on a terminal. Catalog and prices are server-wins: it is answered
    ``conflict`` with the server's value and closed at once."""

    product_id: Identifier
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    price_cents: Cents | None = None


class _ItemBase(StrictModel):
    mutation_id: Identifier
    base_version: Annotated[StrictInt, Field(ge=0)] | None = None
    edited_at: AwareTimestamp | None = None  # device clock; used by last_writer_wins


class SaleItem(_ItemBase):
    type: Literal["sale"]
    payload: SaleEvent


class InventoryItem(_ItemBase):
    type: Literal["inventory"]
    payload: InventoryEvent


class OverrideItem(_ItemBase):
    type: Literal["product_override"]
    payload: OverrideFields

    @model_validator(mode="after")
    def _versioned(self) -> OverrideItem:
        if self.base_version is None:
            raise ValueError("a product_override carries base_version (0 when the terminal saw none)")
        return self


class CatalogItem(_ItemBase):
    type: Literal["product"]
    payload: CatalogEdit


UploadItem = Annotated[SaleItem | InventoryItem | OverrideItem | CatalogItem, Field(discriminator="type")]
ITEM_ADAPTER: TypeAdapter[SaleItem | InventoryItem | OverrideItem | CatalogItem] = TypeAdapter(UploadItem)


# --- download cursors ------------------------------------------------------------------------------


class CursorError(ValueError):
    """A cursor that cannot be read (400)."""


class StaleCursor(Exception):
    """A cursor this server can no longer continue from (410): another format version, a position
    before the retained change log, or one it never issued."""


class Cursor(StrictModel):
    """Where a device's download stands.

    ``phase`` ``full`` walks the current catalog by key (``key`` = last product sent, ``over`` = whether
    the store's overrides are being walked), then ``changes`` continues from change-log ``seq``; the
    snapshot section (stock levels, reorder suggestions) is tracked by ``snap`` (version) and ``soff``
    (rows sent), and resent whole when a new snapshot is published."""

    v: int = SCHEMA_VERSION
    phase: Literal["full", "changes"] = "full"
    seq: Annotated[StrictInt, Field(ge=0)] = 0
    key: StrictStr | None = None
    over: bool = False
    snap: StrictStr | None = None
    soff: Annotated[StrictInt, Field(ge=0)] = 0

    def encode(self) -> str:
        raw = json.dumps(self.model_dump(), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        if len(token) > 1024:
            raise CursorError("cursor is too long")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CursorError("cursor is not one this server issued (malformed)") from None
        if not isinstance(data, dict):
            raise CursorError("cursor is not one this server issued (malformed)")
        if data.get("v") != SCHEMA_VERSION:
            raise StaleCursor(
                f"cursor is from download format {data.get('v')!r}; this server speaks {SCHEMA_VERSION}. "
                "Download again without a cursor."
            )
        try:
            return cls.model_validate(data)
        except ValueError:
            raise CursorError("cursor is not one this server issued (malformed)") from None

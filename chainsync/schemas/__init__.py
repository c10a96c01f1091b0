"""Event contracts: the one source of truth for the API, the importer and the pipelines."""

from chainsync.schemas.events import (
    EVENT_MODELS,
    EventType,
    InventoryEvent,
    SaleEvent,
    SaleLine,
    SecurityEvent,
    SyncEvent,
)

__all__ = [
    "EVENT_MODELS",
    "EventType",
    "InventoryEvent",
    "SaleEvent",
    "SaleLine",
    "SecurityEvent",
    "SyncEvent",
]

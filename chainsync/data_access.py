"""The data-access record's contract: what the API writes into the audit trail about who read what, and
how the pipeline reads it back (``pipelines/defs/access``).

A data-access record is a ``security_audit`` row with ``action = 'data_access'``: the caller in ``actor``
(a username, or ``device:<store>/<device>`` for a terminal) and ``role``, the route template in ``route``,
the method in ``method``, and in ``detail`` the request line (path without its query string) followed,
when the read concerns one store, by `` store=<store_id>``. The store comes from the ``store_id`` query
parameter of a store-data read, or from a terminal's key.
"""

from __future__ import annotations

import re

ACTION = "data_access"

# Reads of a store's figures by a user: each leaves a data-access record naming the store, so the
# unusual-access detector can learn each user's usual stores, volume and hours.
STORE_DATA_PREFIXES = (
    "/api/ai/forecast",
    "/api/ai/anomalies",
    "/api/ai/insights",
    "/api/ai/dashboard",
    "/api/sales",
)

# A store id as the event schemas accept it (letters, digits, ``_.:-``; at most 64).
_STORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# The store suffix of ``detail``; group 1 is the store id (the pipeline's landing uses it in DuckDB SQL).
STORE_IN_DETAIL = r" store=([A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$"
DEVICE_PREFIX = "device:"


def valid_store_id(value: str | None) -> str | None:
    """``value`` when it is a well-formed store id, else None (a malformed one is never recorded)."""
    return value if value is not None and _STORE_ID.fullmatch(value) else None


def describe(method: str, path: str, store_id: str | None = None) -> str:
    """The ``detail`` of a data-access record: ``"GET /api/ai/forecast store=S003"``."""
    text = f"{method} {path[:200]}"
    store = valid_store_id(store_id)
    return f"{text} store={store}" if store else text


def store_of(detail: str | None) -> str | None:
    """The store a record's ``detail`` names, or None."""
    match = re.search(STORE_IN_DETAIL, detail or "")
    return match.group(1) if match else None

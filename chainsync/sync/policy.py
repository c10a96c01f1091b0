"""The conflict policy, per entity (CouchDB's lesson: the winner must be deterministic).

* ``sale`` and other events: append-only; the only question is whether the event is new (dedup by
  ``event_id``).
* ``inventory``: stock moves are deltas (or counts), appended like events; concurrent moves merge by
  summing, so they never conflict.
* ``product`` (catalog and prices): server-wins; a terminal's edit is answered ``conflict`` with the
  server's value and closed at once.
* ``product_override`` (a store's shelf label and reorder point): an edit based on the current version
  applies; one based on an older version goes to the conflict queue for a manager; a base version newer
  than the server's was never issued and is rejected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

EntityPolicy = Literal["append_only", "merge_delta", "server_wins", "conflict_queue"]

POLICY: dict[str, EntityPolicy] = {
    "sale": "append_only",
    "inventory": "merge_delta",
    "product": "server_wins",
    "product_override": "conflict_queue",
}

Strategy = Literal["server_wins", "client_wins", "last_writer_wins", "value"]
OverrideDecision = Literal["apply", "noop", "conflict", "reject"]


def decide_override(
    base_version: int, server_version: int, client: dict[str, Any], server: dict[str, Any]
) -> OverrideDecision:
    """What to do with a terminal's override edit made from ``base_version`` when the server holds
    ``server_version`` (0: no override yet) with the values ``server``."""
    if base_version > server_version:
        return "reject"
    if base_version == server_version:
        return "apply"
    if all(server.get(k) == v for k, v in client.items()):
        return "noop"  # the terminal arrived at what the server already has
    return "conflict"


def resolve(
    strategy: Strategy,
    *,
    client: dict[str, Any],
    server: dict[str, Any],
    client_edited_at: datetime | None,
    server_updated_at: datetime | None,
    value: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The override values a resolution writes, or None to keep the server's as they are.

    ``last_writer_wins`` compares the terminal's edit time (corrected for its clock skew) with the
    server row's last update; a tie, or a missing client time, keeps the server's values."""
    if strategy == "server_wins":
        return None
    if strategy == "client_wins":
        return {**server, **client}
    if strategy == "value":
        assert value is not None
        return {**server, **value}
    if client_edited_at is not None and (server_updated_at is None or client_edited_at > server_updated_at):
        return {**server, **client}
    return None

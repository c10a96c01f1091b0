"""The conflict policy and the download cursor, as pure functions."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from chainsync.sync.policy import POLICY, decide_override, resolve
from chainsync.sync.protocol import SCHEMA_VERSION, Cursor, CursorError, StaleCursor

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_policy_per_entity() -> None:
    assert POLICY == {
        "sale": "append_only",
        "inventory": "merge_delta",
        "product": "server_wins",
        "product_override": "conflict_queue",
    }


@pytest.mark.parametrize(
    ("base", "server_version", "client", "server", "expected"),
    [
        (3, 3, {"shelf_label": "A"}, {"shelf_label": "B"}, "apply"),
        (2, 3, {"shelf_label": "A"}, {"shelf_label": "B"}, "conflict"),
        (2, 3, {"shelf_label": "B"}, {"shelf_label": "B", "reorder_point": 4}, "noop"),
        (4, 3, {"shelf_label": "A"}, {"shelf_label": "B"}, "reject"),
        (0, 0, {"reorder_point": 1}, {}, "apply"),
    ],
)
def test_decide_override(base, server_version, client, server, expected) -> None:  # type: ignore[no-untyped-def]
    assert decide_override(base, server_version, client, server) == expected


def test_resolutions() -> None:
    client, server = {"shelf_label": "A"}, {"shelf_label": "B", "reorder_point": 3}
    kw = {"client": client, "server": server}
    assert resolve("server_wins", **kw, client_edited_at=T0, server_updated_at=T0) is None
    assert resolve("client_wins", **kw, client_edited_at=None, server_updated_at=T0) == {
        "shelf_label": "A",
        "reorder_point": 3,
    }
    assert resolve(
        "value", **kw, client_edited_at=None, server_updated_at=None, value={"reorder_point": 9}
    ) == {
        "shelf_label": "B",
        "reorder_point": 9,
    }
    later, earlier = T0 + timedelta(seconds=1), T0 - timedelta(seconds=1)
    assert (
        resolve("last_writer_wins", **kw, client_edited_at=later, server_updated_at=T0)["shelf_label"] == "A"
    )  # type: ignore[index]
    assert resolve("last_writer_wins", **kw, client_edited_at=earlier, server_updated_at=T0) is None
    assert resolve("last_writer_wins", **kw, client_edited_at=T0, server_updated_at=T0) is None  # tie: server
    assert resolve("last_writer_wins", **kw, client_edited_at=None, server_updated_at=T0) is None


def test_cursor_round_trip_and_errors() -> None:
    cur = Cursor(phase="changes", seq=42, snap="v1", soff=10)
    assert Cursor.decode(cur.encode()) == cur
    for bad in ("%%%", "bm90IGpzb24", base64.urlsafe_b64encode(b"[1]").decode()):
        with pytest.raises(CursorError):
            Cursor.decode(bad)
    forged = base64.urlsafe_b64encode(json.dumps({"v": SCHEMA_VERSION, "seq": -1}).encode()).decode()
    with pytest.raises(CursorError):
        Cursor.decode(forged)
    old = base64.urlsafe_b64encode(json.dumps({"v": 0, "seq": 1}).encode()).decode()
    with pytest.raises(StaleCursor):
        Cursor.decode(old)

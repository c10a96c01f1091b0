"""One page of a device's download: the catalog (full walk or changes since the cursor), the store's
overrides, then the snapshot section (stock levels, reorder suggestions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from api.sync.snapshot import store_records
from chainsync.ops_store.sync.changes import catalog_page, change_log_bounds, changes_after
from chainsync.serving import Snapshot
from chainsync.sync.protocol import Cursor, StaleCursor


def download_page(
    engine: Engine, snapshot: Snapshot | None, store_id: str, cursor: Cursor | None, limit: int
) -> tuple[list[dict[str, Any]], Cursor, bool]:
    """``(records, next cursor, has_more)``. Raises :class:`StaleCursor` for a cursor before the
    retained change log or beyond anything issued."""
    first, last = change_log_bounds(engine)
    if cursor is None:
        cur = Cursor(phase="full", seq=last)
    else:
        if cursor.seq > last:
            raise StaleCursor("cursor is ahead of this server's change log (not issued here); download again")
        if cursor.seq < first - 1:
            raise StaleCursor(
                "cursor is older than the retained change log; download a full snapshot (no cursor)"
            )
        cur = cursor
    records: list[dict[str, Any]] = []
    room = limit

    while cur.phase == "full" and room > 0:
        page = catalog_page(engine, store_id, after_key=cur.key, overrides=cur.over, limit=room)
        records.extend(page)
        if len(page) == room:
            cur = cur.model_copy(update={"key": page[-1]["key"]})
            room = 0
        elif not cur.over:
            cur = cur.model_copy(update={"over": True, "key": None})
            room -= len(page)
        else:
            cur = cur.model_copy(update={"phase": "changes", "key": None, "over": False})
            room -= len(page)
    if cur.phase == "full":
        return records, cur, True

    if room > 0:
        changed, seq, more = changes_after(engine, store_id, cur.seq, room)
        records.extend(changed)
        cur = cur.model_copy(update={"seq": seq})
        if more:
            return records, cur, True
        room -= len(changed)

    if snapshot is None:
        return records, cur, False
    if cur.snap != snapshot.version:
        if room <= 0:
            return records, cur, True
        # A new snapshot replaces the device's stock and reorder tables as a whole.
        records.append({"entity": "snapshot", "key": snapshot.version, "op": "reset"})
        cur = cur.model_copy(update={"snap": snapshot.version, "soff": 0})
    rows = store_records(snapshot, store_id)
    chunk = rows[cur.soff : cur.soff + max(room, 0)]
    records.extend(chunk)
    cur = cur.model_copy(update={"soff": cur.soff + len(chunk)})
    return records, cur, cur.soff < len(rows)

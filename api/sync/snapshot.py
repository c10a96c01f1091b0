"""The snapshot part of a download: a store's stock levels (``fct_stock_levels``) and, when the snapshot
holds them, its reorder suggestions. A snapshot version is immutable, so a store's records are built
once per version and kept."""

from __future__ import annotations

import math
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from api.queries.snapshots import SnapshotUnavailable, load_current
from chainsync.serving import Snapshot

STOCK_TABLE = "fct_stock_levels"
REORDER_TABLE = "reorder_suggestions"


def current_or_none(serving_dir: Path) -> Snapshot | None:
    try:
        return load_current(serving_dir)
    except SnapshotUnavailable:
        return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN or infinity
        return None
    return value


@lru_cache(maxsize=64)
def _store_records(
    root: str, version: str, tables: tuple[tuple[str, str], ...], store_id: str
) -> tuple[dict[str, Any], ...]:
    records: list[dict[str, Any]] = []
    for table, entity in ((STOCK_TABLE, "stock_level"), (REORDER_TABLE, "reorder_suggestion")):
        files = dict(tables)
        if table not in files:
            continue
        frame = pl.read_parquet(Path(root) / files[table])
        if "store_id" not in frame.columns or "product_id" not in frame.columns:
            continue
        rows = frame.filter(pl.col("store_id") == store_id).sort("product_id")
        keep = [c for c in rows.columns if c not in ("store_id", "stock_level_id")]
        for row in rows.select(keep).iter_rows(named=True):
            records.append(
                {
                    "entity": entity,
                    "key": row["product_id"],
                    "op": "upsert",
                    "data": {k: _json_safe(v) for k, v in row.items()},
                }
            )
    return tuple(records)


def store_records(snapshot: Snapshot, store_id: str) -> tuple[dict[str, Any], ...]:
    """Stock levels, then reorder suggestions, of ``store_id`` in ``snapshot``, ordered by product."""
    tables = tuple(sorted((name, meta["file"]) for name, meta in snapshot.manifest["tables"].items()))
    return _store_records(str(snapshot.root), snapshot.version, tables, store_id)

"""The system's own figures: the snapshot's freshness, the published snapshots still on disk, and each
table's rows and newest data.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from chainsync import snapshot_contract as contract
from chainsync.serving import MANIFEST, Snapshot
from dashboards.data import declared, table


def freshness(snap: Snapshot) -> dict[str, Any]:
    """When the snapshot was published, by which run, how old it is (hours) and its events watermark."""
    pipeline = snap.manifest.get("pipeline") or {}
    return {
        "version": snap.version,
        "run_id": snap.manifest.get("run_id"),
        "created_at": snap.created_at,
        "age_hours": snap.age_seconds() / 3600,
        "events_seq": pipeline.get("events_seq"),
    }


def pipeline_runs(snap: Snapshot) -> pl.DataFrame:
    """The published snapshots still on disk (one per successful pipeline run), newest first."""
    rows = []
    for manifest in sorted(snap.root.parent.glob(f"*/{MANIFEST}")):
        try:
            m = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        rows.append(
            {
                "version": m.get("version"),
                "run_id": m.get("run_id"),
                "published_at": m.get("created_at"),
                "tables": len(m.get("tables", {})),
                "rows": sum(int(t.get("rows") or 0) for t in m.get("tables", {}).values()),
                "events_seq": (m.get("pipeline") or {}).get("events_seq"),
                "current": m.get("version") == snap.version,
            }
        )
    return pl.DataFrame(rows).sort("published_at", descending=True) if rows else pl.DataFrame()


def asset_freshness(snap: Snapshot) -> pl.DataFrame:
    """Each table of the snapshot: rows, columns, and its newest data (where the contract dates its rows)."""
    rows = []
    for name in snap.tables:
        frame = table(snap, name)
        spec = contract.TABLES.get(name)
        date_col = declared(frame, spec.date_column if spec else None)
        latest = frame[date_col].max() if date_col and frame.height else None
        rows.append(
            {
                "table": name,
                "rows": frame.height,
                "columns": frame.width,
                "latest_data": str(latest) if latest is not None else None,
            }
        )
    return pl.DataFrame(rows)

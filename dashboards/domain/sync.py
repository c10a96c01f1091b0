"""Offline-sync figures: sessions in a period and a summary per terminal."""

from __future__ import annotations

import polars as pl

from chainsync.serving import Snapshot
from dashboards.data import scoped, table


def sync_sessions(snap: Snapshot, store_id: str | None, days: int | None) -> pl.DataFrame:
    sessions = table(snap, "fct_sync_sessions")
    if sessions.is_empty():
        return sessions
    return scoped(
        snap,
        sessions.with_columns(sync_date=pl.col("synced_at").cast(pl.Date)),
        store_id=store_id,
        date_col="sync_date",
        days=days,
    )


def terminals(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per terminal: sessions, last sync, longest offline spell (min), latest and worst clock skew (s),
    items rejected and in conflict."""
    if sessions.is_empty():
        return pl.DataFrame()
    return (
        sessions.sort("synced_at")
        .group_by("store_id", "device_id")
        .agg(
            pl.len().alias("sessions"),
            pl.col("synced_at").max().alias("last_sync"),
            (pl.col("offline_seconds").max() / 60).round(1).alias("max_offline_min"),
            pl.col("clock_skew_seconds").last().alias("clock_skew_s"),
            pl.col("clock_skew_seconds").abs().max().alias("worst_skew_s"),
            pl.col("items_applied").sum().alias("applied"),
            pl.col("items_rejected").sum().alias("rejected"),
            pl.col("items_conflict").sum().alias("conflicts"),
        )
        .sort("store_id", "device_id")
    )

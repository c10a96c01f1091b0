"""Reads of the current serving snapshot: demand forecasts and sales anomalies.

A snapshot version is immutable, so each Parquet table is read once per version and kept in an LRU cache
keyed by its path (which holds the version); a new publish is picked up on the next request.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from chainsync.serving import Snapshot, current_snapshot

FORECAST_TABLE = "demand_forecast"
ACCURACY_TABLE = "forecast_accuracy"
ACCURACY_COLUMNS = ("mase", "wape", "bias", "coverage_80", "coverage_95", "holdout_days")
ANOMALY_TABLE = "sales_anomalies"
FORECAST_POINT_COLUMNS = ("ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95")


class SnapshotUnavailable(Exception):
    """No snapshot has been published yet, or it lacks the table asked for."""


class NotFound(Exception):
    """The snapshot holds nothing for the store or product asked for."""


def load_current(serving_dir: Path) -> Snapshot:
    try:
        snapshot = current_snapshot(serving_dir)
    except (OSError, ValueError, KeyError):
        snapshot = None
    if snapshot is None:
        raise SnapshotUnavailable("No serving snapshot has been published yet; run the pipeline first.")
    return snapshot


@lru_cache(maxsize=32)
def _read_parquet(path: str) -> pl.DataFrame:
    return pl.read_parquet(path)


def read_table(snapshot: Snapshot, table: str) -> pl.DataFrame:
    try:
        path = snapshot.path(table)
    except KeyError:
        raise SnapshotUnavailable(f"Snapshot {snapshot.version} has no {table} table yet.") from None
    return _read_parquet(str(path))


def _finite(frame: pl.DataFrame) -> pl.DataFrame:
    # JSON has no NaN: a missing interval bound is sent as null.
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    return frame.with_columns(pl.col(floats).fill_nan(None)) if floats else frame


def demand_forecast(
    snapshot: Snapshot, *, store_id: str, horizon: int, product_id: str | None = None
) -> list[dict[str, Any]]:
    """Per-product forecast series for ``store_id`` over the first ``horizon`` days, units per day:
    ``[{"product_id", "model", "cutoff", "points": [{ds, yhat, lo_80, hi_80, lo_95, hi_95}]}]``."""
    frame = read_table(snapshot, FORECAST_TABLE)
    rows = frame.filter(pl.col("store_id") == store_id)
    if rows.is_empty():
        raise NotFound(f"No forecast for store {store_id} in snapshot {snapshot.version}")
    if product_id is not None:
        rows = rows.filter(pl.col("product_id") == product_id)
        if rows.is_empty():
            raise NotFound(f"No forecast for product {product_id} at store {store_id}")
    rows = _finite(rows.filter(pl.col("horizon_day") <= horizon).sort("product_id", "ds"))
    accuracy = series_accuracy(snapshot, store_id=store_id)
    series: list[dict[str, Any]] = []
    for (pid,), part in rows.partition_by("product_id", as_dict=True, maintain_order=True).items():
        head = part.row(0, named=True)
        series.append(
            {
                "product_id": pid,
                "model": head.get("model"),
                "cutoff": head.get("cutoff"),
                "pattern": head.get("pattern"),
                "confidence": head.get("confidence"),
                "accuracy": accuracy.get(pid),
                "points": part.select(FORECAST_POINT_COLUMNS).to_dicts(),
            }
        )
    return series


def series_accuracy(snapshot: Snapshot, *, store_id: str) -> dict[str, dict[str, Any]]:
    """Hold-out accuracy per product of ``store_id`` (``forecast_accuracy`` series rows); empty when the
    snapshot predates that table."""
    try:
        frame = read_table(snapshot, ACCURACY_TABLE)
    except SnapshotUnavailable:
        return {}
    rows = _finite(frame.filter((pl.col("level") == "series") & (pl.col("store_id") == store_id)))
    columns = [c for c in ACCURACY_COLUMNS if c in rows.columns]
    return {row["product_id"]: {c: row[c] for c in columns} for row in rows.iter_rows(named=True)}


def store_accuracy(snapshot: Snapshot, *, store_id: str) -> dict[str, Any] | None:
    """Hold-out accuracy of ``store_id``'s forecasts as a whole (``forecast_accuracy`` store row)."""
    try:
        frame = read_table(snapshot, ACCURACY_TABLE)
    except SnapshotUnavailable:
        return None
    rows = _finite(frame.filter((pl.col("level") == "store") & (pl.col("store_id") == store_id)))
    if rows.is_empty():
        return None
    row = rows.row(0, named=True)
    return {c: row[c] for c in ACCURACY_COLUMNS if c in row} | {"n_series": row.get("n_series")}


def _drivers(value: Any) -> list[str]:
    """The features behind an anomaly as a list. The pipeline writes them comma-joined, largest |z| first
    (``"refund_rate,void_rate"``); a list column or a JSON array is accepted as well."""
    if value is None:
        return []
    if isinstance(value, str):
        if value.startswith("["):
            try:
                return [str(v) for v in json.loads(value)]
            except ValueError:
                pass
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def sales_anomalies(
    snapshot: Snapshot,
    *,
    stores: frozenset[str] | None,
    store_id: str | None = None,
    since: date | None = None,
    severity: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Flagged store-days (``is_anomaly``), newest first then highest score, restricted to ``stores``
    (None: all) and optionally one ``store_id``, days on/after ``since``, one ``severity``."""
    frame = read_table(snapshot, ANOMALY_TABLE)
    if store_id is not None:
        frame = frame.filter(pl.col("store_id") == store_id)
        if frame.is_empty():
            raise NotFound(f"No anomaly scores for store {store_id} in snapshot {snapshot.version}")
    elif stores is not None:
        frame = frame.filter(pl.col("store_id").is_in(sorted(stores)))
    frame = frame.filter(pl.col("is_anomaly"))
    if since is not None:
        frame = frame.filter(pl.col("sale_date") >= since)
    if severity is not None:
        frame = frame.filter(pl.col("severity") == severity)
    frame = _finite(frame.sort(["sale_date", "anomaly_score"], descending=[True, True]).head(limit))
    rows = frame.to_dicts()
    for row in rows:
        if "drivers" in row:
            row["drivers"] = _drivers(row["drivers"])
    return rows

"""Reads of the current serving snapshot: demand forecasts and sales anomalies.

A snapshot version is immutable, so each Parquet table is read once per version and kept in an LRU cache
keyed by its path (which holds the version); a new publish is picked up on the next request.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from chainsync import snapshot_contract as contract
from chainsync.serving import Snapshot, current_snapshot

# The tables read here, by their names in the snapshot contract.
FORECAST_TABLE = contract.DEMAND_FORECAST.name
ACCURACY_TABLE = contract.FORECAST_ACCURACY.name
ACCURACY_COLUMNS = ("mase", "wape", "bias", "coverage_80", "coverage_95", "holdout_days")
ANOMALY_TABLE = contract.SALES_ANOMALIES.name
FORECAST_POINT_COLUMNS = ("ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95")


class SnapshotUnavailable(Exception):
    """No snapshot has been published yet, or it lacks the table asked for."""


class NotFound(Exception):
    """The snapshot holds nothing for the store or product asked for."""


# Where a store of the chain shows up.
STORE_TABLES = (contract.DIM_STORE.name, FORECAST_TABLE, ANOMALY_TABLE)


def require_known_store(snapshot: Snapshot, store_id: str) -> None:
    """Raise :class:`NotFound` (one message for every endpoint) when ``store_id`` is in none of the
    snapshot's store tables (``STORE_TABLES``). A store known there but with nothing of a kind (no flagged
    cashier shift, no insight) is not an error: its answer is empty."""
    seen_any = False
    for table in STORE_TABLES:
        try:
            frame = read_table(snapshot, table)
        except SnapshotUnavailable:
            continue
        seen_any = True
        if "store_id" in frame.columns and frame.filter(pl.col("store_id") == store_id).height:
            return
    if seen_any:
        raise NotFound(f"Unknown store {store_id}: not in snapshot {snapshot.version}")


def load_current(serving_dir: Path) -> Snapshot:
    try:
        snapshot = current_snapshot(serving_dir)
    except (OSError, ValueError, KeyError):
        snapshot = None
    if snapshot is None:
        raise SnapshotUnavailable("No serving snapshot has been published yet; run the pipeline first.")
    return snapshot


_cache: dict[str, tuple[float, pl.DataFrame]] = {}
_cache_lock = threading.Lock()
_cache_stats = {"hits": 0, "misses": 0}
CACHE_TTL_SECONDS = 300.0  # AI_MODEL_CACHE_TTL; set by the API at start-up (api.routes.ai.configure_cache)


def _read_parquet(path: str) -> pl.DataFrame:
    """A snapshot table, cached per path for ``CACHE_TTL_SECONDS``. The path holds the snapshot version, so
    a new snapshot is a new key and is read on the next request; the TTL bounds memory held by old ones."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and now - hit[0] < CACHE_TTL_SECONDS:
            _cache_stats["hits"] += 1
            return hit[1]
    frame = pl.read_parquet(path)
    with _cache_lock:
        _cache_stats["misses"] += 1
        _cache[path] = (now, frame)
        for key in [k for k, (t, _) in _cache.items() if now - t >= CACHE_TTL_SECONDS or len(_cache) > 64]:
            if key != path:
                _cache.pop(key, None)
    return frame


def clear_cache(keep_version: str | None = None) -> int:
    """Drop every cached table (but those of snapshot ``keep_version``, when given: a new snapshot makes
    the others dead weight); returns how many went."""
    with _cache_lock:
        gone = [path for path in _cache if keep_version is None or Path(path).parent.name != keep_version]
        for path in gone:
            del _cache[path]
        return len(gone)


def cache_info() -> dict[str, Any]:
    with _cache_lock:
        return {"entries": len(_cache), "ttl_seconds": CACHE_TTL_SECONDS, **_cache_stats}


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
        require_known_store(snapshot, store_id)
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


def forecast_totals(
    snapshot: Snapshot, *, stores: frozenset[str] | None, horizon: int
) -> list[dict[str, Any]]:
    """Store totals (units per day, reconciled with the series) over the first ``horizon`` days for the
    visible ``stores`` (None: every store, and then the chain total first):
    ``[{"level", "key", "accuracy", "points": [...]}]``."""
    frame = read_table(snapshot, TOTALS_TABLE).filter(pl.col("horizon_day") <= horizon)
    levels = ["store"] if stores is not None else ["chain", "store"]
    rows = frame.filter(pl.col("level").is_in(levels))
    if stores is not None:
        rows = rows.filter(pl.col("key").is_in(sorted(stores)))
    rows = _finite(rows.sort(pl.col("level") != "chain", "key", "ds"))
    out: list[dict[str, Any]] = []
    for (level, key), part in rows.partition_by(["level", "key"], as_dict=True, maintain_order=True).items():
        out.append(
            {
                "level": level,
                "key": key,
                "accuracy": store_accuracy(snapshot, store_id=str(key)) if level == "store" else None,
                "points": part.select(FORECAST_POINT_COLUMNS).to_dicts(),
            }
        )
    return out


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
            require_known_store(snapshot, store_id)
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
        for column in ("drivers", "detectors"):  # comma-joined by the pipeline, lists in the API
            if column in row:
                row[column] = _drivers(row[column])
    return rows


CASHIER_TABLE = contract.CASHIER_ANOMALIES.name
SECURITY_TABLE = contract.SECURITY_ANOMALIES.name
INVENTORY_TABLE = contract.INVENTORY_ANOMALIES.name
PERFORMANCE_TABLE = contract.PERFORMANCE_ANOMALIES.name
ACCESS_TABLE = contract.ACCESS_ANOMALIES.name
INSIGHTS_TABLE = contract.BUSINESS_INSIGHTS.name
REORDER_TABLE = contract.REORDER_SUGGESTIONS.name
TOTALS_TABLE = contract.DEMAND_FORECAST_TOTALS.name


def other_anomalies(
    snapshot: Snapshot,
    *,
    kind: str,
    stores: frozenset[str] | None,
    store_id: str | None = None,
    since: date | None = None,
    severity: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Flagged cashier shifts (``kind='cashier'``), source-IP days (``'security'``), shelf counts with
    stock missing (``'inventory'``), API endpoint-hours (``'performance'``, with ``hour_start``) or
    principal-days of unusual data access (``'access'``), newest first."""
    table, day = {
        "cashier": (CASHIER_TABLE, "sale_date"),
        "security": (SECURITY_TABLE, "event_date"),
        "inventory": (INVENTORY_TABLE, "counted_at"),
        "performance": (PERFORMANCE_TABLE, "hour_start"),
        "access": (ACCESS_TABLE, "access_date"),
    }[kind]
    frame = read_table(snapshot, table).filter(pl.col("is_anomaly"))
    if store_id is not None and "store_id" in frame.columns:
        require_known_store(snapshot, store_id)
    if "store_id" in frame.columns:
        if store_id is not None:
            frame = frame.filter(pl.col("store_id") == store_id)
        elif stores is not None:
            frame = frame.filter(pl.col("store_id").is_in(sorted(stores)))
    if since is not None:
        frame = frame.filter(pl.col(day) >= since)
    if severity is not None:
        frame = frame.filter(pl.col("severity") == severity)
    frame = _finite(frame.sort([day, "max_z"], descending=[True, True]).head(limit))
    rows = frame.drop(
        [c for c in ("first_seen", "last_seen", "previous_at") if c in frame.columns]
    ).to_dicts()
    for row in rows:
        row["drivers"] = _drivers(row.get("drivers"))
        value = row.pop(day)
        row["day"] = value.date() if hasattr(value, "date") and callable(value.date) else value
        if kind == "performance":
            row["hour_start"] = value
    return rows


def insights(
    snapshot: Snapshot,
    *,
    stores: frozenset[str] | None,
    store_id: str | None = None,
    category: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Business insights by priority, highest first. Managers see their stores' insights; chain-wide ones
    (no store, e.g. an attacking IP) only admins."""
    frame = read_table(snapshot, INSIGHTS_TABLE)
    if store_id is not None:
        require_known_store(snapshot, store_id)
        frame = frame.filter(pl.col("store_id") == store_id)
    elif stores is not None:
        frame = frame.filter(pl.col("store_id").is_in(sorted(stores)))
    if category is not None:
        frame = frame.filter(pl.col("category") == category)
    rows = _finite(frame.sort("priority", descending=True).head(limit)).to_dicts()
    for row in rows:
        try:
            row["evidence"] = json.loads(row["evidence"]) if row.get("evidence") else {}
        except ValueError:
            row["evidence"] = {"text": row["evidence"]}
    return rows


def weekly_band_factor(snapshot: Snapshot, *, store_id: str) -> float | None:
    """The hold-out factor on independent-days half-widths for ``store_id``'s 7-day 80 % band
    (``forecast_accuracy.weekly_band_factor``); None when the snapshot predates it."""
    try:
        frame = read_table(snapshot, ACCURACY_TABLE)
    except SnapshotUnavailable:
        return None
    if "weekly_band_factor" not in frame.columns:
        return None
    rows = _finite(frame.filter((pl.col("level") == "store") & (pl.col("store_id") == store_id)))
    value = rows["weekly_band_factor"][0] if rows.height else None
    return float(value) if value is not None else None


def weekly_band(days: pl.DataFrame, factor: float | None) -> tuple[float, float, float]:
    """The 7-day total of ``days`` (a store total's daily yhat, lo_80, hi_80: units) and its 80 % band:
    half-widths ``factor × sqrt(Σ hw_d²)`` per side (independent days, scaled by the factor measured on the
    hold-out weeks, since one store's daily errors are correlated); without a factor, the daily bounds
    summed (errors all in their tail on the same days: too wide, but never too narrow). Lower bound >= 0."""
    total = float(days["yhat"].sum())
    if factor is None:
        return total, float(days["lo_80"].sum()), float(days["hi_80"].sum())
    lo = factor * float(((days["yhat"] - days["lo_80"]) ** 2).sum()) ** 0.5
    hi = factor * float(((days["hi_80"] - days["yhat"]) ** 2).sum()) ** 0.5
    return total, max(total - lo, 0.0), total + hi


def dashboard(snapshot: Snapshot, *, stores: frozenset[str] | None) -> dict[str, Any]:
    """Per visible store: next-7-day forecast units (bottom-up total), hold-out accuracy, anomalies flagged
    over the last 7 days of data, products needing a reorder or at stockout risk; and the top insights."""
    sales_days = read_table(snapshot, ANOMALY_TABLE)
    totals = read_table(snapshot, TOTALS_TABLE).filter(pl.col("level") == "store")
    reorder = read_table(snapshot, REORDER_TABLE)
    visible = sorted(
        set(read_table(snapshot, FORECAST_TABLE)["store_id"].unique().to_list()) if stores is None else stores
    )
    last_day = sales_days["sale_date"].max() if sales_days.height else None
    out = []
    for store in visible:
        week = totals.filter((pl.col("key") == store) & (pl.col("horizon_day") <= 7))
        flagged = sales_days.filter((pl.col("store_id") == store) & pl.col("is_anomaly"))
        if last_day is not None:
            flagged = flagged.filter(pl.col("sale_date") > last_day - timedelta(days=7))  # type: ignore[operator]
        mine = reorder.filter(pl.col("store_id") == store)
        factor = weekly_band_factor(snapshot, store_id=store)
        total, lo, hi = weekly_band(week, factor) if week.height else (None, None, None)
        out.append(
            {
                "store_id": store,
                "forecast_units_7d": total,
                "forecast_units_7d_lo_80": lo,
                "forecast_units_7d_hi_80": hi,
                "forecast_units_7d_band_factor": factor,
                "accuracy": store_accuracy(snapshot, store_id=store),
                "anomalies_7d": flagged.height,
                "products_to_reorder": int(mine["needs_reorder"].sum()) if mine.height else 0,
                "products_at_stockout_risk": int(mine["stockout_risk"].sum()) if mine.height else 0,
            }
        )
    return {
        "stores": out,
        "top_insights": insights(snapshot, stores=stores, limit=5),
    }

"""Anomalies of every kind the snapshot holds, in one frame (day, subject, severity, score), each
explained by its drivers; and the data behind a sales anomaly. Which column dates, names and scores a
row of each anomaly table is the snapshot contract's.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import streamlit as st

from chainsync import snapshot_contract as contract
from chainsync.serving import Snapshot
from dashboards.data import CACHE_TTL, declared, products, scoped, store_scope, table, view_at

ANOMALY_TABLES = {
    "sales": contract.SALES_ANOMALIES.name,
    "cashier": contract.CASHIER_ANOMALIES.name,
    "inventory": contract.INVENTORY_ANOMALIES.name,
    "security": contract.SECURITY_ANOMALIES.name,
    "performance": contract.PERFORMANCE_ANOMALIES.name,
}


SEVERITY_ORDER = ["low", "medium", "high", "critical"]


def anomalies(snap: Snapshot, store_id: str | None, days: int | None) -> pl.DataFrame:
    """Flagged anomalies of every type the snapshot holds, one frame: type, day, store_id, severity, score,
    explanation (with the drivers' values against the store's median where the features are there)."""
    return _anomalies(str(snap.root), snap.version, store_scope(snap), store_id, days)


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _anomalies(
    root: str, version: str, stores: tuple[str, ...] | None, store_id: str | None, days: int | None
) -> pl.DataFrame:
    snap = view_at(root, stores)
    frames = []
    for kind, name in ANOMALY_TABLES.items():
        raw = table(snap, name)
        spec = contract.TABLES[name]
        date_col = declared(raw, spec.date_column)
        if raw.is_empty() or date_col is None:
            continue
        flagged = raw.filter(pl.col("is_anomaly")) if "is_anomaly" in raw.columns else raw
        flagged = scoped(snap, flagged, store_id=store_id)
        if days:
            last = raw[date_col].cast(pl.Date).max()
            flagged = flagged.filter(pl.col(date_col).cast(pl.Date) >= last - timedelta(days=days - 1))  # type: ignore[operator]
        if flagged.is_empty():
            continue
        if kind == "sales":
            explain = _explanations(raw, flagged)
        elif kind == "performance":
            explain = _performance_explanation(flagged)
        else:
            explain = _generic_explanation(flagged)
        score = declared(flagged, spec.score_column)
        entity = declared(flagged, spec.subject_column)
        frames.append(
            flagged.select(
                pl.lit(kind).alias("type"),
                pl.col(date_col).cast(pl.Date).alias("day"),
                (pl.col(entity).cast(pl.String) if entity else pl.lit(None, pl.String)).alias("subject"),
                (pl.col("store_id") if "store_id" in flagged.columns else pl.lit(None, pl.String)).alias(
                    "store_id"
                ),
                (pl.col("severity") if "severity" in flagged.columns else pl.lit("medium"))
                .cast(pl.String)
                .alias("severity"),
                (pl.col(score).cast(pl.Float64) if score else pl.lit(None, pl.Float64)).alias("score"),
            ).with_columns(explanation=explain)
        )
    if not frames:
        return pl.DataFrame(
            schema={
                "type": pl.String,
                "day": pl.Date,
                "subject": pl.String,
                "store_id": pl.String,
                "severity": pl.String,
                "score": pl.Float64,
                "explanation": pl.String,
            }
        )
    return pl.concat(frames).sort("day", "score", descending=[True, True], nulls_last=True)


def _explanations(raw: pl.DataFrame, flagged: pl.DataFrame) -> pl.Series:
    """'net revenue 1,234.00 vs usual 4,321.00; …' for each driver of each flagged store-day."""
    medians = {
        (r["store_id"], f): r[f]
        for r in raw.group_by("store_id")
        .agg(pl.col(f).median() for f in contract.STORE_DAY_FEATURES if f in raw.columns)
        .iter_rows(named=True)
        for f in contract.STORE_DAY_FEATURES
        if f in r
    }
    texts = []
    for row in flagged.iter_rows(named=True):
        parts = []
        for feature in [d for d in (row.get("drivers") or "").split(",") if d]:
            driver = contract.DRIVERS.get(feature, contract.Driver(feature.replace("_", " "), 1, "{}"))
            label, scale, fmt = driver.words, driver.scale, driver.fmt
            value, usual = row.get(feature), medians.get((row["store_id"], feature))
            if value is None or usual is None:
                parts.append(label)
            else:
                parts.append(f"{label} {fmt.format(value * scale)} vs usual {fmt.format(usual * scale)}")
        lo, hi = row.get("expected_revenue_lo_cents"), row.get("expected_revenue_hi_cents")
        if lo is not None and hi is not None:
            parts.append(f"expected net revenue {lo / 100:,.2f}–{hi / 100:,.2f}")
        texts.append("; ".join(parts) or "unusual combination of the day's features (no single driver)")
    return pl.Series("explanation", texts, dtype=pl.String)


def _generic_explanation(flagged: pl.DataFrame) -> pl.Series:
    """The drivers with their values ('failures 159; failed users 130')."""
    if "drivers" not in flagged.columns:
        return pl.Series("explanation", [""] * flagged.height, dtype=pl.String)
    texts = []
    for row in flagged.iter_rows(named=True):
        parts = []
        for feature in [d for d in (row.get("drivers") or "").split(",") if d]:
            value, label = row.get(feature), feature.replace("_", " ")
            if isinstance(value, float):
                parts.append(f"{label} {value:,.2f}")
            elif isinstance(value, int):
                parts.append(f"{label} {value:,}")
            else:
                parts.append(label if value is None else f"{label} {value}")
        texts.append("; ".join(parts) or "unusual combination of features (no single driver)")
    return pl.Series("explanation", texts, dtype=pl.String)


def _performance_explanation(flagged: pl.DataFrame) -> pl.Series:
    """'14:00 UTC, 420 requests: p95 1,450 ms vs usual 240 ms (expected up to 390 ms)' and/or the 5xx rate
    against its usual level, for each flagged endpoint-hour."""
    texts = []
    for row in flagged.iter_rows(named=True):
        drivers = (row.get("drivers") or "").split(",")
        parts = [f"{row['hour_start']:%H:00} UTC, {row['requests']:,} requests"]
        if "latency_p95" in drivers:
            parts.append(
                f"p95 {row['latency_ms_p95']:,.0f} ms vs usual {row['expected_latency_p95_ms']:,.0f} ms "
                f"(expected up to {row['expected_latency_p95_hi_ms']:,.0f} ms)"
            )
        if "error_rate" in drivers:
            parts.append(
                f"5xx {row['error_rate_5xx']:.1%} ({row['errors_5xx']:,}) vs usual "
                f"{row['expected_error_rate']:.1%} (expected up to {row['expected_error_rate_hi']:.1%})"
            )
        texts.append("; ".join(parts))
    return pl.Series("explanation", texts, dtype=pl.String)


def anomaly_context(
    snap: Snapshot, store_id: str, day: date, window: int = 14
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The data behind a sales anomaly: the store's daily features ``window`` days either side, and the
    store-day's product lines (fct_sales_daily) by net revenue."""
    features = table(snap, "sales_anomalies")
    around = pl.DataFrame()
    if not features.is_empty():
        around = features.filter(
            (pl.col("store_id") == store_id)
            & pl.col("sale_date").is_between(day - timedelta(days=window), day + timedelta(days=window))
        ).sort("sale_date")
    lines = table(snap, "fct_sales_daily")
    if not lines.is_empty():
        lines = (
            lines.filter((pl.col("store_id") == store_id) & (pl.col("sale_date") == day))
            .join(products(snap), on="product_id", how="left")
            .sort("net_revenue_cents", descending=True)
        )
    return around, lines

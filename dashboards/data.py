"""Data access for the dashboards: the current serving snapshot, read-only.

Snapshot tables are held once per snapshot version (``st.cache_resource``: one shared, never-mutated polars
frame, no copy per rerun); derived figures are cached per version and arguments (``st.cache_data``). A newly
published snapshot is picked up on the next rerun and a cached figure is never served for the wrong version.
Dashboards never open the warehouse.

Every function takes the :class:`Snapshot` first and answers an empty frame when the snapshot lacks a table
(pages test :func:`has` and say so); money is in cents, quantities in units per day. Tables and columns are
read by the names :mod:`chainsync.snapshot_contract` declares (who may see a table, the column dating a
row, an anomaly's subject and score), never guessed among candidates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from chainsync import snapshot_contract as contract
from chainsync.risk import daily_failure_level, level_rank, worst_level
from chainsync.serving import MANIFEST, Snapshot, current_snapshot
from chainsync.settings import get_settings

CACHE_TTL = 3600

# --- who sees which rows ------------------------------------------------------------------------------------
# A store-scoped reader (a manager) sees, of each table: the rows of their stores when it has a `store_id`
# column; the store-level rows of their stores when it is keyed by (level, key) like demand_forecast_totals
# (chain and category totals include other stores); the whole table when the contract calls it shared
# reference data; and nothing of any other table, so a table added to the snapshot later stays hidden until
# it is classified. The contract's admin tables (security and the system's own health) are for
# administrators only, whatever their columns.
SHARED_TABLES = contract.SHARED_TABLES
ADMIN_TABLES = contract.ADMIN_TABLES


@dataclass(frozen=True)
class View(Snapshot):
    """A snapshot as one reader may see it: ``stores`` None is every store (administrators), else only
    these stores' rows of every table (see the rules above)."""

    stores: tuple[str, ...] | None = None


def snapshot(stores: tuple[str, ...] | None) -> View | None:
    """The snapshot ``current.json`` names right now (a cheap read of two small JSON files), as a reader
    limited to ``stores`` sees it (None: every store). Callers always say which stores."""
    snap = current_snapshot(get_settings().serving)
    return None if snap is None else View(root=snap.root, manifest=snap.manifest, stores=stores)


def store_scope(snap: Snapshot) -> tuple[str, ...] | None:
    """The stores ``snap`` is limited to (None: every store; a plain Snapshot is unscoped)."""
    return snap.stores if isinstance(snap, View) else None


def visible(stores: tuple[str, ...] | None, name: str) -> bool:
    """Whether a reader limited to ``stores`` may see table ``name`` at all."""
    return stores is None or name not in ADMIN_TABLES


def has(snap: Snapshot, name: str) -> bool:
    return name in snap.manifest["tables"] and visible(store_scope(snap), name)


@st.cache_resource(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _raw(root: str, version: str, file: str) -> pl.DataFrame:
    # ``version`` is part of the cache key: a new snapshot never hits an old entry.
    return pl.read_parquet(Path(root) / file)


@st.cache_resource(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _table(root: str, version: str, stores: tuple[str, ...] | None, name: str, file: str) -> pl.DataFrame:
    frame = _raw(root, version, file)
    if stores is None:
        return frame
    if "store_id" in frame.columns:
        return frame.filter(pl.col("store_id").is_in(list(stores)))
    if {"level", "key"} <= set(frame.columns):
        return frame.filter((pl.col("level") == "store") & pl.col("key").is_in(list(stores)))
    if name in SHARED_TABLES:
        return frame
    return frame.head(0)  # not classified: hidden from store-scoped readers


def table(snap: Snapshot, name: str) -> pl.DataFrame:
    """A snapshot table as a polars frame, limited to the rows the snapshot's reader may see (empty frame
    if the snapshot lacks it or hides it from this reader). Do not mutate it."""
    if not has(snap, name):
        return pl.DataFrame()
    file = snap.manifest["tables"][name]["file"]
    return _table(str(snap.root), snap.version, store_scope(snap), name, file)


# --- dimensions -------------------------------------------------------------------------------------------


def store_ids(snap: Snapshot) -> list[str]:
    stores = table(snap, "dim_store")
    if stores.is_empty():
        sales = table(snap, "fct_sales_daily")
        return sales["store_id"].unique().sort().to_list() if not sales.is_empty() else []
    return stores["store_id"].sort().to_list()


def store_names(snap: Snapshot) -> dict[str, str]:
    stores = table(snap, contract.DIM_STORE.name)
    if "store_name" not in stores.columns:
        return {}
    return dict(zip(stores["store_id"].to_list(), stores["store_name"].to_list(), strict=True))


def categories(snap: Snapshot) -> list[str]:
    products = table(snap, "dim_product")
    if "category" not in products.columns:
        return []
    return products["category"].drop_nulls().unique().sort().to_list()


def products(snap: Snapshot, category: str | None = None) -> pl.DataFrame:
    """product_id, product_name, category (of ``category`` when given)."""
    dim = table(snap, "dim_product")
    if dim.is_empty():
        return pl.DataFrame(
            schema={"product_id": pl.String, "product_name": pl.String, "category": pl.String}
        )
    named = "product_name" in dim.columns
    out = dim.select(
        "product_id",
        (pl.col("product_name") if named else pl.lit(None, pl.String)).alias("product_name"),
        (pl.col("category") if "category" in dim.columns else pl.lit(None, pl.String)).alias("category"),
    )
    if category:
        out = out.filter(pl.col("category") == category)
    return out.sort("product_id")


def _declared(frame: pl.DataFrame, column: str | None) -> str | None:
    """``column`` (a name the contract declares) when ``frame`` holds it, else None (a table not yet in the
    snapshot is an empty frame)."""
    return column if column is not None and column in frame.columns else None


# --- scoping by the shared filters ----------------------------------------------------------------------


def scoped(
    snap: Snapshot,
    frame: pl.DataFrame,
    *,
    store_id: str | None = None,
    category: str | None = None,
    product_id: str | None = None,
    date_col: str | None = None,
    days: int | None = None,
) -> pl.DataFrame:
    """``frame`` narrowed to a store, a category (through dim_product), a product and the last ``days``
    days before its own latest ``date_col`` (the snapshot's data, not the wall clock). Filters whose
    column the frame lacks are skipped."""
    if frame.is_empty():
        return frame
    if store_id and "store_id" in frame.columns:
        frame = frame.filter(pl.col("store_id") == store_id)
    if category:
        if "category" in frame.columns:
            frame = frame.filter(pl.col("category") == category)
        elif "product_id" in frame.columns:
            ids = products(snap, category)["product_id"]
            frame = frame.filter(pl.col("product_id").is_in(ids.implode()))
    if product_id and "product_id" in frame.columns:
        frame = frame.filter(pl.col("product_id") == product_id)
    if days and date_col and date_col in frame.columns and frame.height:
        last = frame[date_col].max()
        if last is not None:
            first = (last.date() if hasattr(last, "date") and callable(last.date) else last) - timedelta(
                days=days - 1
            )
            frame = frame.filter(pl.col(date_col).cast(pl.Date) >= first)
    return frame


# --- sales and forecast -----------------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _sales_history(
    root: str,
    version: str,
    stores: tuple[str, ...] | None,
    store_id: str | None,
    category: str | None,
    product_id: str | None,
) -> pl.DataFrame:
    snap = _snap(root, stores)
    sales = scoped(
        snap, table(snap, "fct_sales_daily"), store_id=store_id, category=category, product_id=product_id
    )
    if sales.is_empty():
        return pl.DataFrame(
            schema={"sale_date": pl.Date, "units_sold": pl.Int64, "net_revenue_cents": pl.Int64}
        )
    return (
        sales.group_by("sale_date")
        .agg(pl.col("units_sold").sum(), pl.col("net_revenue_cents").sum())
        .sort("sale_date")
    )


def sales_history(
    snap: Snapshot, store_id: str | None, product_id: str | None = None, category: str | None = None
) -> pl.DataFrame:
    """Daily units and net revenue (cents) for the chain, a store, a category or a product."""
    return _sales_history(str(snap.root), snap.version, store_scope(snap), store_id, category, product_id)


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _forecast(
    root: str,
    version: str,
    stores: tuple[str, ...] | None,
    store_id: str | None,
    category: str | None,
    product_id: str | None,
    horizon: int,
) -> pl.DataFrame:
    snap = _snap(root, stores)
    totals = table(snap, "demand_forecast_totals")
    level = _total_level(store_id, category, product_id)
    if level is not None and {"level", "key"} <= set(totals.columns):
        picked = totals.filter(
            (pl.col("level") == level[0]) & (pl.col("key") == level[1]) & (pl.col("horizon_day") <= horizon)
        )
        if picked.height:
            return picked.select("ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95").sort("ds")
    fc = table(snap, "demand_forecast")
    if fc.is_empty():
        return fc
    fc = scoped(
        snap,
        fc.filter(pl.col("horizon_day") <= horizon),
        store_id=store_id,
        category=category,
        product_id=product_id,
    )
    return (
        fc.group_by("ds")
        .agg(pl.col(c).sum() for c in ("yhat", "lo_80", "hi_80", "lo_95", "hi_95"))
        .sort("ds")
    )


def _total_level(
    store_id: str | None, category: str | None, product_id: str | None
) -> tuple[str, str] | None:
    """The demand_forecast_totals (level, key) of a selection, if it is one the pipeline reconciles."""
    if product_id is not None or (store_id and category):
        return None
    if store_id:
        return ("store", store_id)
    if category:
        return ("category", category)
    return ("chain", "chain")


def forecast(
    snap: Snapshot,
    store_id: str | None,
    product_id: str | None,
    horizon: int,
    category: str | None = None,
) -> pl.DataFrame:
    """Forecast units per day for the selection, with 80 and 95 % bounds: the pipeline's coherent totals
    (demand_forecast_totals) for the chain, a store or a category when the snapshot has them; otherwise the
    series summed bottom-up with summed bounds (a conservative, wide interval for a total)."""
    return _forecast(str(snap.root), snap.version, store_scope(snap), store_id, category, product_id, horizon)


def models_used(
    snap: Snapshot, store_id: str | None, product_id: str | None, category: str | None = None
) -> pl.DataFrame:
    """How many series each forecasting model serves in the selection."""
    fc = scoped(
        snap, table(snap, "demand_forecast"), store_id=store_id, category=category, product_id=product_id
    )
    if fc.is_empty() or "model" not in fc.columns:
        return pl.DataFrame()
    extra = [c for c in ("pattern", "confidence") if c in fc.columns]
    per_series = fc.group_by("store_id", "product_id").agg(pl.col("model", *extra).first())
    aggs = [pl.len().alias("series")]
    if "confidence" in extra:
        aggs.append(pl.col("confidence").mean().round(3).alias("mean_confidence"))
    if "pattern" in extra:
        aggs.append(pl.col("pattern").unique().sort().str.join(", ").alias("demand_patterns"))
    return per_series.group_by("model").agg(aggs).sort(["series", "model"], descending=[True, False])


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _drill(
    root: str,
    version: str,
    stores: tuple[str, ...] | None,
    store_id: str | None,
    category: str | None,
    days: int | None,
) -> pl.DataFrame:
    snap = _snap(root, stores)
    sales = scoped(
        snap,
        table(snap, "fct_sales_daily"),
        store_id=store_id,
        category=category,
        date_col="sale_date",
        days=days,
    )
    if sales.is_empty():
        return pl.DataFrame()
    if store_id is None:
        level = "store_id"
        names = pl.DataFrame(
            {"store_id": list(store_names(snap)), "name": list(store_names(snap).values())},
            schema={"store_id": pl.String, "name": pl.String},
        )
    else:
        prods = products(snap).rename({"product_name": "name"})
        sales = sales.join(prods.select("product_id", "category"), on="product_id", how="left")
        level = "category" if category is None else "product_id"
        names = prods.select("product_id", "name") if level == "product_id" else None
    out = (
        sales.group_by(level)
        .agg(
            pl.col("units_sold").sum().alias("units"),
            (pl.col("net_revenue_cents").sum() / 100).alias("net_revenue"),
            pl.col("sale_date").n_unique().alias("days"),
        )
        .sort("net_revenue", descending=True)
    )
    if names is not None and not names.is_empty():
        out = out.join(names, on=level, how="left").select(level, "name", "units", "net_revenue", "days")
    total = out["net_revenue"].sum()
    return out.with_columns(share=pl.col("net_revenue") / total if total else pl.lit(0.0))


def drill(snap: Snapshot, store_id: str | None, category: str | None, days: int | None) -> pl.DataFrame:
    """The next level down from the selection: stores of the chain, categories of a store, products of a
    store's category; units, net revenue and revenue share over the period, largest first."""
    return _drill(str(snap.root), snap.version, store_scope(snap), store_id, category, days)


def accuracy(
    snap: Snapshot, store_id: str | None, product_id: str | None, category: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Backtest accuracy (forecast_accuracy) for the selection: the row(s) at its own level (chain, store,
    category or series) for the headline, and the series rows within it, worst MASE first."""
    acc = table(snap, "forecast_accuracy")
    if "level" not in acc.columns:
        rows = scoped(snap, acc, store_id=store_id, category=category, product_id=product_id)
        return rows, rows
    series = scoped(
        snap,
        acc.filter(pl.col("level") == "series"),
        store_id=store_id,
        category=category,
        product_id=product_id,
    )
    if "mase" in series.columns:
        series = series.sort("mase", descending=True, nulls_last=True)
    if product_id is not None or (store_id and category):
        return series, series
    if store_id:
        head = acc.filter((pl.col("level") == "store") & (pl.col("store_id") == store_id))
    elif category:
        head = acc.filter((pl.col("level") == "category") & (pl.col("category") == category))
    else:
        head = acc.filter(pl.col("level") == "chain")
    return (head if head.height else series), series


def accuracy_summary(acc: pl.DataFrame) -> dict[str, float]:
    """Mean of each accuracy metric the table has (MASE, WAPE, bias, coverage), over its rows."""
    out: dict[str, float] = {}
    for col in acc.columns:
        low = col.lower()
        if (
            any(k in low for k in ("mase", "wape", "bias", "coverage", "smape", "mae"))
            and acc[col].dtype.is_numeric()
        ):
            value = acc[col].drop_nulls().drop_nans().mean() if acc[col].dtype.is_float() else acc[col].mean()
            if value is not None:
                out[col] = float(value)  # type: ignore[arg-type]
    return out


# --- overview ---------------------------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _store_days(
    root: str, version: str, stores: tuple[str, ...] | None, store_id: str | None
) -> pl.DataFrame:
    snap = _snap(root, stores)
    features = table(snap, "sales_anomalies")
    if {"net_revenue_cents", "transactions"} <= set(features.columns) and features.height:
        days = (
            scoped(snap, features, store_id=store_id)
            .group_by("sale_date")
            .agg(pl.col("net_revenue_cents").sum(), pl.col("transactions").sum())
        )
        units = (
            scoped(snap, table(snap, "fct_sales_daily"), store_id=store_id)
            .group_by("sale_date")
            .agg(pl.col("units_sold").sum())
        )
        days = days.join(units, on="sale_date", how="left")
    else:
        # Without store-day features a transaction spanning products counts once per product (upper bound).
        sales = scoped(snap, table(snap, "fct_sales_daily"), store_id=store_id)
        if sales.is_empty():
            return pl.DataFrame()
        days = sales.group_by("sale_date").agg(
            pl.col("net_revenue_cents").sum(), pl.col("transactions").sum(), pl.col("units_sold").sum()
        )
    return days.with_columns(
        avg_basket_cents=pl.col("net_revenue_cents")
        / pl.when(pl.col("transactions") > 0).then(pl.col("transactions"))
    ).sort("sale_date")


def store_days(snap: Snapshot, store_id: str | None) -> pl.DataFrame:
    """Per day: net revenue (cents), transactions (sales, not refunds or voids), units, average basket."""
    return _store_days(str(snap.root), snap.version, store_scope(snap), store_id)


def next_day_forecast(snap: Snapshot, store_id: str | None) -> dict[str, Any] | None:
    """The first forecast day: its date and summed yhat and 80 % bounds (units)."""
    fc = forecast(snap, store_id, None, 1)
    if fc.is_empty():
        return None
    return fc.row(0, named=True)


def forecast_on(snap: Snapshot, store_id: str | None, day: date) -> dict[str, Any] | None:
    """The forecast for one day (summed yhat and 80 % bounds, units), or None when no forecast covers it."""
    fc = forecast(snap, store_id, None, 90)
    if fc.is_empty():
        return None
    row = fc.filter(pl.col("ds") == day)
    return row.row(0, named=True) if row.height else None


def threat(snap: Snapshot) -> dict[str, Any]:
    """Threat level from security data: fct_ip_risk's highest risk when present, else the failure count on
    the latest day of fct_security_events (:func:`chainsync.risk.daily_failure_level`), raised by the security
    anomaly model."""
    risk = table(snap, contract.FCT_IP_RISK.name)
    score_col = _declared(risk, contract.FCT_IP_RISK.score_column)
    level_col = _declared(risk, "risk_level")
    if level_col and risk.height:
        return {"level": worst_level(risk[level_col].to_list()), "basis": "fct_ip_risk threat level"}
    events = table(snap, "fct_security_events")
    if events.is_empty():
        return {"level": None, "basis": "no security events in the snapshot"}
    last = events["event_date"].max()
    day = events.filter(pl.col("event_date") == last)
    failures = int(day["is_failure"].sum())
    level = daily_failure_level(failures)
    basis = f"{failures} failed security events on {last}"
    # The security anomaly model can raise it: a critical flag that day is critical, high is high.
    sec = table(snap, "security_anomalies")
    if {"is_anomaly", "severity", "event_date"} <= set(sec.columns):
        worst = sec.filter(pl.col("is_anomaly") & (pl.col("event_date") == last))["severity"].to_list()
        raised = [lvl for lvl in ("critical", "high") if lvl in worst]
        if raised and level_rank(raised[0]) > level_rank(level):
            level = raised[0]
            basis += f"; {worst.count(raised[0])} {raised[0]} security anomalies that day"
    if score_col is not None and risk.height:
        basis += f"; highest IP risk {float(risk[score_col].max()):.2f}"  # type: ignore[arg-type]
    return {"level": level, "basis": basis, "failures": failures, "day": last}


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


# --- anomalies --------------------------------------------------------------------------------------------

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
    snap = _snap(root, stores)
    frames = []
    for kind, name in ANOMALY_TABLES.items():
        raw = table(snap, name)
        declared = contract.TABLES[name]
        date_col = _declared(raw, declared.date_column)
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
        score = _declared(flagged, declared.score_column)
        entity = _declared(flagged, declared.subject_column)
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


_FEATURE_LABELS = {
    "net_revenue_cents": ("net revenue", 0.01, "{:,.2f}"),
    "transactions": ("transactions", 1, "{:,.0f}"),
    "avg_basket_cents": ("average basket", 0.01, "{:,.2f}"),
    "refund_rate": ("refund rate", 100, "{:.1f} %"),
    "void_rate": ("void rate", 100, "{:.1f} %"),
    "discount_rate": ("discount rate", 100, "{:.1f} %"),
}


def _explanations(raw: pl.DataFrame, flagged: pl.DataFrame) -> pl.Series:
    """'net revenue 1,234.00 vs usual 4,321.00; …' for each driver of each flagged store-day."""
    medians = {
        (r["store_id"], f): r[f]
        for r in raw.group_by("store_id")
        .agg(pl.col(f).median() for f in _FEATURE_LABELS if f in raw.columns)
        .iter_rows(named=True)
        for f in _FEATURE_LABELS
        if f in r
    }
    texts = []
    for row in flagged.iter_rows(named=True):
        parts = []
        for feature in [d for d in (row.get("drivers") or "").split(",") if d]:
            label, scale, fmt = _FEATURE_LABELS.get(feature, (feature, 1, "{}"))
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


# --- inventory --------------------------------------------------------------------------------------------


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _stock_cover(
    root: str, version: str, stores: tuple[str, ...] | None, store_id: str | None, category: str | None
) -> pl.DataFrame:
    snap = _snap(root, stores)
    stock = scoped(snap, table(snap, "fct_stock_levels"), store_id=store_id, category=category)
    if stock.is_empty():
        return pl.DataFrame()
    sales = scoped(
        snap,
        table(snap, "fct_sales_daily"),
        store_id=store_id,
        category=category,
        date_col="sale_date",
        days=28,
    )
    demand = sales.group_by("store_id", "product_id").agg(
        (pl.col("units_sold").sum() / 28).alias("avg_daily_units")
    )
    fc = table(snap, "demand_forecast")
    if not fc.is_empty():
        demand_fc = (
            scoped(snap, fc.filter(pl.col("horizon_day") <= 28), store_id=store_id, category=category)
            .group_by("store_id", "product_id")
            .agg(pl.col("yhat").mean().alias("forecast_daily_units"))
        )
        demand = demand.join(demand_fc, on=["store_id", "product_id"], how="full", coalesce=True)
    else:
        demand = demand.with_columns(forecast_daily_units=pl.lit(None, pl.Float64))
    rate = pl.coalesce(pl.col("forecast_daily_units"), pl.col("avg_daily_units"))
    out = (
        stock.select(
            "store_id",
            "product_id",
            "on_hand_units",
            *[c for c in ("last_counted_at", "last_sale_at") if c in stock.columns],
        )
        .join(demand, on=["store_id", "product_id"], how="left")
        .join(products(snap), on="product_id", how="left")
        .with_columns(
            days_of_cover=pl.when(rate > 0).then(pl.col("on_hand_units").clip(lower_bound=0) / rate),
            stock_out=pl.col("on_hand_units") <= 0,
        )
    )
    return out.sort("days_of_cover", nulls_last=True)


def stock_cover(snap: Snapshot, store_id: str | None, category: str | None) -> pl.DataFrame:
    """Per store × product: on hand, average daily units over the last 28 days, forecast daily units (next
    28 days), days of cover (on hand ÷ forecast rate, else the recent rate) and whether it is out of stock."""
    return _stock_cover(str(snap.root), snap.version, store_scope(snap), store_id, category)


# --- security ---------------------------------------------------------------------------------------------


def security_events(snap: Snapshot, store_id: str | None, days: int | None) -> pl.DataFrame:
    return scoped(
        snap, table(snap, "fct_security_events"), store_id=store_id, date_col="event_date", days=days
    )


def risky(events: pl.DataFrame, by: str, limit: int = 15) -> pl.DataFrame:
    """Sources ranked by failures: failed events, distinct users tried (or IPs used), last seen."""
    if events.is_empty() or by not in events.columns:
        return pl.DataFrame()
    other = "username" if by == "source_ip" else "source_ip"
    return (
        events.filter(pl.col(by).is_not_null())
        .group_by(by)
        .agg(
            pl.col("is_failure").sum().alias("failures"),
            pl.len().alias("events"),
            pl.col(other).n_unique().alias(f"distinct_{'users' if other == 'username' else 'ips'}"),
            pl.col("security_kind").unique().sort().str.join(", ").alias("kinds"),
            pl.col("occurred_at").max().alias("last_seen"),
        )
        .filter(pl.col("failures") > 0)
        .sort(["failures", "events"], descending=True)
        .head(limit)
    )


def ip_risk(snap: Snapshot) -> pl.DataFrame:
    risk = table(snap, contract.FCT_IP_RISK.name)
    col = _declared(risk, contract.FCT_IP_RISK.score_column)
    return risk.sort(col, descending=True, nulls_last=True) if col else risk


def blocks_in_force(risk: pl.DataFrame) -> pl.DataFrame:
    """fct_ip_risk rows whose block has not expired (``blocked_until`` after now, or ``is_blocked``)."""
    if risk.is_empty():
        return risk
    if "blocked_until" in risk.columns:
        until = pl.col("blocked_until")
        if risk["blocked_until"].dtype == pl.Datetime and risk["blocked_until"].dtype.time_zone is None:  # type: ignore[attr-defined]
            until = until.dt.replace_time_zone("UTC")
        return risk.filter(until.is_not_null() & (until > pl.lit(_now())))
    if "is_blocked" in risk.columns:
        return risk.filter(pl.col("is_blocked"))
    return risk.head(0)


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- sync -------------------------------------------------------------------------------------------------


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


# --- system -----------------------------------------------------------------------------------------------


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
        declared = contract.TABLES.get(name)
        date_col = _declared(frame, declared.date_column if declared else None)
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


def _snap(root: str, stores: tuple[str, ...] | None) -> View:
    """The snapshot at ``root`` limited to ``stores`` (for cached functions keyed by plain values)."""
    return View(root=Path(root), manifest=json.loads((Path(root) / MANIFEST).read_text()), stores=stores)


def evidence_text(evidence: Any) -> str:
    """An insight's evidence for people: a JSON object becomes 'key: value · key: value'."""
    if isinstance(evidence, str) and evidence.startswith("{"):
        try:
            parsed = json.loads(evidence)
        except ValueError:
            return evidence
        parts = []
        for key, value in parsed.items():
            label = key.replace("_", " ")
            if isinstance(value, float):
                value = f"{value / 100:,.2f}" if key.endswith("_cents") else f"{value:,.3g}"
            elif isinstance(value, int) and key.endswith("_cents"):
                value = f"{value / 100:,.2f}"
            parts.append(f"{label.removesuffix(' cents')}: {value}")
        return " · ".join(parts)
    return str(evidence)


def flagged_ips(snap: Snapshot, days: int | None) -> pl.DataFrame:
    """IPs the security anomaly model flagged in the period: days flagged, worst severity, highest score,
    failures and users tried, the drivers, last seen; riskiest first."""
    sec = scoped(snap, table(snap, "security_anomalies"), date_col="event_date", days=days)
    if sec.is_empty() or "is_anomaly" not in sec.columns:
        return pl.DataFrame()
    order = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    flagged = sec.filter(pl.col("is_anomaly")).with_columns(
        rank=pl.col("severity").replace_strict(order, default=0, return_dtype=pl.Int8)
    )
    users = _declared(flagged, "failed_users")
    return (
        flagged.group_by("source_ip")
        .agg(
            pl.len().alias("days_flagged"),
            pl.col("severity").sort_by("rank").last().alias("worst_severity"),
            pl.col("anomaly_score").max().round(2).alias("max_score"),
            pl.col("failures").sum().alias("failures") if "failures" in flagged.columns else pl.lit(None),
            (pl.col(users).max() if users else pl.lit(None)).alias("most_users_tried"),
            pl.col("drivers").drop_nulls().unique().sort().str.join(" | ").alias("drivers"),
            pl.col(_declared(flagged, "last_seen") or "event_date").max().alias("last_seen"),
            pl.col("rank").max().alias("_rank"),
        )
        .sort(["_rank", "max_score"], descending=True)
        .drop("_rank")
    )


def unusual_access(snap: Snapshot, store_id: str | None, days: int | None) -> pl.DataFrame:
    """Users and terminals whose data access departed from their own history (``access_anomalies``), in
    the period (and, with a store chosen, those that read it): who, which day, what stood out, the day's
    figures beside the principal's usual ones; most severe first."""
    scores = scoped(snap, table(snap, "access_anomalies"), date_col="access_date", days=days)
    if scores.is_empty() or "is_anomaly" not in scores.columns:
        return pl.DataFrame()
    flagged = scores.filter(pl.col("is_anomaly"))
    if store_id:
        flagged = flagged.filter(pl.col("stores").fill_null("").str.split(",").list.contains(store_id))
    order = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    return (
        flagged.with_columns(_rank=pl.col("severity").replace_strict(order, default=0, return_dtype=pl.Int8))
        .sort(["_rank", "max_z", "access_date"], descending=True)
        .select(
            "principal",
            pl.col("principal_kind").alias("kind"),
            "role",
            pl.col("access_date").alias("day"),
            "severity",
            pl.col("drivers").str.replace_all(",", ", ").alias("what stood out"),
            "reads",
            pl.col("expected_reads").round(1).alias("usual reads"),
            pl.col("distinct_stores").alias("stores read"),
            pl.col("expected_stores").alias("usual stores"),
            pl.col("new_stores").alias("never read before"),
            (pl.col("off_hours_share") * 100).round(0).alias("off hours %"),
            (pl.col("expected_off_hours_share") * 100).round(0).alias("usual off hours %"),
            "stores",
            pl.col("max_z").round(1).alias("score"),
        )
    )

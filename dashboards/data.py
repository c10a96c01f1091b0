"""Data access for the dashboards: the current serving snapshot, read-only, as the logged-in reader may see
it, plus the dimensions the filters offer. What the pages compute from it lives by domain in
:mod:`dashboards.domain`.

Snapshot tables are held once per snapshot version (``st.cache_resource``: one shared, never-mutated polars
frame, no copy per rerun); derived figures (in :mod:`dashboards.domain`) are cached per version and
arguments (``st.cache_data``, keyed by plain values: :func:`view_at` rebuilds the view). A newly published
snapshot is picked up on the next rerun and a cached figure is never served for the wrong version.
Dashboards never open the warehouse.

Every function takes the :class:`Snapshot` first and answers an empty frame when the snapshot lacks a table
(pages test :func:`has` and say so); money is in cents, quantities in units per day. Tables and columns are
read by the names :mod:`chainsync.snapshot_contract` declares (who may see a table, the column dating a
row, an anomaly's subject and score), never guessed among candidates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import polars as pl
import streamlit as st

from chainsync import snapshot_contract as contract
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


def declared(frame: pl.DataFrame, column: str | None) -> str | None:
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


def view_at(root: str, stores: tuple[str, ...] | None) -> View:
    """The snapshot at ``root`` limited to ``stores`` (for cached functions keyed by plain values)."""
    return View(root=Path(root), manifest=json.loads((Path(root) / MANIFEST).read_text()), stores=stores)

"""A small, hand-made but realistic snapshot (two stores, three products in two categories, 60 days) published
with the pipeline's own ``publish_snapshot``, so every figure a page shows can be checked against it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from streamlit.testing.v1 import AppTest

from dashboards.auth import SESSION_KEY, Session

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")
START = date(2026, 1, 1)
DAYS = 60
LAST = START + timedelta(days=DAYS - 1)
STORES = ("S001", "S002")
PRODUCTS = {
    "P0001": ("Coffee", "Drinks", 300),
    "P0002": ("Tea", "Drinks", 250),
    "P0003": ("Bread", "Bakery", 400),
}
# An API that is certainly not listening: the pages must say so, not fail.
DEAD_API = "http://127.0.0.1:9"


def units(store: str, product: str, i: int) -> int:
    base = {"P0001": 5, "P0002": 2, "P0003": 3}[product] * (2 if store == "S001" else 1)
    return base + i % 7


def snapshot_tables() -> dict[str, pl.DataFrame]:
    days = [START + timedelta(days=i) for i in range(DAYS)]
    sales_rows = [
        {
            "store_id": s,
            "product_id": p,
            "sale_date": d,
            "units_sold": units(s, p, i),
            "net_revenue_cents": units(s, p, i) * PRODUCTS[p][2],
            "transactions": units(s, p, i) // 2 + 1,
        }
        for s in STORES
        for p in PRODUCTS
        for i, d in enumerate(days)
    ]
    sales = pl.DataFrame(sales_rows)
    fc_rows = [
        {
            "store_id": s,
            "product_id": p,
            "ds": LAST + timedelta(days=h),
            "horizon_day": h,
            "yhat": 3.0,
            "lo_80": 2.0,
            "hi_80": 4.0,
            "lo_95": 1.0,
            "hi_95": 5.0,
            "model": "AutoTheta" if p != "P0002" else "CrostonOptimized",
        }
        for s in STORES
        for p in PRODUCTS
        for h in range(1, 91)
    ]
    # Store-day features as the anomaly asset writes them; one planted anomaly per store.
    store_days = (
        sales.group_by("store_id", "sale_date")
        .agg(pl.col("net_revenue_cents").sum(), pl.col("transactions").sum())
        .sort("store_id", "sale_date")
    )
    anomalies = (
        store_days.with_columns(
            avg_basket_cents=pl.col("net_revenue_cents") / pl.col("transactions"),
            refund_rate=pl.lit(0.02),
            void_rate=pl.lit(0.01),
            discount_rate=pl.lit(0.05),
            anomaly_score=pl.lit(1.0),
            threshold=pl.lit(10.0),
            is_anomaly=pl.lit(False),
            severity=pl.lit("low"),
            drivers=pl.lit(""),
        )
        .with_columns(
            pl.when(pl.col("sale_date") == START + timedelta(days=40))
            .then(pl.lit(True))
            .otherwise(pl.col("is_anomaly"))
            .alias("is_anomaly")
        )
        .with_columns(
            severity=pl.when(pl.col("is_anomaly"))
            .then(pl.when(pl.col("store_id") == "S001").then(pl.lit("critical")).otherwise(pl.lit("high")))
            .otherwise(pl.col("severity")),
            anomaly_score=pl.when(pl.col("is_anomaly")).then(pl.lit(25.0)).otherwise(pl.col("anomaly_score")),
            drivers=pl.when(pl.col("is_anomaly"))
            .then(pl.lit("net_revenue_cents"))
            .otherwise(pl.col("drivers")),
        )
    )
    stock = pl.DataFrame(
        [
            {
                "stock_level_id": f"{s}|{p}",
                "store_id": s,
                "product_id": p,
                "last_counted_level": 100,
                "on_hand_units": {"P0001": 30, "P0002": 0, "P0003": 90}[p],
                "last_counted_at": datetime(2026, 1, 1, tzinfo=UTC),
                "last_sale_at": datetime(2026, 3, 1, 18, tzinfo=UTC),
            }
            for s in STORES
            for p in PRODUCTS
        ]
    )
    t0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
    security = pl.DataFrame(
        [
            {
                "event_id": f"sec-{i}",
                "store_id": "S001",
                "device_id": "S001-T1",
                "security_kind": "login_failure" if i < 12 else "login_success",
                "outcome": "failure" if i < 12 else "success",
                "is_failure": i < 12,
                "username": ["alice", "bob", "carol"][i % 3] if i < 12 else "manager",
                "source_ip": "203.0.113.7" if i < 9 else "198.51.100.2",
                "detail": None,
                "occurred_at": t0 + timedelta(minutes=i),
                "event_date": LAST if i < 14 else LAST - timedelta(days=3),
                "received_at": t0 + timedelta(minutes=i, seconds=1),
            }
            for i in range(16)
        ]
    )
    sync = pl.DataFrame(
        [
            {
                "event_id": f"sync-{s}-{k}",
                "session_id": f"sess-{s}-{k}",
                "store_id": s,
                "device_id": f"{s}-T{k % 2 + 1}",
                "synced_at": datetime(2026, 3, 1, 9 + k, tzinfo=UTC),
                "offline_since": datetime(2026, 3, 1, 8 + k, 30, tzinfo=UTC),
                "offline_seconds": 1800,
                "items_received": 10,
                "items_applied": 9,
                "items_duplicate": 0,
                "items_rejected": 1 if s == "S002" else 0,
                "items_conflict": 0,
                "duration_ms": 120,
                "clock_skew_seconds": 40 * k if s == "S002" else 0,
                "received_at": datetime(2026, 3, 1, 9 + k, 1, tzinfo=UTC),
            }
            for s in STORES
            for k in range(3)
        ]
    )
    return {
        "fct_sales_daily": sales,
        "dim_store": pl.DataFrame({"store_id": list(STORES), "store_name": ["North", "South"]}),
        "dim_product": pl.DataFrame(
            {
                "product_id": list(PRODUCTS),
                "product_name": [v[0] for v in PRODUCTS.values()],
                "category": [v[1] for v in PRODUCTS.values()],
            }
        ),
        "fct_stock_levels": stock,
        "demand_forecast": pl.DataFrame(fc_rows),
        "sales_anomalies": anomalies,
        "fct_security_events": security,
        "fct_sync_sessions": sync,
    }


OTHER = "S003"  # a store the manager does not manage


def three_stores() -> dict[str, pl.DataFrame]:
    """The test snapshot with a third store (S002's rows copied as S003) and the tables whose chain- or
    category-wide rows must not reach a manager: coherent forecast totals, accuracy by level, insights."""
    tables = {
        name: pl.concat(
            [frame, frame.filter(pl.col("store_id") == "S002").with_columns(store_id=pl.lit(OTHER))]
        )
        if "store_id" in frame.columns
        else frame
        for name, frame in snapshot_tables().items()
    }
    tables["dim_store"] = pl.DataFrame(
        {"store_id": ["S001", "S002", OTHER], "store_name": ["North", "South", "East"]}
    )
    tables["demand_forecast_totals"] = pl.DataFrame(
        [
            {"level": level, "key": key, "ds": LAST + timedelta(days=h), "horizon_day": h, "yhat": value,
             "lo_80": value - 1, "hi_80": value + 1, "lo_95": value - 2, "hi_95": value + 2}
            for level, key, value in (
                ("chain", "chain", 100.0), ("store", "S001", 40.0), ("store", OTHER, 30.0),
                ("category", "Drinks", 7.0),
            )
            for h in range(1, 91)
        ]
    )  # fmt: skip
    tables["forecast_accuracy"] = pl.DataFrame(
        {
            "level": ["chain", "store", "store", "store", "series"],
            "store_id": [None, "S001", "S002", OTHER, OTHER],
            "product_id": [None, None, None, None, "P0001"],
            "mase": [0.5, 0.8, 0.9, 1.7, 2.0],
        }
    )
    tables["access_anomalies"] = access_scores()  # admins only: a manager sees none of it, S003 included
    tables["business_insights"] = pl.DataFrame(
        {
            "store_id": ["S001", OTHER, None],
            "category": ["inventory", "revenue", "operations"],
            "title": ["Reorder tea", "Promote at East", "Chain-wide review"],
            "priority": [0.4, 0.9, 0.5],
        }
    )
    tables["reorder_suggestions"] = pl.DataFrame(
        {"store_id": ["S001", OTHER], "product_id": ["P0002", "P0002"], "reorder_qty": [40, 25]}
    )
    counted = datetime.combine(LAST, datetime.min.time())
    tables["inventory_anomalies"] = pl.DataFrame(
        {"store_id": ["S002", OTHER], "product_id": ["P0001", "P0001"], "missing_units": [5, 24],
         "is_anomaly": [True, True], "severity": ["high", "high"], "counted_at": [counted, counted]}
    )  # fmt: skip
    tables["fct_ip_risk"] = pl.DataFrame({"source_ip": ["203.0.113.7"], "risk_score": [0.9]})
    return tables


def app(login: Session | None, **session: object) -> AppTest:
    """The app, run once, in a browser session logged in as ``login`` (None: logged out) with ``session``
    state set first."""
    at = AppTest.from_file(APP, default_timeout=60)
    if login is not None:
        at.session_state[SESSION_KEY] = login
    for key, value in session.items():
        at.session_state[key] = value
    return at.run()


def open_page(page: str, login: Session, **session: object) -> AppTest:
    """Run the app logged in as ``login``, then switch to ``views/<page>.py`` (``session`` state set
    first)."""
    at = app(login, **session)
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def infos(at: AppTest) -> list[str]:
    return [i.value for i in at.info]


def access_scores() -> pl.DataFrame:
    """The unusual-access detector's own output: mallory reading twenty stores at 3 am (flagged), an
    ordinary day of mona's."""
    from pipelines.defs.access.detector import score_access

    day = datetime(2026, 3, 1, 3, 0)
    common = {
        "role": "manager",
        "principal_kind": "user",
        "access_date": day.date(),
        "distinct_routes": 3,
        "source_ips": 1,
        "first_at": day,
        "last_at": day,
        "baseline_days": 14,
        "baseline_log_reads": 2.2,
        "baseline_mad_log_reads": 0.2,
        "baseline_stores": 2.0,
        "baseline_mad_stores": 0.0,
        "baseline_new_stores": 0.0,
        "baseline_mad_new_stores": 0.0,
        "baseline_off_hours": 0.0,
        "baseline_mad_off_hours": 0.0,
    }
    rows = [
        {
            **common,
            "principal": "mallory",
            "reads": 60,
            "log_reads": 4.11,
            "distinct_stores": 20,
            "new_stores": 18,
            "stores": "S001," + ",".join(f"S{i:03d}" for i in range(3, 22)),
            "off_hours_reads": 60,
            "off_hours_share": 1.0,
        },
        {
            **common,
            "principal": "mona",
            "reads": 9,
            "log_reads": 2.3,
            "distinct_stores": 2,
            "new_stores": 0,
            "stores": "S001,S002",
            "off_hours_reads": 0,
            "off_hours_share": 0.0,
        },
    ]
    return score_access(pl.DataFrame(rows), z_threshold=6.0)

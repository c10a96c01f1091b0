"""Business insights: ranked recommendations from the forecasts, reorder suggestions and anomalies.

Every insight has a category (revenue, inventory, operations, customer_behaviour), a store, a subject, a
title, its evidence (a JSON object of the numbers behind it), an action, and

    priority = impact × confidence × urgency        (each in [0, 1])

- ``impact`` = log(1 + impact_cents) / log(1 + largest impact_cents of the run): money at stake, on a log
  scale so that one huge item does not flatten the rest. impact_cents is revenue at risk (inventory: days
  without stock × daily demand × price; revenue: the forecast change over 7 days; customer behaviour: the
  basket change over the next 28 days of transactions), refunds flagged (operations), or a nominal
  SECURITY_EXPOSURE_CENTS for an attacking IP.
- ``confidence``: the forecast's confidence score (inventory, revenue), or min(1, max_z / (2 · threshold))
  for anomalies, 0.6 for basket shifts.
- ``urgency``: inventory 1 − days_of_cover / lead_time (at least 0.1); anomalies 1 within the last 7 days of
  data, 0.5 just before, halving every further ``STALE_HALF_LIFE_DAYS`` (30) days of age, so a flag from
  last year does not outrank today's stock-outs; revenue 0.6; customer behaviour 0.3.

Insights whose priority rounds to 0 (no money at stake, e.g. an unpriced product, or a flag years old) are
dropped, and each store keeps its ``MAX_PER_STORE_CATEGORY`` (10) highest-priority insights per category
(chain-wide ones, without a store, count as one more "store"), so a few hundred products short of stock do
not bury everything else. Titles and evidence name features in words (``refund value``, not
``refund_cents``; ``DRIVER_LABELS``); evidence keys stay the columns' names, with their units.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl

SECURITY_EXPOSURE_CENTS = 500_000  # nominal cost of an account takeover, for ranking only
REVENUE_CHANGE = 0.10  # forecast vs last week, either way
BASKET_CHANGE = 0.05  # last 28 days vs the 28 before
RECENT_DAYS = 7
STALE_HALF_LIFE_DAYS = 30  # an older anomaly's urgency halves every this many days
MAX_PER_STORE_CATEGORY = 10  # insights kept per store and category, highest priority first

# The anomaly tables' feature and driver names, as a manager reads them.
DRIVER_LABELS = {
    "net_revenue_cents": "revenue",
    "transactions": "transactions",
    "avg_basket_cents": "basket size",
    "refund_rate": "refund rate",
    "void_rate": "void rate",
    "discount_rate": "discount rate",
    "units_residual": "units against forecast",
    "revenue_residual": "revenue against forecast",
    "refunds": "refunds",
    "refund_cents": "refund value",
    "voids": "voids",
    "failures": "failed logins",
    "failed_users": "usernames tried",
    "events_per_minute": "login rate",
    "missing_units": "missing units",
}

INSIGHT_SCHEMA = pl.Schema(
    {
        "insight_id": pl.String(),
        "category": pl.String(),
        "store_id": pl.String(),
        "subject": pl.String(),
        "title": pl.String(),
        "evidence": pl.String(),  # JSON object
        "action": pl.String(),
        "impact_cents": pl.Float64(),
        "impact": pl.Float64(),
        "confidence": pl.Float64(),
        "urgency": pl.Float64(),
        "priority": pl.Float64(),
        "as_of": pl.Date(),
    }
)


def empty_insights() -> pl.DataFrame:
    return pl.DataFrame(schema=INSIGHT_SCHEMA)


def human_drivers(drivers: str | None) -> list[str]:
    """Comma-joined driver columns (``"refund_cents,voids"``) as words (``["refund value", "voids"]``), in
    order, without duplicates; an unknown name has its underscores made spaces."""
    labels = [DRIVER_LABELS.get(d.strip(), d.strip().replace("_", " ")) for d in (drivers or "").split(",")]
    return list(dict.fromkeys(label for label in labels if label))


def _prices(sales: pl.DataFrame, as_of: date) -> pl.DataFrame:
    recent = sales.filter(pl.col("sale_date") > as_of - timedelta(days=28))
    return recent.group_by("store_id", "product_id").agg(
        price_cents=pl.col("net_revenue_cents").sum() / pl.col("units_sold").sum().clip(lower_bound=1)
    )


def _row(category: str, store: str, subject: str, title: str, evidence: dict, action: str,
         impact_cents: float, confidence: float, urgency: float) -> dict:  # fmt: skip
    return {
        "category": category,
        "store_id": store,
        "subject": subject,
        "title": title,
        "evidence": json.dumps(evidence, default=str, sort_keys=True),
        "action": action,
        "impact_cents": float(max(impact_cents, 0.0)),
        "confidence": float(min(max(confidence, 0.0), 1.0)),
        "urgency": float(min(max(urgency, 0.0), 1.0)),
    }


def build_insights(
    *,
    sales: pl.DataFrame,
    forecast: pl.DataFrame,
    reorder: pl.DataFrame,
    store_days: pl.DataFrame,
    cashiers: pl.DataFrame,
    security: pl.DataFrame,
    shrinkage: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Insights from: ``sales`` (fct_sales_daily), ``forecast`` (demand_forecast), ``reorder``
    (reorder_suggestions), ``store_days`` (sales_anomalies), ``cashiers`` (cashier_anomalies), ``security``
    (security_anomalies), ``shrinkage`` (inventory_anomalies). Sorted by priority, highest first."""
    if sales.is_empty():
        return empty_insights()
    as_of: date = sales["sale_date"].max()  # type: ignore[assignment]
    prices = _prices(sales, as_of)
    rows: list[dict] = []

    # Inventory: products that run out before a new order can arrive.
    if reorder.height:
        at_risk = reorder.filter(pl.col("stockout_risk") & pl.col("needs_reorder")).join(
            prices, on=["store_id", "product_id"], how="left"
        )
        for r in at_risk.iter_rows(named=True):
            cover = r["days_of_cover"] or 0.0
            lead = r["lead_time_days"]
            price = r["price_cents"] or 0.0
            short_days = max(lead - cover, 1.0)
            rows.append(
                _row(
                    "inventory", r["store_id"], r["product_id"],
                    f"{r['product_id']} runs out in {cover:.1f} days at {r['store_id']}; "
                    f"resupply takes {lead}",
                    {"on_hand_units": r["on_hand_units"], "days_of_cover": round(cover, 2),
                     "lead_time_days": lead, "avg_daily_demand": round(r["avg_daily_demand"] or 0, 2),
                     "reorder_point": round(r["reorder_point"], 1),
                     "reorder_quantity": r["reorder_quantity"]},
                    f"Order {r['reorder_quantity']} units of {r['product_id']} for {r['store_id']} today",
                    short_days * (r["avg_daily_demand"] or 0.0) * price,
                    r["confidence"] if r["confidence"] is not None else 0.5,
                    max(0.1, 1.0 - cover / max(lead, 1)),
                )
            )  # fmt: skip

    # Revenue: next week's forecast against last week's takings, per store.
    if forecast.height:
        next_week = (
            forecast.filter(pl.col("horizon_day") <= 7)
            .join(prices, on=["store_id", "product_id"], how="left")
            .group_by("store_id")
            .agg(
                forecast_cents=(pl.col("yhat") * pl.col("price_cents").fill_null(0)).sum(),
                confidence=pl.col("confidence").mean(),
            )
        )
        last_week = (
            sales.filter(pl.col("sale_date") > as_of - timedelta(days=7))
            .group_by("store_id")
            .agg(actual_cents=pl.col("net_revenue_cents").sum())
        )
        for r in next_week.join(last_week, on="store_id").iter_rows(named=True):
            if not r["actual_cents"]:
                continue
            change = r["forecast_cents"] / r["actual_cents"] - 1.0
            if abs(change) < REVENUE_CHANGE:
                continue
            direction = "fall" if change < 0 else "rise"
            rows.append(
                _row(
                    "revenue", r["store_id"], r["store_id"],
                    f"Revenue at {r['store_id']} expected to {direction} {abs(change):.0%} next week",
                    {"forecast_7d_cents": round(r["forecast_cents"]), "last_7d_cents": r["actual_cents"],
                     "change": round(change, 3)},
                    "Plan a promotion and check staffing" if change < 0
                    else "Staff up and stock the best sellers",
                    abs(r["forecast_cents"] - r["actual_cents"]),
                    r["confidence"] if r["confidence"] is not None else 0.5,
                    0.6,
                )
            )  # fmt: skip

    def urgency_of(day: date) -> float:
        age = (as_of - day).days
        if age < RECENT_DAYS:
            return 1.0
        return 0.5 * 0.5 ** ((age - RECENT_DAYS) / STALE_HALF_LIFE_DAYS)

    # Operations: cashier shifts and store-days flagged.
    if cashiers.height:
        flagged = cashiers.filter(pl.col("is_anomaly"))
        if "drivers" not in flagged.columns:
            flagged = flagged.with_columns(drivers=pl.lit(None, pl.String))
        per_cashier = flagged.group_by("store_id", "cashier_id").agg(
            shifts=pl.len(), refunds=pl.col("refunds").sum(), refund_cents=pl.col("refund_cents").sum(),
            max_z=pl.col("max_z").max(), last_day=pl.col("sale_date").max(),
            threshold=pl.col("z_threshold").first(),
            drivers=pl.col("drivers").sort_by("max_z", descending=True).str.join(","),
        )  # fmt: skip
        for r in per_cashier.iter_rows(named=True):
            drivers = human_drivers(r["drivers"]) or ["refunds"]
            rows.append(
                _row(
                    "operations", r["store_id"], r["cashier_id"],
                    f"Cashier {r['cashier_id']}: unusual {', '.join(drivers)} on {r['shifts']} shifts",
                    {"shifts": r["shifts"], "refunds": r["refunds"], "refund_cents": r["refund_cents"],
                     "max_z": round(r["max_z"], 1), "last_day": r["last_day"], "drivers": drivers},
                    f"Review the refunds of cashier {r['cashier_id']} and require manager approval",
                    r["refund_cents"], r["max_z"] / (2 * r["threshold"]), urgency_of(r["last_day"]),
                )
            )  # fmt: skip
    if store_days.height:
        for r in store_days.filter(pl.col("is_anomaly")).iter_rows(named=True):
            lo, hi = r.get("expected_revenue_lo_cents"), r.get("expected_revenue_hi_cents")
            revenue = r["net_revenue_cents"]
            gap = (
                (lo - revenue) if lo is not None and revenue < lo else (revenue - hi) if hi is not None else 0
            )
            rows.append(
                _row(
                    "operations", r["store_id"], str(r["sale_date"]),
                    f"Unusual trading at {r['store_id']} on {r['sale_date']} "
                    f"({', '.join(human_drivers(r['drivers'])) or 'several features'})",
                    {"net_revenue_cents": revenue, "expected_lo_cents": lo, "expected_hi_cents": hi,
                     "drivers": human_drivers(r["drivers"]), "severity": r["severity"]},
                    "Check the day's till reports, refunds and voids with the store manager",
                    abs(gap or 0), min(1.0, (r.get("max_abs_z") or 0) / 12.0), urgency_of(r["sale_date"]),
                )
            )  # fmt: skip
    if security.height:
        flagged = security.filter(pl.col("is_anomaly"))
        per_ip = flagged.group_by("source_ip").agg(
            days=pl.len(), failures=pl.col("failures").sum(), users=pl.col("failed_users").max(),
            max_z=pl.col("max_z").max(), last_day=pl.col("event_date").max(),
            threshold=pl.col("z_threshold").first(),
        )  # fmt: skip
        for r in per_ip.iter_rows(named=True):
            rows.append(
                _row(
                    "operations", None, r["source_ip"],  # type: ignore[arg-type]
                    f"{r['failures']} failed logins from {r['source_ip']} over {r['users']} usernames",
                    {"failures": r["failures"], "failed_users": r["users"], "days": r["days"],
                     "max_z": round(r["max_z"], 1), "last_day": r["last_day"]},
                    f"Block {r['source_ip']} and reset the passwords of the accounts it tried",
                    SECURITY_EXPOSURE_CENTS, r["max_z"] / (2 * r["threshold"]), urgency_of(r["last_day"]),
                )
            )  # fmt: skip

    # Inventory: stock that vanished between shelf counts.
    if shrinkage is not None and shrinkage.height:
        missing = shrinkage.filter(pl.col("is_anomaly")).join(
            prices, on=["store_id", "product_id"], how="left"
        )
        for r in missing.iter_rows(named=True):
            counted_day = r["counted_at"].date() if hasattr(r["counted_at"], "date") else r["counted_at"]
            rows.append(
                _row(
                    "inventory", r["store_id"], r["product_id"],
                    f"{r['missing_units']} units of {r['product_id']} missing at {r['store_id']} "
                    f"(count on {counted_day})",
                    {"expected_level": r["expected_level"], "counted_level": r["counted_level"],
                     "missing_units": r["missing_units"], "sold_units": r["sold_units"],
                     "max_z": round(r["max_z"], 1)},
                    f"Recount {r['product_id']} at {r['store_id']}, check deliveries and review CCTV",
                    r["missing_units"] * (r["price_cents"] or 0.0),
                    min(1.0, r["max_z"] / (2 * r["z_threshold"])), urgency_of(counted_day),
                )
            )  # fmt: skip

    # Customer behaviour: basket size shift per store.
    if store_days.height:
        recent = store_days.filter(pl.col("sale_date") > as_of - timedelta(days=28))
        before = store_days.filter(
            pl.col("sale_date").is_between(as_of - timedelta(days=55), as_of - timedelta(days=28))
        )
        baskets = (
            recent.group_by("store_id")
            .agg(basket=pl.col("net_revenue_cents").sum() / pl.col("transactions").sum(),
                 transactions=pl.col("transactions").sum())
            .join(before.group_by("store_id").agg(
                basket_before=pl.col("net_revenue_cents").sum() / pl.col("transactions").sum()),
                on="store_id")
        )  # fmt: skip
        for r in baskets.iter_rows(named=True):
            if not r["basket_before"]:
                continue
            change = r["basket"] / r["basket_before"] - 1.0
            if abs(change) < BASKET_CHANGE:
                continue
            rows.append(
                _row(
                    "customer_behaviour", r["store_id"], r["store_id"],
                    f"Average basket at {r['store_id']} {'down' if change < 0 else 'up'} {abs(change):.0%} "
                    "over the last 28 days",
                    {"basket_cents": round(r["basket"]), "basket_before_cents": round(r["basket_before"]),
                     "change": round(change, 3), "transactions_28d": r["transactions"]},
                    "Review bundles and cross-sell at the till" if change < 0
                    else "Keep the assortment that lifted baskets in stock",
                    abs(r["basket"] - r["basket_before"]) * r["transactions"], 0.6, 0.3,
                )
            )  # fmt: skip

    if not rows:
        return empty_insights()
    frame = pl.DataFrame(rows, infer_schema_length=None)
    top = float(frame["impact_cents"].max() or 0.0)  # type: ignore[arg-type]
    frame = frame.with_columns(
        impact=(pl.col("impact_cents") + 1).log() / max(float(pl.Series([top + 1]).log()[0]), 1e-9),
        as_of=pl.lit(as_of),
    ).with_columns(priority=(pl.col("impact") * pl.col("confidence") * pl.col("urgency")).round(4))
    frame = (
        frame.filter(pl.col("priority") > 0)
        .sort(["priority", "impact_cents", "subject"], descending=[True, True, False])
        .filter(pl.int_range(pl.len()).over("store_id", "category") < MAX_PER_STORE_CATEGORY)
        .with_columns(insight_id=pl.format("I{}", pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(4)))
    )
    if frame.is_empty():
        return empty_insights()
    return frame.select(list(INSIGHT_SCHEMA)).cast(INSIGHT_SCHEMA)

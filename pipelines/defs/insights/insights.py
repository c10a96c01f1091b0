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

Each family of insight is one rule (:data:`RULES`): a small function from the run's inputs
(:class:`Inputs`) to its rows; the two "shift between two windows per store" families (revenue, basket) share
one shape (:class:`Shift`). ``build_insights`` runs the rules and ranks what they return.

Insights whose priority rounds to 0 (no money at stake, e.g. an unpriced product, or a flag years old) are
dropped, and each store keeps its ``MAX_PER_STORE_CATEGORY`` (10) highest-priority insights per category
(chain-wide ones, without a store, count as one more "store"), so a few hundred products short of stock do
not bury everything else. Titles and evidence name features in words (``refund value``, not
``refund_cents``; :data:`chainsync.snapshot_contract.DRIVERS`); evidence keys stay the columns' names,
with their units.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from chainsync.snapshot_contract import driver_words

SECURITY_EXPOSURE_CENTS = 500_000  # nominal cost of an account takeover, for ranking only
REVENUE_CHANGE = 0.10  # forecast vs last week, either way
BASKET_CHANGE = 0.05  # last 28 days vs the 28 before
RECENT_DAYS = 7
STALE_HALF_LIFE_DAYS = 30  # an older anomaly's urgency halves every this many days
MAX_PER_STORE_CATEGORY = 10  # insights kept per store and category, highest priority first


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


# How much of its inputs the rules read: the sales of the last ``SALES_WINDOW_DAYS`` (recent prices; last
# week's takings), the forecast's first ``FORECAST_WINDOW_DAYS`` (next week's value), and of the cashier,
# security and shrinkage scores the flagged rows only. The asset reads no more than that
# (``sales_window_sql``, ``forecast_window_sql``, ``flagged_sql``).
SALES_WINDOW_DAYS = 28
FORECAST_WINDOW_DAYS = 7


def sales_window_sql(table: str) -> str:
    """The rows of the daily sales ``table`` the rules read: its last ``SALES_WINDOW_DAYS`` days."""
    return (
        "select store_id, product_id, sale_date, units_sold, net_revenue_cents from"
        f" {table} where sale_date > (select max(sale_date) from {table}) - {SALES_WINDOW_DAYS}"
    )


def forecast_window_sql(table: str) -> str:
    """The rows of the forecast ``table`` the rules read: its first ``FORECAST_WINDOW_DAYS`` days."""
    return f"select * from {table} where horizon_day <= {FORECAST_WINDOW_DAYS}"


def flagged_sql(table: str) -> str:
    """The rows of an anomaly ``table`` the cashier, security and shrinkage rules read: the flagged ones."""
    return f"select * from {table} where is_anomaly"


def _prices(sales: pl.DataFrame, as_of: date) -> pl.DataFrame:
    recent = sales.filter(pl.col("sale_date") > as_of - timedelta(days=SALES_WINDOW_DAYS))
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


@dataclass(frozen=True)
class Inputs:
    """What the rules read: ``sales`` (fct_sales_daily), ``forecast`` (demand_forecast), ``reorder``
    (reorder_suggestions), ``store_days`` (sales_anomalies), ``cashiers`` (cashier_anomalies), ``security``
    (security_anomalies), ``shrinkage`` (inventory_anomalies); ``as_of`` the last sale date, ``prices`` the
    recent price per store and product."""

    sales: pl.DataFrame
    forecast: pl.DataFrame
    reorder: pl.DataFrame
    store_days: pl.DataFrame
    cashiers: pl.DataFrame
    security: pl.DataFrame
    shrinkage: pl.DataFrame | None
    as_of: date
    prices: pl.DataFrame

    def urgency_of(self, day: date) -> float:
        """1 within the last ``RECENT_DAYS``, then 0.5 halving every ``STALE_HALF_LIFE_DAYS`` of age."""
        age = (self.as_of - day).days
        if age < RECENT_DAYS:
            return 1.0
        return 0.5 * 0.5 ** ((age - RECENT_DAYS) / STALE_HALF_LIFE_DAYS)


Rule = Callable[[Inputs], list[dict]]


def stockouts(i: Inputs) -> list[dict]:
    """Inventory: products that run out before a new order can arrive."""
    if not i.reorder.height:
        return []
    at_risk = i.reorder.filter(pl.col("stockout_risk") & pl.col("needs_reorder")).join(
        i.prices, on=["store_id", "product_id"], how="left"
    )
    rows = []
    for r in at_risk.iter_rows(named=True):
        cover = r["days_of_cover"] or 0.0
        lead = r["lead_time_days"]
        price = r["price_cents"] or 0.0
        short_days = max(lead - cover, 1.0)
        rows.append(
            _row(
                "inventory", r["store_id"], r["product_id"],
                f"{r['product_id']} runs out in {cover:.1f} days at {r['store_id']}; resupply takes {lead}",
                {"on_hand_units": r["on_hand_units"], "days_of_cover": round(cover, 2),
                 "lead_time_days": lead, "avg_daily_demand": round(r["avg_daily_demand"] or 0, 2),
                 "reorder_point": round(r["reorder_point"], 1), "reorder_quantity": r["reorder_quantity"]},
                f"Order {r['reorder_quantity']} units of {r['product_id']} for {r['store_id']} today",
                short_days * (r["avg_daily_demand"] or 0.0) * price,
                r["confidence"] if r["confidence"] is not None else 0.5,
                max(0.1, 1.0 - cover / max(lead, 1)),
            )
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class Shift:
    """A per-store figure now against before, reported when it moved by at least ``threshold`` either
    way. ``windows(inputs)`` gives one frame with ``store_id``, ``now``, ``before``, ``confidence`` and
    whatever ``evidence`` and ``impact`` read."""

    category: str
    threshold: float
    windows: Callable[[Inputs], pl.DataFrame | None]
    title: Callable[[dict, float], str]
    evidence: Callable[[dict, float], dict]
    action: Callable[[float], str]
    impact: Callable[[dict], float]
    urgency: float

    def __call__(self, i: Inputs) -> list[dict]:
        frame = self.windows(i)
        if frame is None:
            return []
        rows = []
        for r in frame.iter_rows(named=True):
            if not r["before"]:
                continue
            change = r["now"] / r["before"] - 1.0
            if abs(change) < self.threshold:
                continue
            rows.append(
                _row(
                    self.category, r["store_id"], r["store_id"], self.title(r, change),
                    self.evidence(r, change), self.action(change), self.impact(r),
                    r["confidence"] if r["confidence"] is not None else 0.5, self.urgency,
                )
            )  # fmt: skip
        return rows


def _revenue_windows(i: Inputs) -> pl.DataFrame | None:
    """Next week's forecast value against last week's takings, per store."""
    if not i.forecast.height:
        return None
    next_week = (
        i.forecast.filter(pl.col("horizon_day") <= FORECAST_WINDOW_DAYS)
        .join(i.prices, on=["store_id", "product_id"], how="left")
        .group_by("store_id")
        .agg(
            now=(pl.col("yhat") * pl.col("price_cents").fill_null(0)).sum(),
            confidence=pl.col("confidence").mean(),
        )
    )
    last_week = (
        i.sales.filter(pl.col("sale_date") > i.as_of - timedelta(days=7))
        .group_by("store_id")
        .agg(before=pl.col("net_revenue_cents").sum())
    )
    return next_week.join(last_week, on="store_id")


def _basket_windows(i: Inputs) -> pl.DataFrame | None:
    """The average basket of the last 28 days against the 28 before, per store."""
    if not i.store_days.height:
        return None
    days = i.store_days
    recent = days.filter(pl.col("sale_date") > i.as_of - timedelta(days=28))
    before = days.filter(
        pl.col("sale_date").is_between(i.as_of - timedelta(days=55), i.as_of - timedelta(days=28))
    )
    return (
        recent.group_by("store_id")
        .agg(now=pl.col("net_revenue_cents").sum() / pl.col("transactions").sum(),
             transactions=pl.col("transactions").sum())
        .join(before.group_by("store_id").agg(
            before=pl.col("net_revenue_cents").sum() / pl.col("transactions").sum()), on="store_id")
        .with_columns(confidence=pl.lit(0.6))
    )  # fmt: skip


revenue_outlook = Shift(
    "revenue",
    REVENUE_CHANGE,
    _revenue_windows,
    title=lambda r, c: (
        f"Revenue at {r['store_id']} expected to {'fall' if c < 0 else 'rise'} {abs(c):.0%} next week"
    ),
    evidence=lambda r, c: {
        "forecast_7d_cents": round(r["now"]),
        "last_7d_cents": r["before"],
        "change": round(c, 3),
    },
    action=lambda c: (
        "Plan a promotion and check staffing" if c < 0 else "Staff up and stock the best sellers"
    ),
    impact=lambda r: abs(r["now"] - r["before"]),
    urgency=0.6,
)
"""Revenue: next week's forecast against last week's takings, per store."""

basket_shift = Shift(
    "customer_behaviour",
    BASKET_CHANGE,
    _basket_windows,
    title=lambda r, c: (
        f"Average basket at {r['store_id']} {'down' if c < 0 else 'up'} {abs(c):.0%} over the last 28 days"
    ),
    evidence=lambda r, c: {
        "basket_cents": round(r["now"]),
        "basket_before_cents": round(r["before"]),
        "change": round(c, 3),
        "transactions_28d": r["transactions"],
    },
    action=lambda c: (
        "Review bundles and cross-sell at the till"
        if c < 0
        else "Keep the assortment that lifted baskets in stock"
    ),
    impact=lambda r: abs(r["now"] - r["before"]) * r["transactions"],
    urgency=0.3,
)
"""Customer behaviour: the average basket's shift per store."""


def flagged_cashiers(i: Inputs) -> list[dict]:
    """Operations: cashiers with flagged shifts, one insight per cashier."""
    if not i.cashiers.height:
        return []
    flagged = i.cashiers.filter(pl.col("is_anomaly"))
    if "drivers" not in flagged.columns:
        flagged = flagged.with_columns(drivers=pl.lit(None, pl.String))
    per_cashier = flagged.group_by("store_id", "cashier_id").agg(
        shifts=pl.len(), refunds=pl.col("refunds").sum(), refund_cents=pl.col("refund_cents").sum(),
        max_z=pl.col("max_z").max(), last_day=pl.col("sale_date").max(),
        threshold=pl.col("z_threshold").first(),
        drivers=pl.col("drivers").sort_by("max_z", descending=True).str.join(","),
    )  # fmt: skip
    rows = []
    for r in per_cashier.iter_rows(named=True):
        drivers = driver_words(r["drivers"]) or ["refunds"]
        rows.append(
            _row(
                "operations", r["store_id"], r["cashier_id"],
                f"Cashier {r['cashier_id']}: unusual {', '.join(drivers)} on {r['shifts']} shifts",
                {"shifts": r["shifts"], "refunds": r["refunds"], "refund_cents": r["refund_cents"],
                 "max_z": round(r["max_z"], 1), "last_day": r["last_day"], "drivers": drivers},
                f"Review the refunds of cashier {r['cashier_id']} and require manager approval",
                r["refund_cents"], r["max_z"] / (2 * r["threshold"]), i.urgency_of(r["last_day"]),
            )
        )  # fmt: skip
    return rows


def flagged_store_days(i: Inputs) -> list[dict]:
    """Operations: store-days whose trading was flagged."""
    if not i.store_days.height:
        return []
    rows = []
    for r in i.store_days.filter(pl.col("is_anomaly")).iter_rows(named=True):
        lo, hi = r.get("expected_revenue_lo_cents"), r.get("expected_revenue_hi_cents")
        revenue = r["net_revenue_cents"]
        gap = (lo - revenue) if lo is not None and revenue < lo else (revenue - hi) if hi is not None else 0
        rows.append(
            _row(
                "operations", r["store_id"], str(r["sale_date"]),
                f"Unusual trading at {r['store_id']} on {r['sale_date']} "
                f"({', '.join(driver_words(r['drivers'])) or 'several features'})",
                {"net_revenue_cents": revenue, "expected_lo_cents": lo, "expected_hi_cents": hi,
                 "drivers": driver_words(r["drivers"]), "severity": r["severity"]},
                "Check the day's till reports, refunds and voids with the store manager",
                abs(gap or 0), min(1.0, (r.get("max_abs_z") or 0) / 12.0), i.urgency_of(r["sale_date"]),
            )
        )  # fmt: skip
    return rows


def attacking_addresses(i: Inputs) -> list[dict]:
    """Operations (chain-wide): addresses whose failed logins were flagged, one insight per address."""
    if not i.security.height:
        return []
    per_ip = i.security.filter(pl.col("is_anomaly")).group_by("source_ip").agg(
        days=pl.len(), failures=pl.col("failures").sum(), users=pl.col("failed_users").max(),
        max_z=pl.col("max_z").max(), last_day=pl.col("event_date").max(),
        threshold=pl.col("z_threshold").first(),
    )  # fmt: skip
    return [
        _row(
            "operations", None, r["source_ip"],  # type: ignore[arg-type]
            f"{r['failures']} failed logins from {r['source_ip']} over {r['users']} usernames",
            {"failures": r["failures"], "failed_users": r["users"], "days": r["days"],
             "max_z": round(r["max_z"], 1), "last_day": r["last_day"]},
            f"Block {r['source_ip']} and reset the passwords of the accounts it tried",
            SECURITY_EXPOSURE_CENTS, r["max_z"] / (2 * r["threshold"]), i.urgency_of(r["last_day"]),
        )
        for r in per_ip.iter_rows(named=True)
    ]  # fmt: skip


def missing_stock(i: Inputs) -> list[dict]:
    """Inventory: stock that vanished between shelf counts."""
    if i.shrinkage is None or not i.shrinkage.height:
        return []
    missing = i.shrinkage.filter(pl.col("is_anomaly")).join(
        i.prices, on=["store_id", "product_id"], how="left"
    )
    rows = []
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
                min(1.0, r["max_z"] / (2 * r["z_threshold"])), i.urgency_of(counted_day),
            )
        )  # fmt: skip
    return rows


RULES: tuple[Rule, ...] = (
    stockouts,
    revenue_outlook,
    flagged_cashiers,
    flagged_store_days,
    attacking_addresses,
    missing_stock,
    basket_shift,
)
"""Every insight family, in the order their rows are gathered (ranking decides the order shown)."""


def build_insights(
    *,
    sales: pl.DataFrame,
    forecast: pl.DataFrame,
    reorder: pl.DataFrame,
    store_days: pl.DataFrame,
    cashiers: pl.DataFrame,
    security: pl.DataFrame,
    shrinkage: pl.DataFrame | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> pl.DataFrame:
    """Insights from the tables of :class:`Inputs`, by ``rules``; sorted by priority, highest first."""
    if sales.is_empty():
        return empty_insights()
    as_of: date = sales["sale_date"].max()  # type: ignore[assignment]
    inputs = Inputs(
        sales, forecast, reorder, store_days, cashiers, security, shrinkage, as_of, _prices(sales, as_of)
    )
    rows = [row for rule in rules for row in rule(inputs)]
    return rank(rows, as_of)


def rank(rows: list[dict], as_of: date) -> pl.DataFrame:
    """priority = impact × confidence × urgency; drop what rounds to 0; keep ``MAX_PER_STORE_CATEGORY`` per
    store and category; number them."""
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

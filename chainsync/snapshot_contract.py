"""The serving-snapshot contract: every table the pipeline publishes, the warehouse relation it comes from,
who may read it, and the columns a reader may count on (name, kind, label for people).

The writer declares, the readers import: the publisher (:mod:`pipelines.defs.serving.assets`) publishes
:data:`TABLES` and checks each table against its declaration before the snapshot is switched (a missing
column or a column of another kind fails the publish, naming them); the API names its tables from here;
the dashboards read columns by the names declared here rather than guessing among candidates. A table may
carry more columns than it declares (a model's internal features, or a column only a non-empty result
has): readers rely on the declared ones only, which every writer path provides (AI analytics off included).

``date_column`` dates a row (freshness, period filters), ``subject_column`` names what a row is about (an
anomaly's store, cashier, product, address or endpoint), ``score_column`` ranks rows; ``ai`` marks the
tables the AI endpoints serve. ``audience``: ``stores`` tables are narrowed to a manager's stores (by
``store_id``, or ``level``/``key`` for totals), ``shared`` ones are reference data everybody sees, ``admin``
ones are for administrators only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import polars as pl

Kind = Literal["string", "int", "float", "bool", "date", "datetime"]
STRING: Kind = "string"
INT: Kind = "int"
FLOAT: Kind = "float"
BOOL: Kind = "bool"
DATE: Kind = "date"
DATETIME: Kind = "datetime"

Audience = Literal["stores", "shared", "admin"]


class SnapshotContractError(ValueError):
    """A table about to be published does not hold what the contract declares for it."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    label: str


@dataclass(frozen=True)
class Table:
    name: str
    relation: str  # the warehouse relation it is published from (schema.table)
    label: str
    audience: Audience
    columns: tuple[Column, ...]
    date_column: str | None = None
    subject_column: str | None = None
    score_column: str | None = None
    ai: bool = False

    def __post_init__(self) -> None:
        names = self.column_names
        for role in (self.date_column, self.subject_column, self.score_column):
            if role is not None and role not in names:
                raise ValueError(f"{self.name}: {role} is not a declared column")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} declares no column {name!r}")

    def label_of(self, name: str) -> str:
        """The label of a declared column (the name itself for an undeclared one)."""
        return next((c.label for c in self.columns if c.name == name), name)

    def problems(self, schema: pl.Schema | dict[str, pl.DataType]) -> list[str]:
        """What ``schema`` lacks or holds of another kind, against this declaration ([] when it conforms)."""
        out = []
        for column in self.columns:
            dtype = schema.get(column.name)
            if dtype is None:
                out.append(f"missing column {column.name} ({column.kind})")
            elif not _conforms(dtype, column.kind):
                out.append(f"column {column.name} is {dtype}, declared {column.kind}")
        return out


def _conforms(dtype: pl.DataType, kind: Kind) -> bool:
    if dtype == pl.Null:  # an all-null column of an empty result
        return True
    if kind == "string":
        return dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum)
    if kind == "int":
        # DuckDB's sum of integers is a DECIMAL(38, 0)
        return dtype.is_integer() or (isinstance(dtype, pl.Decimal) and (dtype.scale or 0) == 0)
    if kind == "float":
        return dtype.is_numeric()
    if kind == "bool":
        return dtype == pl.Boolean
    if kind == "date":
        return dtype == pl.Date
    return isinstance(dtype, pl.Datetime)


FCT_SALES_DAILY = Table(
    "fct_sales_daily",
    "marts.fct_sales_daily",
    "Daily sales by store and product",
    audience="stores",
    date_column="sale_date",
    columns=(
        Column("sales_daily_id", STRING, "Row id"),
        Column("store_id", STRING, "Store"),
        Column("product_id", STRING, "Product"),
        Column("sale_date", DATE, "Sale date"),
        Column("units_sold", INT, "Units sold"),
        Column("refund_units", INT, "Refund units"),
        Column("gross_revenue_cents", INT, "Gross revenue (cents)"),
        Column("discount_cents", INT, "Discount (cents)"),
        Column("net_revenue_cents", INT, "Net revenue (cents)"),
        Column("transactions", INT, "Transactions"),
        Column("max_seq", INT, "Max seq"),
    ),
)
DIM_STORE = Table(
    "dim_store",
    "marts.dim_store",
    "Stores",
    audience="stores",
    subject_column="store_id",
    columns=(
        Column("store_id", STRING, "Store"),
        Column("store_name", STRING, "Store name"),
        Column("region", STRING, "Region"),
        Column("city", STRING, "City"),
        Column("opened_on", DATE, "Opened on"),
        Column("timezone", STRING, "Timezone"),
    ),
)
DIM_PRODUCT = Table(
    "dim_product",
    "marts.dim_product",
    "Products",
    audience="shared",
    subject_column="product_id",
    columns=(
        Column("product_id", STRING, "Product"),
        Column("product_name", STRING, "Product name"),
        Column("category", STRING, "Category"),
        Column("unit_cost_cents", INT, "Unit cost (cents)"),
        Column("list_price_cents", INT, "List price (cents)"),
        Column("unit_margin_cents", INT, "Unit margin (cents)"),
        Column("lead_time_days", INT, "Lead time (days)"),
        Column("is_active", BOOL, "Is active"),
    ),
)
FCT_STOCK_LEVELS = Table(
    "fct_stock_levels",
    "marts.fct_stock_levels",
    "Stock levels",
    audience="stores",
    date_column="last_counted_at",
    columns=(
        Column("stock_level_id", STRING, "Row id"),
        Column("store_id", STRING, "Store"),
        Column("product_id", STRING, "Product"),
        Column("last_counted_level", INT, "Last counted level"),
        Column("last_counted_at", DATETIME, "Last counted at"),
        Column("movement_units_since_count", INT, "Movement units since count"),
        Column("units_sold_since_count", INT, "Units sold since count"),
        Column("on_hand_units", INT, "On hand units"),
        Column("last_sale_at", DATETIME, "Last sale at"),
    ),
)
FCT_SECURITY_EVENTS = Table(
    "fct_security_events",
    "marts.fct_security_events",
    "Security events",
    audience="admin",
    date_column="event_date",
    subject_column="source_ip",
    columns=(
        Column("event_id", STRING, "Event id"),
        Column("store_id", STRING, "Store"),
        Column("device_id", STRING, "Terminal"),
        Column("security_kind", STRING, "Security kind"),
        Column("outcome", STRING, "Outcome"),
        Column("is_failure", BOOL, "Is failure"),
        Column("username", STRING, "Username"),
        Column("source_ip", STRING, "IP address"),
        Column("detail", STRING, "Detail"),
        Column("occurred_at", DATETIME, "Occurred at"),
        Column("event_date", DATE, "Event date"),
        Column("received_at", DATETIME, "Received at"),
    ),
)
FCT_IP_RISK = Table(
    "fct_ip_risk",
    "marts.fct_ip_risk",
    "Risk by IP address",
    audience="admin",
    date_column="last_seen_at",
    subject_column="source_ip",
    score_column="risk_score",
    columns=(
        Column("source_ip", STRING, "IP address"),
        Column("events", INT, "Events"),
        Column("failures", INT, "Failures"),
        Column("login_failures", INT, "Login failures"),
        Column("login_successes", INT, "Login successes"),
        Column("distinct_usernames_failed", INT, "Distinct usernames failed"),
        Column("authorization_denials", INT, "Authorization denials"),
        Column("rate_limited", INT, "Rate limited"),
        Column("blocked_requests", INT, "Blocked requests"),
        Column("suspicious_inputs", INT, "Suspicious inputs"),
        Column("first_seen_at", DATETIME, "First seen at"),
        Column("last_seen_at", DATETIME, "Last seen at"),
        Column("risk_score", FLOAT, "Risk score"),
        Column("max_recorded_risk_score", FLOAT, "Max recorded risk score"),
        Column("is_credential_stuffing", BOOL, "Is credential stuffing"),
        Column("risk_level", STRING, "Risk level"),
    ),
)
FCT_SYNC_SESSIONS = Table(
    "fct_sync_sessions",
    "marts.fct_sync_sessions",
    "Offline-sync sessions",
    audience="stores",
    date_column="synced_at",
    subject_column="device_id",
    columns=(
        Column("event_id", STRING, "Event id"),
        Column("session_id", STRING, "Session id"),
        Column("store_id", STRING, "Store"),
        Column("device_id", STRING, "Terminal"),
        Column("synced_at", DATETIME, "Synced at"),
        Column("offline_since", DATETIME, "Offline since"),
        Column("offline_seconds", INT, "Offline (s)"),
        Column("items_received", INT, "Items received"),
        Column("items_applied", INT, "Items applied"),
        Column("items_duplicate", INT, "Items duplicate"),
        Column("items_rejected", INT, "Items rejected"),
        Column("items_conflict", INT, "Items conflict"),
        Column("duration_ms", INT, "Duration (ms)"),
        Column("clock_skew_seconds", INT, "Clock skew (s)"),
        Column("received_at", DATETIME, "Received at"),
    ),
)
FCT_API_PERFORMANCE = Table(
    "fct_api_performance",
    "marts.fct_api_performance",
    "API performance by endpoint and hour",
    audience="admin",
    date_column="hour_start",
    subject_column="endpoint",
    columns=(
        Column("endpoint_hour", STRING, "Row id"),
        Column("hour_start", DATETIME, "Hour start"),
        Column("method", STRING, "Method"),
        Column("route", STRING, "Route"),
        Column("endpoint", STRING, "Endpoint"),
        Column("instances", INT, "Instances"),
        Column("requests", INT, "Requests"),
        Column("errors_4xx", INT, "Errors 4xx"),
        Column("errors_5xx", INT, "Errors 5xx"),
        Column("error_rate_4xx", FLOAT, "Error rate 4xx"),
        Column("error_rate_5xx", FLOAT, "Error rate 5xx"),
        Column("latency_ms_mean", FLOAT, "Latency mean (ms)"),
        Column("latency_ms_p50", FLOAT, "Latency p50 (ms)"),
        Column("latency_ms_p95", FLOAT, "Latency p95 (ms)"),
        Column("latency_ms_max", FLOAT, "Latency max (ms)"),
    ),
)
DEMAND_FORECAST = Table(
    "demand_forecast",
    "analytics.demand_forecast",
    "Demand forecast by store and product",
    audience="stores",
    date_column="ds",
    ai=True,
    columns=(
        Column("store_id", STRING, "Store"),
        Column("product_id", STRING, "Product"),
        Column("ds", DATE, "Day"),
        Column("horizon_day", INT, "Horizon day"),
        Column("yhat", FLOAT, "Forecast (units)"),
        Column("lo_80", FLOAT, "80 % low"),
        Column("hi_80", FLOAT, "80 % high"),
        Column("lo_95", FLOAT, "95 % low"),
        Column("hi_95", FLOAT, "95 % high"),
        Column("model", STRING, "Model"),
        Column("cutoff", DATE, "Cutoff"),
        Column("pattern", STRING, "Pattern"),
        Column("confidence", FLOAT, "Confidence"),
    ),
)
FORECAST_ACCURACY = Table(
    "forecast_accuracy",
    "analytics.forecast_accuracy",
    "Forecast accuracy (backtest)",
    audience="stores",
    date_column="cutoff",
    score_column="mase",
    ai=True,
    columns=(
        Column("level", STRING, "Level"),
        Column("store_id", STRING, "Store"),
        Column("product_id", STRING, "Product"),
        Column("category", STRING, "Category"),
        Column("n_series", INT, "Series"),
        Column("mase", FLOAT, "MASE"),
        Column("wape", FLOAT, "WAPE"),
        Column("bias", FLOAT, "Bias"),
        Column("coverage_80", FLOAT, "80 % coverage"),
        Column("coverage_95", FLOAT, "95 % coverage"),
        Column("holdout_days", INT, "Holdout (days)"),
        Column("cutoff", DATE, "Cutoff"),
        Column("weekly_band_factor", FLOAT, "Weekly band factor"),
    ),
)
DEMAND_FORECAST_TOTALS = Table(
    "demand_forecast_totals",
    "analytics.demand_forecast_totals",
    "Coherent forecast totals (chain, store, category)",
    audience="stores",
    date_column="ds",
    subject_column="key",
    ai=True,
    columns=(
        Column("level", STRING, "Level"),
        Column("key", STRING, "Key"),
        Column("ds", DATE, "Day"),
        Column("horizon_day", INT, "Horizon day"),
        Column("yhat", FLOAT, "Forecast (units)"),
        Column("lo_80", FLOAT, "80 % low"),
        Column("hi_80", FLOAT, "80 % high"),
        Column("lo_95", FLOAT, "95 % low"),
        Column("hi_95", FLOAT, "95 % high"),
        Column("n_series", INT, "Series"),
    ),
)
REORDER_SUGGESTIONS = Table(
    "reorder_suggestions",
    "analytics.reorder_suggestions",
    "Reorder suggestions",
    audience="stores",
    subject_column="product_id",
    ai=True,
    columns=(
        Column("store_id", STRING, "Store"),
        Column("product_id", STRING, "Product"),
        Column("category", STRING, "Category"),
        Column("on_hand_units", FLOAT, "On hand units"),
        Column("avg_daily_demand", FLOAT, "Avg daily demand"),
        Column("days_of_cover", FLOAT, "Days of cover"),
        Column("lead_time_days", INT, "Lead time (days)"),
        Column("lead_time_demand", FLOAT, "Lead time demand"),
        Column("safety_stock", FLOAT, "Safety stock"),
        Column("reorder_point", FLOAT, "Reorder point"),
        Column("reorder_quantity", INT, "Reorder quantity"),
        Column("needs_reorder", BOOL, "Needs reorder"),
        Column("stockout_risk", BOOL, "Stockout risk"),
        Column("service_level", FLOAT, "Service level"),
        Column("confidence", FLOAT, "Confidence"),
    ),
)
SALES_ANOMALIES = Table(
    "sales_anomalies",
    "analytics.sales_anomalies",
    "Sales anomalies by store and day",
    audience="stores",
    date_column="sale_date",
    subject_column="store_id",
    score_column="anomaly_score",
    ai=True,
    columns=(
        Column("store_id", STRING, "Store"),
        Column("sale_date", DATE, "Sale date"),
        Column("anomaly_score", FLOAT, "Anomaly score"),
        Column("threshold", FLOAT, "Threshold"),
        Column("is_anomaly", BOOL, "Anomaly"),
        Column("detectors", STRING, "Detectors"),
        Column("severity", STRING, "Severity"),
        Column("drivers", STRING, "Drivers"),
        Column("net_revenue_cents", INT, "Net revenue (cents)"),
        Column("transactions", INT, "Transactions"),
        Column("avg_basket_cents", FLOAT, "Avg basket (cents)"),
        Column("refund_rate", FLOAT, "Refund rate"),
        Column("void_rate", FLOAT, "Void rate"),
        Column("discount_rate", FLOAT, "Discount rate"),
        Column("units", INT, "Units"),
        Column("max_abs_z", FLOAT, "Max abs z"),
        Column("expected_revenue_lo_cents", FLOAT, "Expected revenue lo (cents)"),
        Column("expected_revenue_hi_cents", FLOAT, "Expected revenue hi (cents)"),
    ),
)
CASHIER_ANOMALIES = Table(
    "cashier_anomalies",
    "analytics.cashier_anomalies",
    "Cashier anomalies",
    audience="stores",
    date_column="sale_date",
    subject_column="cashier_id",
    score_column="anomaly_score",
    ai=True,
    columns=(
        Column("store_id", STRING, "Store"),
        Column("cashier_id", STRING, "Cashier"),
        Column("sale_date", DATE, "Sale date"),
        Column("transactions", INT, "Transactions"),
        Column("refunds", INT, "Refunds"),
        Column("refund_cents", INT, "Refund (cents)"),
        Column("voids", INT, "Voids"),
        Column("discount_rate", FLOAT, "Discount rate"),
        Column("anomaly_score", FLOAT, "Anomaly score"),
        Column("max_z", FLOAT, "Largest z-score"),
        Column("expected_refunds_hi", FLOAT, "Expected refunds hi"),
        Column("is_anomaly", BOOL, "Anomaly"),
        Column("drivers", STRING, "Drivers"),
        Column("severity", STRING, "Severity"),
    ),
)
SECURITY_ANOMALIES = Table(
    "security_anomalies",
    "analytics.security_anomalies",
    "Security anomalies by IP address and day",
    audience="admin",
    date_column="event_date",
    subject_column="source_ip",
    score_column="anomaly_score",
    ai=True,
    columns=(
        Column("source_ip", STRING, "IP address"),
        Column("event_date", DATE, "Event date"),
        Column("events", INT, "Events"),
        Column("failures", INT, "Failures"),
        Column("distinct_users", INT, "Distinct users"),
        Column("failed_users", INT, "Failed users"),
        Column("events_per_minute", FLOAT, "Events per minute"),
        Column("failure_rate", FLOAT, "Failure rate"),
        Column("active_hours", INT, "Active hours"),
        Column("first_seen", DATETIME, "First seen"),
        Column("last_seen", DATETIME, "Last seen"),
        Column("anomaly_score", FLOAT, "Anomaly score"),
        Column("max_z", FLOAT, "Largest z-score"),
        Column("is_anomaly", BOOL, "Anomaly"),
        Column("drivers", STRING, "Drivers"),
        Column("severity", STRING, "Severity"),
    ),
)
INVENTORY_ANOMALIES = Table(
    "inventory_anomalies",
    "analytics.inventory_anomalies",
    "Inventory anomalies (stock counts)",
    audience="stores",
    date_column="counted_at",
    subject_column="product_id",
    score_column="max_z",
    ai=True,
    columns=(
        Column("store_id", STRING, "Store"),
        Column("product_id", STRING, "Product"),
        Column("previous_at", DATETIME, "Previous at"),
        Column("counted_at", DATETIME, "Counted at"),
        Column("previous_level", INT, "Previous level"),
        Column("counted_level", INT, "Counted level"),
        Column("moved_units", INT, "Moved units"),
        Column("sold_units", INT, "Sold units"),
        Column("expected_level", INT, "Expected level"),
        Column("missing_units", INT, "Missing units"),
        Column("max_z", FLOAT, "Largest z-score"),
        Column("is_anomaly", BOOL, "Anomaly"),
        Column("severity", STRING, "Severity"),
        Column("z_threshold", FLOAT, "z-score threshold"),
    ),
)
PERFORMANCE_ANOMALIES = Table(
    "performance_anomalies",
    "analytics.performance_anomalies",
    "API performance anomalies",
    audience="admin",
    date_column="hour_start",
    subject_column="endpoint",
    score_column="anomaly_score",
    ai=True,
    columns=(
        Column("endpoint", STRING, "Endpoint"),
        Column("method", STRING, "Method"),
        Column("route", STRING, "Route"),
        Column("hour_start", DATETIME, "Hour start"),
        Column("requests", INT, "Requests"),
        Column("errors_4xx", INT, "Errors 4xx"),
        Column("errors_5xx", INT, "Errors 5xx"),
        Column("error_rate_4xx", FLOAT, "Error rate 4xx"),
        Column("error_rate_5xx", FLOAT, "Error rate 5xx"),
        Column("latency_ms_mean", FLOAT, "Latency mean (ms)"),
        Column("latency_ms_p95", FLOAT, "Latency p95 (ms)"),
        Column("baseline_hours", INT, "Baseline hours"),
        Column("expected_latency_p95_ms", FLOAT, "Expected latency p95 (ms)"),
        Column("expected_latency_p95_hi_ms", FLOAT, "Expected latency p95 hi (ms)"),
        Column("expected_error_rate", FLOAT, "Expected error rate"),
        Column("expected_error_rate_hi", FLOAT, "Expected error rate hi"),
        Column("z_latency", FLOAT, "Z latency"),
        Column("z_error_rate", FLOAT, "Z error rate"),
        Column("anomaly_score", FLOAT, "Anomaly score"),
        Column("max_z", FLOAT, "Largest z-score"),
        Column("z_threshold", FLOAT, "z-score threshold"),
        Column("is_anomaly", BOOL, "Anomaly"),
        Column("severity", STRING, "Severity"),
        Column("drivers", STRING, "Drivers"),
    ),
)
ACCESS_ANOMALIES = Table(
    "access_anomalies",
    "analytics.access_anomalies",
    "Unusual data access",
    audience="admin",
    date_column="access_date",
    subject_column="principal",
    score_column="anomaly_score",
    columns=(
        Column("principal", STRING, "Principal"),
        Column("principal_kind", STRING, "Principal kind"),
        Column("role", STRING, "Role"),
        Column("access_date", DATE, "Access date"),
        Column("reads", INT, "Reads"),
        Column("distinct_stores", INT, "Distinct stores"),
        Column("new_stores", INT, "New stores"),
        Column("stores", STRING, "Stores"),
        Column("distinct_routes", INT, "Distinct routes"),
        Column("off_hours_reads", INT, "Off hours reads"),
        Column("off_hours_share", FLOAT, "Off hours share"),
        Column("source_ips", INT, "Source ips"),
        Column("first_at", DATETIME, "First at"),
        Column("last_at", DATETIME, "Last at"),
        Column("baseline_days", INT, "Baseline (days)"),
        Column("expected_reads", FLOAT, "Expected reads"),
        Column("expected_reads_hi", FLOAT, "Expected reads hi"),
        Column("expected_stores", FLOAT, "Expected stores"),
        Column("expected_stores_hi", FLOAT, "Expected stores hi"),
        Column("expected_off_hours_share", FLOAT, "Expected off hours share"),
        Column("z_reads", FLOAT, "Z reads"),
        Column("z_stores", FLOAT, "Z stores"),
        Column("z_new_stores", FLOAT, "Z new stores"),
        Column("z_off_hours", FLOAT, "Z off hours"),
        Column("anomaly_score", FLOAT, "Anomaly score"),
        Column("max_z", FLOAT, "Largest z-score"),
        Column("z_threshold", FLOAT, "z-score threshold"),
        Column("is_anomaly", BOOL, "Anomaly"),
        Column("severity", STRING, "Severity"),
        Column("drivers", STRING, "Drivers"),
    ),
)
BUSINESS_INSIGHTS = Table(
    "business_insights",
    "analytics.business_insights",
    "Business insights",
    audience="stores",
    date_column="as_of",
    subject_column="subject",
    score_column="priority",
    ai=True,
    columns=(
        Column("insight_id", STRING, "Insight id"),
        Column("category", STRING, "Category"),
        Column("store_id", STRING, "Store"),
        Column("subject", STRING, "Subject"),
        Column("title", STRING, "Title"),
        Column("evidence", STRING, "Evidence"),
        Column("action", STRING, "Action"),
        Column("impact_cents", FLOAT, "Impact (cents)"),
        Column("impact", FLOAT, "Impact"),
        Column("confidence", FLOAT, "Confidence"),
        Column("urgency", FLOAT, "Urgency"),
        Column("priority", FLOAT, "Priority"),
        Column("as_of", DATE, "As of"),
    ),
)


# Every published table, by name, in publishing order.
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        FCT_SALES_DAILY,
        DIM_STORE,
        DIM_PRODUCT,
        FCT_STOCK_LEVELS,
        FCT_SECURITY_EVENTS,
        FCT_IP_RISK,
        FCT_SYNC_SESSIONS,
        FCT_API_PERFORMANCE,
        DEMAND_FORECAST,
        FORECAST_ACCURACY,
        DEMAND_FORECAST_TOTALS,
        REORDER_SUGGESTIONS,
        SALES_ANOMALIES,
        CASHIER_ANOMALIES,
        SECURITY_ANOMALIES,
        INVENTORY_ANOMALIES,
        PERFORMANCE_ANOMALIES,
        ACCESS_ANOMALIES,
        BUSINESS_INSIGHTS,
    )
}
AI_TABLES: tuple[str, ...] = tuple(name for name, t in TABLES.items() if t.ai)
ADMIN_TABLES: frozenset[str] = frozenset(name for name, t in TABLES.items() if t.audience == "admin")
SHARED_TABLES: frozenset[str] = frozenset(name for name, t in TABLES.items() if t.audience == "shared")


@dataclass(frozen=True, slots=True)
class Driver:
    """How people read an anomaly driver (a feature column named in a row's ``drivers``): ``words`` in
    sentences ("unusual refund value"), and for the store-day features a display ``scale`` and ``fmt``."""

    words: str
    scale: float = 1.0
    fmt: str = "{:,.0f}"


DRIVERS: dict[str, Driver] = {
    "net_revenue_cents": Driver("net revenue", 0.01, "{:,.2f}"),
    "transactions": Driver("transactions"),
    "avg_basket_cents": Driver("average basket", 0.01, "{:,.2f}"),
    "refund_rate": Driver("refund rate", 100, "{:.1f} %"),
    "void_rate": Driver("void rate", 100, "{:.1f} %"),
    "discount_rate": Driver("discount rate", 100, "{:.1f} %"),
    "units_residual": Driver("units against forecast"),
    "revenue_residual": Driver("revenue against forecast"),
    "refunds": Driver("refunds"),
    "refund_cents": Driver("refund value"),
    "voids": Driver("voids"),
    "failures": Driver("failed logins"),
    "failed_users": Driver("usernames tried"),
    "events_per_minute": Driver("login rate"),
    "missing_units": Driver("missing units"),
}
"""Every driver the anomaly tables name, in words: the insights and the dashboards read it from here."""

STORE_DAY_FEATURES: tuple[str, ...] = (
    "net_revenue_cents",
    "transactions",
    "avg_basket_cents",
    "refund_rate",
    "void_rate",
    "discount_rate",
)
"""The store-day features of ``sales_anomalies`` (the feature detector's inputs, published beside each
store-day's flags)."""


def driver_words(drivers: str | None) -> list[str]:
    """Comma-joined driver columns (``"refund_cents,voids"``) as words (``["refund value", "voids"]``), in
    order, without duplicates; an unknown name has its underscores made spaces."""
    names = [d.strip() for d in (drivers or "").split(",")]
    words = [DRIVERS[n].words if n in DRIVERS else n.replace("_", " ") for n in names]
    return list(dict.fromkeys(w for w in words if w))


def check_tables(tables: dict[str, pl.DataFrame], contract: Iterable[Table] | None = None) -> None:
    """Raise :class:`SnapshotContractError` naming every table of ``tables`` that lacks a declared column
    or holds one of another kind (a table the contract does not know is an error too)."""
    declared = {t.name: t for t in (contract if contract is not None else TABLES.values())}
    problems = []
    for name, frame in tables.items():
        table = declared.get(name)
        if table is None:
            problems.append(f"{name}: not in the snapshot contract (chainsync/snapshot_contract.py)")
            continue
        problems.extend(f"{name}: {p}" for p in table.problems(frame.schema))
    if problems:
        raise SnapshotContractError(
            "the snapshot does not meet its contract (chainsync/snapshot_contract.py): " + "; ".join(problems)
        )

"""Anomaly benchmark: precision, recall and F1 against the generator's planted anomalies, and rows/s.

    uv run python bench/anomaly.py                         # 10 stores x 150 products x 730 days
    uv run python bench/anomaly.py --days 365 --seed 3 --end-date 2026-11-27

Generates a chain (its calendar pinned by ``--end-date``, so a seed gives the same data on any day), builds
the detectors' feature tables with the pipeline's own SQL (over DuckDB views named
like the warehouse relations, on the generated Parquet), scores them with the pipeline's detectors and
matches flags with ``ground_truth.parquet`` as incidents:

- sales store-days (``score_store_days`` with ``store_day_scores``, the core method of ``chainsync detect``,
  then ``flag_store_days``): strict matching — a flagged store-day is right only when it is a planted
  sales_spike / sales_drop of that store and local day (the chain's promotions, weather days and closures
  are no anomaly, so flags there count against precision); two extra lines split the flags by the view
  that fired (features ensemble, retrospective), outside the totals; a third, also outside them, is the
  method's own decision (``score_panel``'s ``is_anomaly`` on units or revenue, with its isolation and
  precedent tests), which the pipeline's retrospective view does not read (it decides on z); recall by
  planted size below;
- cashier shifts (``score_cashier_shifts``): right when cashier and day fall in a refund_abuse window;
- security IP-days (``score_security``): right when the IP is a planted brute_force_ip or
  credential_stuffing source.

Precision = right flags / flags; recall = planted incidents with at least one right flag / planted incidents
- inventory counts (``score_shrinkage``): right when store and product are a planted shrinkage and the count
  closes its window (ordinary miscounts and single lost units are no anomaly); recall by units taken;
- API endpoint-hours (``score_performance``, over ``fct_api_performance`` built by the dbt model's own SQL
  from the generated request log): right when endpoint and hour fall in a planted latency_regression or
  error_burst.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.defs.anomalies.detectors import (  # noqa: E402
    CASHIER_FEATURES_SQL,
    SECURITY_FEATURES_SQL,
    SHRINKAGE_FEATURES_SQL,
    score_cashier_shifts,
    score_security,
    score_shrinkage,
)
from pipelines.defs.anomalies.performance import (  # noqa: E402
    PERFORMANCE_FEATURES_SQL,
    score_performance,
)
from pipelines.defs.anomalies.scoring import (  # noqa: E402
    ENSEMBLE,
    FEATURES_SQL,
    RESIDUAL_MIN_Z,
    RESIDUAL_TARGETS,
    RESIDUAL_THRESHOLD,
    STORE_DAY_CONFIG,
    SalesThresholds,
    flag_store_days,
    score_store_days,
    store_day_scores,
)
from tools.generator import generate_chain  # noqa: E402

DBT_MODELS = Path(__file__).resolve().parents[1] / "dbt_project" / "models"


def method_store_days(features: pl.DataFrame) -> pl.DataFrame:
    """store_id, sale_date of the store-days the method itself flags (``score_panel``'s ``is_anomaly`` with
    the pipeline's ``STORE_DAY_CONFIG``) on daily units or net revenue."""
    from chainsync.anomalies import score_panel

    parts = []
    for column in RESIDUAL_TARGETS.values():
        panel = features.select(unique_id="store_id", ds="sale_date", y=pl.col(column).cast(pl.Float64))
        scored = score_panel(panel.drop_nulls(), freq="D", config=STORE_DAY_CONFIG)
        flagged = scored.filter("is_anomaly")
        parts.append(flagged.select(store_id="unique_id", sale_date=pl.col("ds").cast(pl.Date)))
    return pl.concat(parts).unique()


def _model_sql(path: str, refs: dict[str, str]) -> str:
    """A dbt model's SQL with its ``ref``/``source`` calls replaced by relation names."""
    sql = (DBT_MODELS / path).read_text()
    for call, relation in refs.items():
        sql = sql.replace("{{ " + call + " }}", relation)
    return sql


def views(con: duckdb.DuckDBPyConnection, chain: Path) -> None:
    con.execute(
        "create schema if not exists intermediate; create schema if not exists marts; "
        "create schema if not exists staging"
    )
    con.execute(
        f"""
        create view staging.stg_pos__inventory_movements as
        select store_id, product_id, kind as movement_kind, quantity_delta, counted_level, occurred_at
        from read_parquet('{chain}/inventory.parquet')
        """
    )
    con.execute(
        f"""
        create view staging.stg_pos__sale_lines as
        select store_id, product_id, kind as sale_kind, quantity, occurred_at
        from read_parquet('{chain}/sales_lines/*.parquet')
        """
    )
    con.execute(
        f"""
        create view intermediate.int_sale_lines_localized as
        select l.store_id, l.cashier_id, l.transaction_id, l.kind as sale_kind, l.quantity,
               l.unit_price_cents, l.discount_cents,
               cast(timezone(s.timezone, l.occurred_at) as date) as sale_date
        from read_parquet('{chain}/sales_lines/*.parquet') l
        join read_parquet('{chain}/stores.parquet') s using (store_id)
        """
    )
    con.execute(
        f"""
        create view marts.fct_security_events as
        select source_ip, username, occurred_at, outcome != 'success' as is_failure,
               cast(occurred_at as date) as event_date
        from read_parquet('{chain}/security.parquet')
        """
    )
    # The request log through the dbt project's own staging and mart SQL (bucket_start is UTC).
    staging = _model_sql(
        "staging/ops/stg_ops__request_stats.sql",
        {"source('ops', 'request_stats')": f"read_parquet('{chain}/request_stats.parquet')"},
    ).replace("cast(bucket_start as timestamp)", "cast(timezone('UTC', bucket_start) as timestamp)")
    con.execute(f"create view staging.stg_ops__request_stats as {staging}")
    mart = _model_sql(
        "marts/operations/fct_api_performance.sql",
        {"ref('stg_ops__request_stats')": "staging.stg_ops__request_stats"},
    )
    con.execute(f"create table marts.fct_api_performance as {mart}")


def prf(right_flags: int, flags: int, found: int, planted: int) -> tuple[float, float, float]:
    precision = right_flags / flags if flags else 0.0
    recall = found / planted if planted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _row(
    name: str, scored: pl.DataFrame, flagged: pl.DataFrame, hit: pl.DataFrame, planted: pl.DataFrame
) -> tuple[str, int, int, int, int, int]:
    """A table row: rows scored, flags that are right (``hit``: flags joined to the planted incident ``id``
    they fall in), flags, planted incidents found, planted incidents."""
    right = hit.select(flagged.columns).unique().height
    return (name, scored.height, right, flagged.height, hit["id"].n_unique(), planted.height)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=150)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--end-date",
        type=date.fromisoformat,
        default=date(2026, 11, 27),
        help="last day of the generated history (pinned: the same seed gives the same chain any day)",
    )
    parser.add_argument("--quantile", type=float, default=0.99, help="ensemble score quantile (sales)")
    parser.add_argument(
        "--ensemble",
        default=",".join(ENSEMBLE),
        help="pyod detectors of the sales ensemble, rank-averaged (ECOD, IForest, COPOD, HBOS)",
    )
    parser.add_argument(
        "--residual-threshold",
        type=float,
        default=RESIDUAL_THRESHOLD,
        help="robust z of the retrospective method (sales retrospective view)",
    )
    parser.add_argument(
        "--residual-min-z",
        type=float,
        default=RESIDUAL_MIN_Z,
        help="robust |z| of some sales feature the retrospective view needs (0: the method alone)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp) / "chain"
        generate_chain(
            chain,
            stores=args.stores,
            products=args.products,
            days=args.days,
            seed=args.seed,
            end=args.end_date,
        )
        truth = pl.read_parquet(chain / "ground_truth.parquet")
        zones = dict(pl.read_parquet(chain / "stores.parquet").select("store_id", "timezone").iter_rows())
        con = duckdb.connect()
        views(con, chain)
        started = time.perf_counter()
        sales_features = pl.from_arrow(con.sql(FEATURES_SQL).to_arrow_table())
        cashier_features = pl.from_arrow(con.sql(CASHIER_FEATURES_SQL).to_arrow_table())
        security_features = pl.from_arrow(con.sql(SECURITY_FEATURES_SQL).to_arrow_table())
        count_features = pl.from_arrow(con.sql(SHRINKAGE_FEATURES_SQL).to_arrow_table())
        performance_features = pl.from_arrow(con.sql(PERFORMANCE_FEATURES_SQL).to_arrow_table())
        features_seconds = time.perf_counter() - started
        started = time.perf_counter()
        forecasts = store_day_scores(sales_features)  # type: ignore[arg-type]
        forecast_seconds = time.perf_counter() - started
        import pyod.models.ecod  # noqa: F401  (its ~12 s import is not scoring time)
        import pyod.models.iforest  # noqa: F401

        started = time.perf_counter()
        thresholds = SalesThresholds(
            score_quantile=args.quantile,
            residual=args.residual_threshold,
            residual_min_z=args.residual_min_z,
        )
        detectors = tuple(d.strip() for d in args.ensemble.split(",") if d.strip())
        sales_raw = score_store_days(sales_features, forecasts, detectors=detectors)  # type: ignore[arg-type]
        sales = flag_store_days(sales_raw, thresholds)
        cashiers = score_cashier_shifts(cashier_features)  # type: ignore[arg-type]
        security = score_security(security_features)  # type: ignore[arg-type]
        shrinkage = score_shrinkage(count_features)  # type: ignore[arg-type]
        performance = score_performance(performance_features)  # type: ignore[arg-type]
        scoring_seconds = time.perf_counter() - started

    def local_day(column: str) -> pl.Expr:
        return pl.struct("store_id", column).map_elements(
            lambda r: r[column].astimezone(__import__("zoneinfo").ZoneInfo(zones[r["store_id"]])).date(),
            return_dtype=pl.Date,
        )

    days = truth.filter(pl.col("anomaly_type").is_in(["sales_spike", "sales_drop"])).with_columns(
        day=local_day("start_at")
    )
    abuse = truth.filter(pl.col("anomaly_type") == "refund_abuse").with_columns(
        first=local_day("start_at"), last=local_day("end_at")
    )
    ips = truth.filter(pl.col("anomaly_type").is_in(["brute_force_ip", "credential_stuffing"]))

    def sales_row(name: str, flagged: pl.DataFrame) -> tuple[str, int, int, int, int, int]:
        """Strict: a flag is right only on a planted spike or drop's store and local day."""
        hit_day = flagged.join(
            days.select("store_id", sale_date="day", id="anomaly_id"), on=["store_id", "sale_date"]
        )
        right = hit_day.select("store_id", "sale_date").unique().height
        found = hit_day["id"].n_unique()
        return (name, sales.height, right, flagged.height, found, days.height)

    rows = []
    # Sales store-days: one row per store-day whichever view fired; the views apart, outside the totals.
    flagged = sales.filter(pl.col("is_anomaly")).select("store_id", "sale_date", "detectors")
    rows.append(sales_row("sales store-days (spike, drop)", flagged))
    views_apart = [
        sales_row(f"  of which {view}", flagged.filter(pl.col("detectors").str.contains(view)))
        for view in ("features", "retrospective")
    ]
    views_apart.append(
        sales_row("  the method's own decision", method_store_days(sales_features))  # type: ignore[arg-type]
    )
    # Cashier shifts.
    flagged_c = cashiers.filter(pl.col("is_anomaly")).select("cashier_id", "sale_date")
    hit_c = flagged_c.join(
        abuse.select("cashier_id", "first", "last", id="anomaly_id"), on="cashier_id"
    ).filter(pl.col("sale_date").is_between("first", "last"))
    rows.append(_row("cashier shifts (refund abuse)", cashiers, flagged_c, hit_c, abuse))
    # Security IP-days.
    flagged_s = security.filter(pl.col("is_anomaly")).select("source_ip", "event_date")
    hit_s = flagged_s.join(ips.select("source_ip", id="anomaly_id"), on="source_ip")
    rows.append(_row("security IP-days (brute force, stuffing)", security, flagged_s, hit_s, ips))

    # Inventory counts: right when store and product are a planted shrinkage and the count closes its window.
    planted_shrink = truth.filter(pl.col("anomaly_type") == "shrinkage")
    flagged_i = shrinkage.filter(pl.col("is_anomaly")).select(
        "store_id", "product_id", pl.col("counted_at").dt.convert_time_zone("UTC")
    )
    hit_i = flagged_i.join(
        planted_shrink.select("store_id", "product_id", "start_at", "end_at", id="anomaly_id"),
        on=["store_id", "product_id"],
    ).filter(pl.col("counted_at").is_between(pl.col("start_at"), pl.col("end_at")))
    rows.append(_row("inventory counts (shrinkage)", shrinkage, flagged_i, hit_i, planted_shrink))

    # API endpoint-hours: right when endpoint and hour fall in a planted latency regression or error burst.
    degradations = truth.filter(pl.col("anomaly_type").is_in(["latency_regression", "error_burst"]))
    flagged_p = performance.filter(pl.col("is_anomaly")).select(
        "endpoint", hour=pl.col("hour_start").dt.replace_time_zone("UTC")
    )
    hit_p = flagged_p.join(
        degradations.select(endpoint="route", start="start_at", end="end_at", id="anomaly_id"), on="endpoint"
    ).filter((pl.col("hour") >= pl.col("start")) & (pl.col("hour") < pl.col("end")))
    rows.append(_row("API endpoint-hours (latency, errors)", performance, flagged_p, hit_p, degradations))

    print(f"chain: {args.stores} stores x {args.products} products x {args.days} days, seed {args.seed}")
    print(
        f"sales: ensemble {'+'.join(detectors)} above its {args.quantile} quantile; retrospective |z| >= "
        f"{args.residual_threshold} with a feature at |z| >= {args.residual_min_z}; end date {args.end_date}"
    )
    print(f"{'detector':42} {'rows':>8} {'flags':>6} {'right':>6} {'found':>9} {'P':>6} {'R':>6} {'F1':>6}")
    totals = [0, 0, 0, 0, 0]
    for name, n, right_flags, flags, found_n, planted in rows:
        p, r, f = prf(right_flags, flags, found_n, planted)
        found_text = f"{found_n}/{planted}"
        print(f"{name:42} {n:8d} {flags:6d} {right_flags:6d} {found_text:>9} {p:6.2f} {r:6.2f} {f:6.2f}")
        totals = [
            totals[0] + n,
            totals[1] + right_flags,
            totals[2] + flags,
            totals[3] + found_n,
            totals[4] + planted,
        ]
    for name, n, right_flags, flags, found_n, planted in views_apart:
        p, r, f = prf(right_flags, flags, found_n, planted)
        found_text = f"{found_n}/{planted}"
        print(f"{name:42} {n:8d} {flags:6d} {right_flags:6d} {found_text:>9} {p:6.2f} {r:6.2f} {f:6.2f}")
    p, r, f = prf(totals[1], totals[2], totals[3], totals[4])
    found_text = f"{totals[3]}/{totals[4]}"
    print(
        f"{'all':42} {totals[0]:8d} {totals[2]:6d} {totals[1]:6d} {found_text:>9} {p:6.2f} {r:6.2f} {f:6.2f}"
    )
    not_covered = truth.filter(
        ~pl.col("anomaly_type").is_in(
            [
                "sales_spike",
                "sales_drop",
                "refund_abuse",
                "brute_force_ip",
                "credential_stuffing",
                "shrinkage",
                "latency_regression",
                "error_burst",
            ]
        )
    )
    print(f"not covered by these detectors: {not_covered['anomaly_type'].value_counts().rows()}")
    # Recall by planted size: sales by multiplier, shrinkage by units taken.
    sales_found = set(
        flagged.join(days.select("store_id", sale_date="day", id="anomaly_id"), on=["store_id", "sale_date"])[
            "id"
        ]
    )
    shrink_found = set(hit_i["id"])
    for label, planted, found_ids in (
        ("sales store-days by size (x usual)", days, sales_found),
        ("shrinkage by units taken", planted_shrink, shrink_found),
    ):
        by_size = (
            planted.with_columns(found=pl.col("anomaly_id").is_in(list(found_ids)))
            .group_by("magnitude")
            .agg(pl.col("found").sum(), pl.len())
            .sort("magnitude")
        )
        cells = ", ".join(f"{m:g}: {f}/{n}" for m, f, n in by_size.iter_rows())
        print(f"recall, {label}: {cells}")
    print(
        f"feature SQL {features_seconds:.2f} s; store-day retrospective scores {forecast_seconds:.2f} s "
        f"({forecasts.height:,} store-day x target rows); scoring {scoring_seconds:.2f} s = "
        f"{totals[0] / scoring_seconds:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()

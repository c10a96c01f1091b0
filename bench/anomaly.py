"""Anomaly benchmark: precision, recall and F1 against the generator's planted anomalies, and rows/s.

    uv run python bench/anomaly.py                         # 10 stores x 150 products x 730 days
    uv run python bench/anomaly.py --days 365 --seed 3

Generates a chain, builds the detectors' feature tables with the pipeline's own SQL (over DuckDB views named
like the warehouse relations, on the generated Parquet), scores them with the pipeline's detectors and
matches flags with ``ground_truth.parquet`` as incidents:

- sales store-days (``score_sales_anomalies``): a flagged store-day is right when it is a planted
  sales_spike / sales_drop of that store and local day, or a day inside that store's refund_abuse window;
- cashier shifts (``score_cashier_shifts``): right when cashier and day fall in a refund_abuse window;
- security IP-days (``score_security``): right when the IP is a planted brute_force_ip or
  credential_stuffing source.

Precision = right flags / flags; recall = planted incidents with at least one right flag / planted incidents
- inventory counts (``score_shrinkage``): right when store and product are a planted shrinkage and the count
  closes its window.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chainsync.generator import generate_chain  # noqa: E402
from pipelines.defs.anomalies.detectors import (  # noqa: E402
    CASHIER_FEATURES_SQL,
    SECURITY_FEATURES_SQL,
    SHRINKAGE_FEATURES_SQL,
    score_cashier_shifts,
    score_security,
    score_shrinkage,
)
from pipelines.defs.anomalies.scoring import FEATURES_SQL, score_sales_anomalies  # noqa: E402


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


def prf(right_flags: int, flags: int, found: int, planted: int) -> tuple[float, float, float]:
    precision = right_flags / flags if flags else 0.0
    recall = found / planted if planted else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=150)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quantile", type=float, default=0.99, help="ECOD threshold quantile (sales)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        chain = Path(tmp) / "chain"
        generate_chain(chain, stores=args.stores, products=args.products, days=args.days, seed=args.seed)
        truth = pl.read_parquet(chain / "ground_truth.parquet")
        zones = dict(pl.read_parquet(chain / "stores.parquet").select("store_id", "timezone").iter_rows())
        con = duckdb.connect()
        views(con, chain)
        started = time.perf_counter()
        sales_features = pl.from_arrow(con.sql(FEATURES_SQL).to_arrow_table())
        cashier_features = pl.from_arrow(con.sql(CASHIER_FEATURES_SQL).to_arrow_table())
        security_features = pl.from_arrow(con.sql(SECURITY_FEATURES_SQL).to_arrow_table())
        count_features = pl.from_arrow(con.sql(SHRINKAGE_FEATURES_SQL).to_arrow_table())
        features_seconds = time.perf_counter() - started
        import pyod.models.ecod  # noqa: F401  (its ~12 s import is not scoring time)

        started = time.perf_counter()
        sales = score_sales_anomalies(sales_features, threshold_quantile=args.quantile)  # type: ignore[arg-type]
        cashiers = score_cashier_shifts(cashier_features)  # type: ignore[arg-type]
        security = score_security(security_features)  # type: ignore[arg-type]
        shrinkage = score_shrinkage(count_features)  # type: ignore[arg-type]
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

    rows = []
    # Sales store-days.
    flagged = sales.filter(pl.col("is_anomaly")).select("store_id", "sale_date")
    hit_day = flagged.join(
        days.select("store_id", sale_date="day", id="anomaly_id"), on=["store_id", "sale_date"]
    )
    hit_abuse = flagged.join(
        abuse.select("store_id", "first", "last", id="anomaly_id"), on="store_id"
    ).filter(pl.col("sale_date").is_between("first", "last"))
    right = flagged.join(
        pl.concat(
            [hit_day.select("store_id", "sale_date"), hit_abuse.select("store_id", "sale_date")]
        ).unique(),
        on=["store_id", "sale_date"],
        how="semi",
    ).height
    found = hit_day["id"].n_unique()
    rows.append(("sales store-days (spike, drop)", sales.height, right, flagged.height, found, days.height))
    # Cashier shifts.
    flagged_c = cashiers.filter(pl.col("is_anomaly")).select("cashier_id", "sale_date")
    hit_c = flagged_c.join(
        abuse.select("cashier_id", "first", "last", id="anomaly_id"), on="cashier_id"
    ).filter(pl.col("sale_date").is_between("first", "last"))
    rows.append(
        (
            "cashier shifts (refund abuse)",
            cashiers.height,
            hit_c.select("cashier_id", "sale_date").unique().height,
            flagged_c.height,
            hit_c["id"].n_unique(),
            abuse.height,
        )
    )
    # Security IP-days.
    flagged_s = security.filter(pl.col("is_anomaly")).select("source_ip", "event_date")
    hit_s = flagged_s.join(ips.select("source_ip", id="anomaly_id"), on="source_ip")
    rows.append(
        (
            "security IP-days (brute force, stuffing)",
            security.height,
            hit_s.select("source_ip", "event_date").unique().height,
            flagged_s.height,
            hit_s["id"].n_unique(),
            ips.height,
        )
    )

    # Inventory counts: right when store and product are a planted shrinkage and the count closes its window.
    planted_shrink = truth.filter(pl.col("anomaly_type") == "shrinkage")
    flagged_i = shrinkage.filter(pl.col("is_anomaly")).select(
        "store_id", "product_id", pl.col("counted_at").dt.convert_time_zone("UTC")
    )
    hit_i = flagged_i.join(
        planted_shrink.select("store_id", "product_id", "start_at", "end_at", id="anomaly_id"),
        on=["store_id", "product_id"],
    ).filter(pl.col("counted_at").is_between(pl.col("start_at"), pl.col("end_at")))
    rows.append(
        (
            "inventory counts (shrinkage)",
            shrinkage.height,
            hit_i.select("store_id", "product_id", "counted_at").unique().height,
            flagged_i.height,
            hit_i["id"].n_unique(),
            planted_shrink.height,
        )
    )

    print(f"chain: {args.stores} stores x {args.products} products x {args.days} days, seed {args.seed}")
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
            ]
        )
    )
    print(f"not covered by these detectors: {not_covered['anomaly_type'].value_counts().rows()}")
    print(
        f"feature SQL {features_seconds:.2f} s; scoring {scoring_seconds:.2f} s = "
        f"{totals[0] / scoring_seconds:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()

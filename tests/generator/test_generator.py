"""Invariants of the synthetic chain, checked on a small real chain written to disk."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from chainsync.schemas.events import InventoryEvent, SaleEvent, SecurityEvent, SyncEvent
from tools.generator import generate_chain

SMALL = dict(stores=3, products=20, days=120, end=date(2025, 6, 30))
PARQUET_FILES = ["stores", "products", "cashiers", "devices", "inventory", "security", "sync", "ground_truth"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chain") / "demo"
    generate_chain(out, seed=7, **SMALL)
    return out


@pytest.fixture(scope="module")
def sales(chain: Path) -> pl.DataFrame:
    return pl.read_parquet(chain / "sales_lines" / "*.parquet").with_columns(
        local_day=pl.col("transaction_id").str.slice(5, 8).str.to_date("%Y%m%d")
    )


@pytest.fixture(scope="module")
def truth(chain: Path) -> pl.DataFrame:
    return pl.read_parquet(chain / "ground_truth.parquet")


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*.parquet"))}


def test_same_seed_gives_identical_files_and_another_seed_does_not(chain: Path, tmp_path: Path) -> None:
    again = generate_chain(tmp_path / "again", seed=7, **SMALL)
    assert _files(chain) == _files(tmp_path / "again")
    m1, m2 = (json.loads((p / "manifest.json").read_text()) for p in (chain, tmp_path / "again"))
    assert {k: v for k, v in m1.items() if k != "generated_at"} == {
        k: v for k, v in m2.items() if k != "generated_at"
    }
    assert again.sale_lines == m1["row_counts"]["sales_lines"]

    generate_chain(tmp_path / "other", seed=8, **SMALL)
    other = _files(tmp_path / "other")
    assert other.keys() == _files(chain).keys()
    assert other["sales_lines/part-000.parquet"] != _files(chain)["sales_lines/part-000.parquet"]
    assert other["security.parquet"] != _files(chain)["security.parquet"]


def test_layout_and_manifest_counts(chain: Path, sales: pl.DataFrame) -> None:
    manifest = json.loads((chain / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["seed"] == 7
    assert manifest["params"]["start"] == "2025-03-03" and manifest["params"]["end"] == "2025-06-30"
    counts = manifest["row_counts"]
    for name in PARQUET_FILES:
        assert (chain / f"{name}.parquet").exists()
    assert counts["sales_lines"] == sales.height
    assert counts["sale_transactions"] == sales["event_id"].n_unique()
    assert counts["sales_line_parts"] == len(list((chain / "sales_lines").glob("part-*.parquet"))) == 4
    assert counts["inventory"] == pl.read_parquet(chain / "inventory.parquet").height
    assert counts["security"] == pl.read_parquet(chain / "security.parquet").height
    assert counts["sync"] == pl.read_parquet(chain / "sync.parquet").height
    assert sales["local_day"].min() >= date(2025, 3, 3) and sales["local_day"].max() <= date(2025, 6, 30)
    assert sales["occurred_at"].dtype == pl.Datetime("us", "UTC")


def test_catalog_ids_and_event_ids_are_unique(chain: Path, sales: pl.DataFrame) -> None:
    stores = pl.read_parquet(chain / "stores.parquet")
    products = pl.read_parquet(chain / "products.parquet")
    assert stores["store_id"].to_list() == ["S001", "S002", "S003"]
    assert products["product_id"].to_list()[:2] == ["P0001", "P0002"] and products.height == 20
    assert products["category"].n_unique() >= 8
    assert (products["unit_cost_cents"] < products["price_cents"]).all()
    cashiers = pl.read_parquet(chain / "cashiers.parquet")
    assert cashiers["cashier_id"].str.contains(r"^S\d{3}-C\d{2}$").all()
    assert cashiers["cashier_id"].is_unique().all()
    assert set(sales["cashier_id"].unique()) <= set(cashiers["cashier_id"])
    devices = pl.read_parquet(chain / "devices.parquet")
    assert set(sales["device_id"].unique()) <= set(devices["device_id"])

    per_tx = sales.group_by("event_id").agg(pl.col("transaction_id").n_unique(), pl.col("line_no").sort())
    assert (per_tx["transaction_id"] == 1).all()
    assert sales["transaction_id"].n_unique() == per_tx.height
    # line numbers are 1..n within each transaction
    assert (
        per_tx.select(pl.col("line_no").list.eval(pl.element() == pl.int_range(1, pl.len() + 1)).list.all())
        .to_series()
        .all()
    )
    ids = [per_tx["event_id"]]
    for name in ("inventory", "security", "sync"):
        ids.append(pl.read_parquet(chain / f"{name}.parquet")["event_id"])
    all_ids = pl.concat(ids)
    assert all_ids.is_unique().all()
    assert all_ids.str.contains(
        r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
    ).all()


def test_rows_validate_against_the_event_schemas(chain: Path, sales: pl.DataFrame) -> None:
    sample_ids = sales["event_id"].unique().sort().gather_every(60)
    tx = (
        sales.filter(pl.col("event_id").is_in(sample_ids.implode()))
        .sort("line_no")
        .group_by(
            "event_id",
            "occurred_at",
            "store_id",
            "device_id",
            "transaction_id",
            "kind",
            "cashier_id",
            "payment_type",
        )
        .agg(pl.struct("product_id", "quantity", "unit_price_cents", "discount_cents").alias("lines"))
    )
    assert tx.height > 200
    for row in tx.to_dicts():
        event = SaleEvent.model_validate(row)
        assert len(event.lines) == len(row["lines"])
    assert set(sales["kind"].unique()) == {"sale", "refund", "void"}
    for name, model in (("inventory", InventoryEvent), ("security", SecurityEvent), ("sync", SyncEvent)):
        frame = pl.read_parquet(chain / f"{name}.parquet")
        rows = frame.gather_every(max(1, frame.height // 300)).to_dicts()
        for row in rows:
            model.model_validate({k: v for k, v in row.items() if v is not None})
    assert (sales["discount_cents"] <= sales["quantity"] * sales["unit_price_cents"]).all()
    assert (sales["quantity"] > 0).all()


def test_shop_hours_weekly_seasonality_and_holidays(chain: Path, sales: pl.DataFrame) -> None:
    stores = pl.read_parquet(chain / "stores.parquet")
    for store_id, tz in stores.select("store_id", "timezone").iter_rows():
        hours = sales.filter(pl.col("store_id") == store_id)["occurred_at"].dt.convert_time_zone(tz).dt.hour()
        assert hours.min() >= 8 and hours.max() <= 20
    daily = (
        sales.filter(pl.col("kind") == "sale")
        .group_by("store_id", "local_day")
        .agg(pl.col("quantity").sum().alias("units"))
        .with_columns(weekday=pl.col("local_day").dt.weekday())
    )
    saturday = daily.filter(pl.col("weekday") == 6)["units"].median()
    early_week = daily.filter(pl.col("weekday").is_in([1, 2, 3]))["units"].median()
    assert saturday > 1.3 * early_week  # designed: 1.34 vs about 0.87
    assert date(2025, 4, 20) not in set(daily["local_day"])  # Easter Sunday: closed
    assert date(2025, 5, 26) in set(daily["local_day"])  # Memorial Day: open, busy


def test_slow_movers_sell_only_a_few_units_a_week(chain: Path, sales: pl.DataFrame) -> None:
    open_days = sales.select(pl.col("local_day").n_unique()).item()
    per_product = (
        sales.filter(pl.col("kind") == "sale")
        .group_by("store_id", "product_id")
        .agg(pl.col("local_day").n_unique().alias("selling_days"), pl.col("quantity").sum().alias("units"))
        .with_columns(
            zero_share=1 - pl.col("selling_days") / open_days, per_week=pl.col("units") / open_days * 7
        )
    )
    slow = per_product.filter(pl.col("per_week") < 4)
    assert slow.height >= 3
    assert (slow["zero_share"] > 0.5).all()
    assert per_product["per_week"].max() > 50  # and the fast movers sell every day


def _stock_ledger(chain: Path, sales: pl.DataFrame) -> pl.DataFrame:
    """Every stock movement and count per store-product in time order, with the running book level."""
    inv = pl.read_parquet(chain / "inventory.parquet")
    sold = sales.filter(pl.col("kind") == "sale").select(
        "occurred_at",
        "store_id",
        "product_id",
        pl.lit("sale").alias("kind"),
        (-pl.col("quantity").cast(pl.Int64)).alias("quantity_delta"),
        pl.lit(None, pl.Int64).alias("counted_level"),
    )
    moves = pl.concat([inv.select(sold.columns), sold]).sort("store_id", "product_id", "occurred_at")
    return moves.with_columns(
        movement=pl.col("quantity_delta").fill_null(0).cum_sum().over("store_id", "product_id"),
        opening=pl.col("counted_level").first().over("store_id", "product_id"),
    ).with_columns(book=pl.col("opening") + pl.col("movement"))


def test_inventory_is_consistent_with_sales_and_stock_outs_happen(
    chain: Path, sales: pl.DataFrame, truth: pl.DataFrame
) -> None:
    ledger = _stock_ledger(chain, sales)
    shrink = truth.filter(pl.col("anomaly_type") == "shrinkage").select("store_id", "product_id")
    normal = ledger.join(shrink, on=["store_id", "product_id"], how="anti")
    counts = normal.filter(pl.col("kind") == "count")
    assert counts.height > 200
    assert set(ledger["kind"].unique()) == {"receipt", "adjustment", "shrinkage", "count", "sale"}
    # Between counts, receipts, recorded shrinkage and sales move stock, and ordinary life a little: a
    # counter a few units off, a single unit lost without a record. Most counts match the books exactly, the
    # rest by a few units (the planted losses are 3 to 150 units).
    gap = (counts["counted_level"] - counts["book"]).abs()
    assert (gap == 0).mean() > 0.7  # type: ignore[operator]
    assert (gap > 0).sum() >= 5 and gap.max() <= 15  # type: ignore[operator]
    # Nothing is sold from an empty shelf (the books, off by a miscount at most, never go far below 0) ...
    assert -15 <= normal["book"].min() <= 0  # type: ignore[operator]
    # ... and shelves do run empty: stock-outs on some store-products.
    emptied = normal.filter((pl.col("kind") == "sale") & (pl.col("book") <= 0))
    assert emptied.select(pl.struct("store_id", "product_id").n_unique()).item() >= 3


def test_planted_shrinkage_shows_in_the_counts(chain: Path, sales: pl.DataFrame, truth: pl.DataFrame) -> None:
    ledger = _stock_ledger(chain, sales)
    planted = truth.filter(pl.col("anomaly_type") == "shrinkage")
    assert planted.height >= 1
    for row in planted.iter_rows(named=True):
        counts = ledger.filter(
            (pl.col("store_id") == row["store_id"])
            & (pl.col("product_id") == row["product_id"])
            & (pl.col("kind") == "count")
        )
        at_end = counts.filter(pl.col("occurred_at").is_between(row["start_at"], row["end_at"]))
        assert at_end.height == 1
        expected, found = at_end["book"].item(), at_end["counted_level"].item()
        # The units taken, give or take a miscount or a stray unit lost.
        assert abs((expected - found) - row["magnitude"]) <= 10, (row, expected, found)


def test_planted_sales_spikes_and_drops_are_visible(sales: pl.DataFrame, truth: pl.DataFrame) -> None:
    revenue = (
        sales.filter(pl.col("kind") == "sale")
        .group_by("store_id", "local_day")
        .agg(
            (pl.col("quantity") * pl.col("unit_price_cents") - pl.col("discount_cents")).sum().alias("cents")
        )
        .with_columns(weekday=pl.col("local_day").dt.weekday())
    )
    for kind in ("sales_spike", "sales_drop"):
        rows = truth.filter(pl.col("anomaly_type") == kind)
        assert rows.height == (8 if kind == "sales_spike" else 6)  # graded sizes, each twice
        for row in rows.filter((pl.col("magnitude") >= 2.0) | (pl.col("magnitude") <= 0.5)).iter_rows(
            named=True
        ):
            day = row["start_at"].date() if row["start_at"].hour < 12 else row["end_at"].date()
            store = revenue.filter(pl.col("store_id") == row["store_id"])
            that = store.filter(pl.col("local_day") == day)["cents"].sum()
            weekday = day.isoweekday()
            usual = store.filter((pl.col("weekday") == weekday) & (pl.col("local_day") != day))[
                "cents"
            ].median()
            # The size as planted, within a promotion, the weather and day-to-day noise.
            assert 0.6 * row["magnitude"] < that / usual < 1.6 * row["magnitude"], (row, that, usual)


def test_planted_refund_abuse_stands_out(sales: pl.DataFrame, truth: pl.DataFrame) -> None:
    (row,) = truth.filter(pl.col("anomaly_type") == "refund_abuse").iter_rows(named=True)
    window = sales.filter(
        pl.col("occurred_at").is_between(row["start_at"], row["end_at"])
        & (pl.col("store_id") == row["store_id"])
    )
    rate = (
        window.group_by("cashier_id")
        .agg(((pl.col("kind") == "refund").sum() / pl.len()).alias("refund_rate"))
        .sort("refund_rate", descending=True)
    )
    assert rate["cashier_id"][0] == row["cashier_id"]
    assert rate["refund_rate"][0] > 5 * rate["refund_rate"][1:].median()
    kinds = (
        sales.filter(pl.col("cashier_id") != row["cashier_id"])
        .group_by("event_id")
        .agg(pl.col("kind").first())
    )
    refund_share = kinds.select((pl.col("kind") == "refund").mean()).item()
    void_share = kinds.select((pl.col("kind") == "void").mean()).item()
    assert (
        0.012 < refund_share < 0.03 and 0.005 < void_share < 0.02
    )  # designed: 1.8 % and 1.0 % of transactions


def test_planted_attacks_are_visible_in_security_events(chain: Path, truth: pl.DataFrame) -> None:
    security = pl.read_parquet(chain / "security.parquet")
    brute = truth.filter(pl.col("anomaly_type") == "brute_force_ip")
    (slow,) = brute.filter(pl.col("description").str.starts_with("low-and-slow")).iter_rows(named=True)
    (bf,) = brute.filter(~pl.col("description").str.starts_with("low-and-slow")).iter_rows(named=True)
    # Low and slow: about one failure every ten minutes over most of a day, never a burst.
    tries = security.filter((pl.col("source_ip") == slow["source_ip"]) & (pl.col("kind") == "login_failure"))
    gaps = tries["occurred_at"].sort().diff().drop_nulls().dt.total_seconds()
    assert 100 <= tries.height < 140 and gaps.min() >= 400 and gaps.max() <= 800  # type: ignore[operator]
    failures = security.filter((pl.col("source_ip") == bf["source_ip"]) & (pl.col("kind") == "login_failure"))
    assert failures.height >= 200
    span = failures["occurred_at"].max() - failures["occurred_at"].min()
    assert span.total_seconds() <= 30 * 60
    assert failures["occurred_at"].min() >= bf["start_at"] and failures["occurred_at"].max() <= bf["end_at"]
    assert (
        security.filter((pl.col("source_ip") == bf["source_ip"]) & (pl.col("kind") == "ip_blocked")).height
        == 1
    )

    stuffing = truth.filter(pl.col("anomaly_type") == "credential_stuffing")
    assert stuffing.height >= 3
    by_ip = (
        security.filter(pl.col("source_ip").is_in(stuffing["source_ip"].implode()))
        .group_by("source_ip")
        .agg(
            pl.col("username").n_unique().alias("users"),
            (pl.col("kind") == "login_failure").mean().alias("fail"),
        )
    )
    assert (by_ip["users"] >= 50).all() and (by_ip["fail"] > 0.9).all()
    # Ordinary users: store LAN addresses, few failures each.
    normal = security.filter(pl.col("source_ip").str.starts_with("10."))
    assert normal.filter(pl.col("kind") == "login_failure").height < 0.1 * normal.height
    # A few after-hours logins (01:00-04:00 local) hide among the normal shift logins.
    stores = pl.read_parquet(chain / "stores.parquet")
    local_hours = pl.concat(
        normal.filter((pl.col("kind") == "login_success") & (pl.col("store_id") == sid))["occurred_at"]
        .dt.convert_time_zone(tz)
        .dt.hour()
        for sid, tz in stores.select("store_id", "timezone").iter_rows()
    )
    assert 1 <= (local_hours < 5).sum() < 0.01 * local_hours.len()


def test_sync_sessions_are_coherent(chain: Path) -> None:
    sync = pl.read_parquet(chain / "sync.parquet")
    assert sync.height > 20
    assert (sync["offline_since"] < sync["occurred_at"]).all()
    parts = sync["items_applied"] + sync["items_duplicate"] + sync["items_rejected"] + sync["items_conflict"]
    assert (parts == sync["items_received"]).all()
    assert sync["session_id"].is_unique().all()
    offline_hours = (sync["occurred_at"] - sync["offline_since"]).dt.total_seconds() / 3600
    assert offline_hours.max() > 2 and offline_hours.min() > 0.1


def test_prices_change_and_promotions_discount(sales: pl.DataFrame) -> None:
    per_product = sales.group_by("product_id").agg(pl.col("unit_price_cents").n_unique().alias("prices"))
    assert (per_product["prices"] > 1).sum() >= 3
    promo = sales.filter(pl.col("discount_cents") > 0)
    assert promo.height > 0.02 * sales.height
    share = (promo["discount_cents"] / (promo["quantity"] * promo["unit_price_cents"])).round(2)
    assert set(share.unique()) <= {0.1, 0.15, 0.2, 0.25, 0.3}


def test_refuses_to_overwrite_a_directory_that_is_not_a_chain(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        generate_chain(tmp_path, seed=1, stores=1, products=5, days=28, end=date(2025, 1, 31))
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    # A previous chain is replaced.
    generate_chain(tmp_path / "chain", seed=1, stores=1, products=5, days=28, end=date(2025, 1, 31))
    (tmp_path / "chain" / "sales_lines" / "part-999.parquet").write_bytes(b"stale")
    generate_chain(tmp_path / "chain", seed=1, stores=1, products=5, days=28, end=date(2025, 1, 31))
    assert not (tmp_path / "chain" / "sales_lines" / "part-999.parquet").exists()

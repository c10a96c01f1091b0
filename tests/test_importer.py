"""`chainsync import`: a generated chain and daily-sales CSVs into a real SQLite ops store."""

from __future__ import annotations

import json
import uuid
import zipfile
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from chainsync.ops_store import get_engine
from chainsync.ops_store.catalog import count_rows, upsert_stores
from chainsync.ops_store.events import count_events, iter_events_after
from chainsync.ops_store.tables import products, stores
from chainsync.schemas.events import EVENT_MODELS, SaleEvent
from chainsync.settings import Settings
from tools.cli import app
from tools.generator import generate_chain
from tools.importer import (
    DAILY_SALES_NAMESPACE,
    ImportFormatError,
    import_daily_sales_csv,
    import_generated,
)

WALMART = Path("/work/shared/datasets/walmart/train.csv.zip")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("import") / "chain"
    generate_chain(out, stores=3, products=20, days=60, seed=11, end=date(2025, 3, 31))
    return out


def _all_events(engine, event_type: str) -> list[tuple]:
    return [row for chunk in iter_events_after(engine, event_type, 0) for row in chunk]


def test_import_generated_chain(settings: Settings, chain: Path) -> None:
    engine = get_engine(settings.ops_store)
    sales = pl.read_parquet(chain / "sales_lines" / "*.parquet")
    expected = {
        "sale": sales["event_id"].n_unique(),
        "inventory": pl.read_parquet(chain / "inventory.parquet").height,
        "security": pl.read_parquet(chain / "security.parquet").height,
        "sync": pl.read_parquet(chain / "sync.parquet").height,
    }

    summary = import_generated(engine, chain, batch_size=1000)

    assert summary.applied == expected
    assert summary.duplicate == {k: 0 for k in expected}
    assert {t: count_events(engine, t) for t in expected} == expected
    assert count_rows(engine, stores) == 3 and count_rows(engine, products) == 20
    assert f"sale {expected['sale']:,} applied / 0 duplicate" in str(summary)

    # Payloads are exactly what the models serialise to, and carry the Parquet rows.
    stored = _all_events(engine, "sale")
    by_id = {row[0]: row for row in stored}
    sample = sales["event_id"].unique().sort().gather_every(97).to_list()
    lines = sales.filter(pl.col("event_id").is_in(sample)).sort("event_id", "line_no")
    for event_id, group in lines.group_by("event_id"):
        _, _, store_id, device_id, occurred_at, _, payload = by_id[event_id[0]]
        event = SaleEvent.model_validate_json(payload)
        assert event.model_dump_json() == payload
        assert (
            (store_id, device_id)
            == (event.store_id, event.device_id)
            == (group["store_id"][0], group["device_id"][0])
        )
        assert event.occurred_at == group["occurred_at"][0]
        assert occurred_at == group["occurred_at"][0].replace(tzinfo=None)
        assert [line.model_dump() for line in event.lines] == group.select(
            "product_id", "quantity", "unit_price_cents", "discount_cents"
        ).to_dicts()
        assert json.loads(payload)["occurred_at"].endswith("Z")
    # Sales land in time order, so the pipeline's watermark reads them chronologically.
    times = [row[4] for row in stored]
    assert times == sorted(times)

    for event_type in ("inventory", "security", "sync"):
        rows = _all_events(engine, event_type)
        for row in rows[:: max(1, len(rows) // 200)]:
            model = EVENT_MODELS[event_type]
            assert model.model_validate_json(row[6]).model_dump_json() == row[6]

    again = import_generated(engine, chain, batch_size=5000)
    assert again.applied == {k: 0 for k in expected}
    assert again.duplicate == expected
    assert {t: count_events(engine, t) for t in expected} == expected


def test_import_generated_rejects_a_directory_that_is_not_a_chain(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="not a generated chain"):
        import_generated(get_engine(settings.ops_store), tmp_path)


TINY_CSV = """store_id,product_id,date,units,revenue_cents
S001,P0001,2024-01-05,3,1000
S001,P0002,2024-01-05,1,250
X9,P0001,2024-01-06,2,700
S001,P0001,2024-01-05,3,1000
S001,P0003,2024-01-07,0,0
S001,P0003,2024-01-08,,500
S001,P0003,not-a-date,1,500
S001,P0003,2024-01-09,-2,500
"""


def test_import_daily_sales_csv(settings: Settings, tmp_path: Path) -> None:
    engine = get_engine(settings.ops_store)
    upsert_stores(
        engine,
        [
            {
                "store_id": "S001",
                "name": "Main Street",
                "region": "West",
                "city": "Reno",
                "opened_on": "2020-01-01",
                "timezone": "America/Los_Angeles",
            }
        ],
    )
    path = tmp_path / "daily.csv"
    path.write_text(TINY_CSV)

    summary = import_daily_sales_csv(engine, path, batch_size=100)

    assert summary.applied == {"sale": 3} and summary.duplicate == {"sale": 0}
    assert summary.skipped == {
        "units <= 0": 2,
        "missing value": 1,
        "unparsable date": 1,
        "repeated store, product and date": 1,
    }
    events = {row[0]: SaleEvent.model_validate_json(row[6]) for row in _all_events(engine, "sale")}
    first = events[str(uuid.uuid5(DAILY_SALES_NAMESPACE, "S001|P0001|2024-01-05"))]
    assert first.occurred_at.isoformat() == "2024-01-05T12:00:00+00:00"
    assert (first.device_id, first.cashier_id, first.kind) == ("import", "import", "sale")
    assert [(x.product_id, x.quantity, x.unit_price_cents, x.discount_cents) for x in first.lines] == [
        ("P0001", 3, 333, 0)
    ]
    assert first.transaction_id.startswith("IMP-20240105-")
    with engine.connect() as conn:
        names = dict(conn.execute(select(stores.c.store_id, stores.c.name)).all())
        product_names = dict(conn.execute(select(products.c.product_id, products.c.name)).all())
    assert names == {"S001": "Main Street", "X9": "Imported store X9"}  # known store kept as it was
    assert set(product_names) == {"P0001", "P0002"}
    assert summary.stores == 1 and summary.products == 2

    # The same file zipped: everything is already there.
    archive = tmp_path / "daily.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(path, "daily.csv")
    again = import_daily_sales_csv(engine, archive, batch_size=100)
    assert again.applied == {"sale": 0} and again.duplicate == {"sale": 3}
    assert count_events(engine, "sale") == 3


def test_missing_column_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text(TINY_CSV)
    with pytest.raises(ImportFormatError, match="column 'qty' not found in daily.csv") as err:
        import_daily_sales_csv(get_engine(settings.ops_store), path, units_col="qty")
    assert "--units-col" in err.value.format_message()

    result = CliRunner().invoke(app, ["import", str(path), "--units-col", "qty"])
    assert result.exit_code == 2
    assert "column 'qty' not found" in result.output
    assert count_events(get_engine(settings.ops_store), "sale") == 0


@pytest.mark.skipif(not WALMART.exists(), reason="shared Walmart dataset not available")
def test_walmart_weekly_sales(settings: Settings, tmp_path: Path) -> None:
    """Walmart's store × department weekly sales through the daily-sales importer.

    Mapping (the data has revenue only): store = Store, product = Dept, date = the week's Friday,
    revenue_cents = round(Weekly_Sales × 100), units = round(Weekly_Sales / 20), i.e. a nominal $20 per
    unit. Weeks below $10 (including the negative ones, returns) come out as units <= 0 and are skipped."""
    with zipfile.ZipFile(WALMART) as z:
        raw = pl.read_csv(z.read("train.csv"), n_rows=3000)
    mapped = raw.select(
        "Store",
        "Dept",
        "Date",
        (pl.col("Weekly_Sales") / 20).round().cast(pl.Int64).alias("units"),
        (pl.col("Weekly_Sales") * 100).round().cast(pl.Int64).alias("revenue_cents"),
    )
    path = tmp_path / "walmart_daily.csv"
    mapped.write_csv(path)
    engine = get_engine(settings.ops_store)

    summary = import_daily_sales_csv(
        engine,
        path,
        store_col="Store",
        product_col="Dept",
        date_col="Date",
        units_col="units",
        revenue_col="revenue_cents",
        batch_size=1000,
    )

    kept = mapped.filter(pl.col("units") > 0)
    assert summary.applied == {"sale": kept.height}
    assert summary.skipped == {"units <= 0": mapped.height - kept.height}
    assert summary.skipped["units <= 0"] > 0
    events = [SaleEvent.model_validate_json(row[6]) for row in _all_events(engine, "sale")]
    billed = sum(e.lines[0].quantity * e.lines[0].unit_price_cents for e in events)
    # Rounding the unit price moves each week by at most half a cent per unit.
    assert abs(billed - kept["revenue_cents"].sum()) <= kept["units"].sum() / 2
    assert {e.store_id for e in events} == {str(s) for s in kept["Store"].unique()}
    assert count_rows(engine, products) == kept["Dept"].n_unique()

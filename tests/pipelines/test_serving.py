"""The serving snapshot is published to its contract (chainsync/snapshot_contract.py): a table short of a
declared column, or with one of another kind, fails the publish, naming it, and the current snapshot stays."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from chainsync.serving import current_snapshot
from chainsync.snapshot_contract import (
    FCT_IP_RISK,
    TABLES,
    SnapshotContractError,
    Table,
    check_tables,
)
from pipelines.resources import build_resources
from tests.pipelines.conftest import make_settings

SAMPLE = {
    "string": "x",
    "int": 1,
    "float": 1.5,
    "bool": True,
    "date": date(2026, 3, 1),
    "datetime": datetime(2026, 3, 1, 12),
}


def conforming(table: Table) -> pl.DataFrame:
    """One row holding every declared column of ``table``, of its declared kind."""
    return pl.DataFrame([{c.name: SAMPLE[c.kind] for c in table.columns}])


def test_every_declared_table_conforms_to_itself_and_names_its_relation() -> None:
    check_tables({name: conforming(table) for name, table in TABLES.items()})
    assert all(t.relation.split(".")[0] in ("marts", "analytics") for t in TABLES.values())


def test_a_missing_or_retyped_column_is_named() -> None:
    frame = conforming(FCT_IP_RISK)
    with pytest.raises(SnapshotContractError, match="fct_ip_risk: missing column risk_level"):
        check_tables({"fct_ip_risk": frame.drop("risk_level")})
    with pytest.raises(SnapshotContractError, match="column risk_score is String, declared float"):
        check_tables({"fct_ip_risk": frame.with_columns(pl.col("risk_score").cast(pl.String))})
    with pytest.raises(SnapshotContractError, match="fct_mystery: not in the snapshot contract"):
        check_tables({"fct_mystery": frame})
    # More columns than declared, and an all-null column of an empty result, are fine.
    check_tables({"fct_ip_risk": frame.with_columns(extra=pl.lit(1), risk_level=pl.lit(None))})


def test_the_publisher_refuses_a_table_short_of_a_declared_column(tmp_path: Path) -> None:
    from pipelines.defs.serving.assets import serving_snapshot

    settings = make_settings(tmp_path / "data")
    resources = build_resources(settings)
    short = conforming(FCT_IP_RISK).drop("risk_level")
    with resources["warehouse"].get_connection() as con:
        con.execute("create schema marts")
        con.register("short", short.to_arrow())
        con.execute("create table marts.fct_ip_risk as select * from short")
        con.execute("create schema meta")
        con.execute("create table meta.watermarks as select 1::bigint as last_seq")
    with pytest.raises(SnapshotContractError, match="fct_ip_risk: missing column risk_level"):
        dg.materialize([serving_snapshot], resources=resources)
    assert current_snapshot(settings.serving) is None


def test_the_tables_published_with_ai_analytics_off_conform() -> None:
    """What the assets publish when AI analytics is off (empty, with their columns) meets the contract too
    (the anomaly scores of empty features are covered by the full materialization)."""
    from pipelines.defs.access.detector import empty_access_features, score_access
    from pipelines.defs.anomalies.scoring import empty_anomalies
    from pipelines.defs.forecasting.demand import empty_accuracy, empty_forecast, empty_totals
    from pipelines.defs.insights.insights import empty_insights
    from pipelines.defs.inventory.reorder import empty_reorder

    check_tables(
        {
            "demand_forecast": empty_forecast(),
            "forecast_accuracy": empty_accuracy(),
            "demand_forecast_totals": empty_totals(),
            "sales_anomalies": empty_anomalies(),
            "access_anomalies": score_access(empty_access_features(), z_threshold=6.0),
            "reorder_suggestions": empty_reorder(),
            "business_insights": empty_insights(),
        }
    )


def test_a_table_in_parts_reads_as_one_and_a_publish_rewrites_only_the_parts_given(tmp_path: Path) -> None:
    from api.queries.snapshots import read_table
    from chainsync.serving import publish_snapshot
    from dashboards.data import _raw

    jan = pl.DataFrame({"store_id": ["S1", "S2"], "units": [1, 2]})
    feb = pl.DataFrame({"store_id": ["S3"], "units": [3]})
    first = publish_snapshot(tmp_path, {}, parts={"fct_sales_daily": {"2026-01": jan, "2026-02": feb}})
    entry = first.manifest["tables"]["fct_sales_daily"]
    assert entry["rows"] == 3 and entry["parts"] == {"2026-01": 2, "2026-02": 1}
    # Every reader of the snapshot sees the parts as one table: the snapshot, the API, the dashboards.
    for frame in (first.read("fct_sales_daily"), read_table(first, "fct_sales_daily")):
        assert sorted(frame["units"].to_list()) == [1, 2, 3]
    assert _raw(str(first.root), first.version, entry["file"]).height == 3

    feb_again = pl.DataFrame({"store_id": ["S3", "S4"], "units": [3, 4]})
    second = publish_snapshot(tmp_path, {}, parts={"fct_sales_daily": {"2026-02": feb_again}}, carry=first)
    assert second.manifest["tables"]["fct_sales_daily"]["parts"] == {"2026-01": 2, "2026-02": 2}
    assert sorted(second.read("fct_sales_daily")["units"].to_list()) == [1, 2, 3, 4]
    # January was carried (the same file, hard-linked), February rewritten.
    old, new = first.path("fct_sales_daily"), second.path("fct_sales_daily")
    assert (old / "2026-01.parquet").stat().st_ino == (new / "2026-01.parquet").stat().st_ino
    assert (old / "2026-02.parquet").stat().st_ino != (new / "2026-02.parquet").stat().st_ino
    # A later publish that does not touch the table carries all of its parts.
    third = publish_snapshot(tmp_path, {"dim_store": pl.DataFrame({"store_id": ["S1"]})}, carry=second)
    assert third.read("fct_sales_daily").height == 4

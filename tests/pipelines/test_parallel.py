"""Forecasting on a real Dask cluster (``distributed.LocalCluster``, two worker processes on loopback)
gives the same rows as in-process, and the partitioning behind it is fixed by the data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chainsync.parallel import map_partitions, partition_count, split_by_series
from pipelines.defs.forecasting.demand import forecast_accuracy, forecast_demand

END = date(2026, 6, 30)


def _history(stores: int = 3, products: int = 12, days: int = 120) -> pl.DataFrame:
    """A gap-free daily panel: Poisson units around a per-series level with a weekly shape."""
    rng = np.random.default_rng(5)
    rows = []
    for s in range(stores):
        for p in range(products):
            level = rng.uniform(0.3, 20)
            weekly = 1 + 0.4 * np.sin(2 * np.pi * (np.arange(days) + p) / 7)
            units = rng.poisson(level * weekly)
            for d, y in enumerate(units):
                rows.append((f"S{s:02d}", f"P{p:03d}", END - timedelta(days=days - 1 - d), int(y), False))
    return pl.DataFrame(
        rows,
        schema={
            "store_id": pl.String,
            "product_id": pl.String,
            "ds": pl.Date,
            "y": pl.Int64,
            "store_gap": pl.Boolean,
        },
        orient="row",
    )


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address


def test_partitions_depend_on_the_series_only() -> None:
    history = _history()
    parts = split_by_series(history, ["store_id", "product_id"], series_per_partition=10)
    assert len(parts) == partition_count(36, 10) == 4
    assert sum(p.height for p in parts) == history.height
    # Every series lies whole in one partition, and splitting again gives the same partitions.
    owners = pl.concat(
        [
            p.select("store_id", "product_id").unique().with_columns(part=pl.lit(i))
            for i, p in enumerate(parts)
        ]
    )
    assert owners.height == 36
    again = split_by_series(
        history.sample(fraction=1.0, shuffle=True, seed=1).sort("ds"), ["store_id", "product_id"], 10
    )
    assert [sorted(set(p["store_id"] + p["product_id"])) for p in parts] == [
        sorted(set(p["store_id"] + p["product_id"])) for p in again
    ]


def test_map_partitions_on_the_cluster_keeps_order(scheduler: str) -> None:
    # The function must be importable on the workers (a test module is not): len gives a frame's height.
    parts = split_by_series(_history(), ["store_id", "product_id"], series_per_partition=5)
    assert (
        map_partitions(len, parts, scheduler) == map_partitions(len, parts, None) == [p.height for p in parts]
    )


def test_cluster_forecasts_equal_in_process(scheduler: str) -> None:
    history = _history()
    options = {"holidays": "US", "series_per_partition": 10}
    local_accuracy = forecast_accuracy(history, holdout=14, **options)  # type: ignore[arg-type]
    cluster_accuracy = forecast_accuracy(history, holdout=14, scheduler=scheduler, **options)  # type: ignore[arg-type]
    assert_frame_equal(local_accuracy, cluster_accuracy)
    assert local_accuracy.filter(pl.col("level") == "series").height == 36

    local = forecast_demand(history, horizon=14, accuracy=local_accuracy, **options)  # type: ignore[arg-type]
    cluster = forecast_demand(history, horizon=14, accuracy=cluster_accuracy, scheduler=scheduler, **options)  # type: ignore[arg-type]
    assert local.height == 36 * 14
    assert_frame_equal(local, cluster)


def test_every_partitioning_forecasts_every_series_and_day() -> None:
    history = _history(stores=2, products=6)
    one = forecast_demand(history, horizon=7, holidays=None, series_per_partition=1000)
    many = forecast_demand(history, horizon=7, holidays=None, series_per_partition=3)
    assert one.select("store_id", "product_id", "ds").equals(many.select("store_id", "product_id", "ds"))
    assert one["yhat"].is_not_nan().all()


def test_backtest_panels_partition_the_same_on_the_cluster(scheduler: str) -> None:
    """``chainsync backtest`` with CHAINSYNC_DASK_SCHEDULER set forecasts through this function."""
    from chainsync.parallel import forecast_panel_partitioned

    panel = (
        _history(stores=2, products=8, days=90)
        .select(
            unique_id=pl.concat_str("store_id", pl.lit("|"), "product_id"),
            ds="ds",
            y=pl.col("y").cast(pl.Float64),
        )
        .sort("unique_id", "ds")
    )
    options = {"horizon": 14, "freq": "1d", "season": 7, "holidays": None, "series_per_partition": 5}
    local = forecast_panel_partitioned(panel, scheduler=None, **options)
    cluster = forecast_panel_partitioned(panel, scheduler=scheduler, **options)
    assert local.forecasts.height == 16 * 14
    assert_frame_equal(local.forecasts, cluster.forecasts)
    assert_frame_equal(local.series, cluster.series)


def test_cluster_anomaly_scores_equal_in_process(scheduler: str) -> None:
    """With CHAINSYNC_DASK_SCHEDULER set, sales_anomalies and cashier_anomalies score on the cluster."""
    from functools import partial

    import duckdb

    from pipelines.defs.anomalies.assets import _on_cluster
    from pipelines.defs.anomalies.detectors import CASHIER_FEATURES_SQL, score_cashier_shifts
    from pipelines.defs.anomalies.scoring import FEATURES_SQL, SalesThresholds, score_sales_panel
    from tests.pipelines.test_anomalies import load_lines, sale_lines

    con = duckdb.connect()
    load_lines(con, sale_lines())
    for sql, score in (
        (FEATURES_SQL, partial(score_sales_panel, thresholds=SalesThresholds())),
        (CASHIER_FEATURES_SQL, partial(score_cashier_shifts, z_threshold=6.0, min_count=5)),
    ):
        features = pl.from_arrow(con.sql(sql).to_arrow_table())
        assert isinstance(features, pl.DataFrame) and features.height > 100
        local = _on_cluster(score, features, None)
        assert local.height == features.height and local["is_anomaly"].any()
        assert_frame_equal(_on_cluster(score, features, scheduler), local)


def test_partitioned_forecast_run_on_the_cluster_equals_in_process(scheduler: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The forecast asset's partitioned run (``run_forecasts``) sends its partitions to the cluster a wave
    at a time: 36 series in 12 partitions (two waves), the same tables as in-process."""
    import duckdb

    from pipelines.defs.forecasting import partitioned

    history = _history()
    tables = {}
    for name, where in (("local", None), ("cluster", scheduler)):
        con = duckdb.connect(str(tmp_path / f"{name}.duckdb"))
        con.execute("create schema marts; create schema analytics")
        con.register("h", history.select("store_id", "product_id", sale_date="ds", units_sold="y").to_arrow())
        con.execute("create table marts.fct_sales_daily as select * from h")
        con.execute(
            "create table marts.dim_product as select distinct product_id, 'c' || right(product_id, 1)"
            " as category from h"
        )
        run = partitioned.run_forecasts(
            con, tmp_path / f"work-{name}", horizon=7, holidays=None, method="wls_struct",
            scheduler=where, series_per_partition=3,
        )  # fmt: skip
        assert run.series == 36 and run.forecast_rows == 36 * 7
        tables[name] = {
            t: pl.from_arrow(con.sql(f"select * from analytics.{t} order by all").to_arrow_table())
            for t in ("forecast_accuracy", "demand_forecast", "demand_forecast_totals")
        }
    assert partitioned.CLUSTER_WAVE < 36 // 3  # more partitions than one wave
    for t in tables["local"]:
        assert_frame_equal(tables["local"][t], tables["cluster"][t])  # type: ignore[arg-type]

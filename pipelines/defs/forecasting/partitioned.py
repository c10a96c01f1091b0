"""The forecast run with bounded memory: series partitions read from the warehouse one at a time, each
partition's forecasts written out before the next is read, and the reconciliation on arrays.

The same method and the same partitions as :func:`~pipelines.defs.forecasting.demand.forecast_accuracy`,
:func:`~pipelines.defs.forecasting.demand.forecast_demand` and
:func:`~pipelines.defs.forecasting.demand.reconcile_forecast` on the whole history in memory (series sorted
by store_id, product_id and dealt round-robin into ``ceil(series / series_per_partition)`` partitions, as
:func:`chainsync.parallel.split_by_series`), so the same rows — but at no point is the whole history, nor
every series' forecasts, a frame in this process:

1. the gap-free history of :func:`~pipelines.defs.forecasting.demand.history_sql` is written once by DuckDB
   to Parquet, one file per partition, in a work directory beside the warehouse;
2. the hold-out scores are computed partition by partition (small per-series rows are kept);
3. the forecasts likewise, each partition's rows written to its own Parquet file as it finishes;
4. MinTrace needs every series' base point forecast at once: one float matrix (series x horizon, 72 MB
   for 100,000 series x 90 days) read from those files, plus the store, category and chain totals' own
   forecasts from the store x category x day sums (made by DuckDB);
5. DuckDB joins the reconciled points back onto the base rows, applies the published clipping and
   ordering and writes ``analytics.demand_forecast``; the totals are its sums, also in DuckDB.

DuckDB's memory in the process stays within the warehouse's ``memory_limit`` (settings), spilling to its
temp directory beyond it. On a Dask cluster (``scheduler``) the partitions go to the workers a few at a
time, so the driver holds only those in flight.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from chainsync.parallel import SERIES_PER_PARTITION, map_partitions
from pipelines.defs.forecasting.demand import (
    ACCURACY_HOLDOUT_DAYS,
    FORECAST_SCHEMA,
    LEVELS,
    TRAIN_DAYS,
    Hierarchy,
    _forecast_partition,
    _score_partition,
    accuracy_from_scores,
    empty_accuracy,
    empty_forecast,
    history_sql,
    totals_from_sums,
)

# Partitions handed to a Dask cluster at once (the driver reads and holds only these).
CLUSTER_WAVE = 8


@dataclass(frozen=True)
class ForecastRun:
    """What :func:`run_forecasts` wrote: the accuracy frame (small) and counts for the asset metadata."""

    accuracy: pl.DataFrame
    series: int
    forecast_rows: int
    totals_rows: int
    cutoff: date | None
    models: list[tuple[str, int]]


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql).to_arrow_table())  # type: ignore[return-value]


def _path(path: Path) -> str:
    return str(path).replace("'", "''")


class _History:
    """The history written to ``<work>/history/part=N/*.parquet`` and read back one partition at a time."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, work: Path, *, train_days: int, series_per_partition: int
    ) -> None:
        self.con, self.dir = con, work / "history"
        self.series = int(
            con.execute(
                "select count(*) from (select distinct store_id, product_id from marts.fct_sales_daily)"
            ).fetchall()[0][0]
        )
        self.parts = max(1, math.ceil(self.series / max(1, series_per_partition))) if self.series else 0
        if not self.series:
            return
        # split_by_series: series sorted by (store_id, product_id), dealt round-robin.
        con.execute(
            f"""
            copy (
                with history as ({history_sql(train_days, ordered=False)}),
                keys as (
                    select store_id, product_id,
                           (row_number() over (order by store_id, product_id) - 1) % {self.parts} as part
                    from (select distinct store_id, product_id from history)
                )
                select keys.part, history.* from history join keys using (store_id, product_id)
            ) to '{_path(self.dir)}' (format parquet, partition_by (part), overwrite_or_ignore true)
            """
        )
        self.cutoff: date = con.execute(
            f"select max(ds) from read_parquet('{_path(self.dir)}/*/*.parquet')"
        ).fetchall()[0][0]

    def read(self, part: int) -> pl.DataFrame:
        """Partition ``part`` as ``split_by_series`` makes it: the history's rows in its order."""
        return _frame(
            self.con,
            f"select store_id, product_id, ds, y, store_gap from read_parquet("
            f"'{_path(self.dir)}/part={part}/*.parquet', hive_partitioning = false)"
            " order by store_id, product_id, ds",
        )

    def sql(self) -> str:
        return f"read_parquet('{_path(self.dir)}/*/*.parquet', hive_partitioning = false)"


def _each(
    history: _History,
    func: Callable[..., Any],
    scheduler: str | None,
    pool: Executor | None = None,
    workers: int = 1,
    **kwargs: Any,
) -> Iterator[tuple[int, Any]]:
    """``func(partition, **kwargs)`` for every partition, in order: on the cluster :data:`CLUSTER_WAVE` at a
    time; in local worker processes (``pool``, ``workers`` of them) one per worker at a time; else in this
    process one at a time."""
    wave = CLUSTER_WAVE if scheduler else (workers if pool is not None else 1)
    for start in range(0, history.parts, wave):
        parts = list(range(start, min(start + wave, history.parts)))
        frames = [history.read(p) for p in parts]
        keep = [(p, f) for p, f in zip(parts, frames, strict=True) if f.height]
        if pool is not None and not scheduler:
            results = list(pool.map(partial(func, **kwargs), [f for _, f in keep]))
        else:
            results = map_partitions(func, [f for _, f in keep], scheduler, **kwargs)
        del frames, keep
        yield from zip(parts, results, strict=False)


def processes_for(setting: int) -> int:
    """Local worker processes for a forecast run: the setting (``CHAINSYNC_FORECAST_PROCESSES``), 0 meaning
    one per core."""
    return setting if setting > 0 else (os.cpu_count() or 1)


def _local_workers(processes: int, parts: int) -> int:
    return max(1, min(processes, parts))


@contextmanager
def _local_pool(processes: int, parts: int, scheduler: str | None) -> Iterator[Executor | None]:
    """Worker processes for the partitions when there is no cluster, more than one partition and more than
    one process allowed; else None (this process). Spawned, not forked (the parent holds DuckDB's threads),
    and kept for the whole run, so each worker imports and compiles the method once."""
    if scheduler or _local_workers(processes, parts) <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=_local_workers(processes, parts), mp_context=context) as pool:
        yield pool


def run_forecasts(
    con: duckdb.DuckDBPyConnection,
    work: Path,
    *,
    horizon: int,
    holidays: str | None,
    method: str,
    scheduler: str | None = None,
    categories_sql: str = "select product_id, category from marts.dim_product",
    series_per_partition: int = SERIES_PER_PARTITION,
    train_days: int = TRAIN_DAYS,
    holdout: int = ACCURACY_HOLDOUT_DAYS,
    processes: int = 1,
) -> ForecastRun:
    """Write ``analytics.forecast_accuracy``, ``analytics.demand_forecast`` and
    ``analytics.demand_forecast_totals`` from ``marts.fct_sales_daily`` (see the module docstring); ``work``
    is a scratch directory, removed afterwards. Without a ``scheduler``, up to ``processes`` local worker
    processes take the partitions (the same partitions, so the same rows as one process)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        return _run(
            con,
            work,
            horizon=horizon,
            holidays=holidays,
            method=method,
            scheduler=scheduler,
            categories_sql=categories_sql,
            series_per_partition=series_per_partition,
            train_days=train_days,
            holdout=holdout,
            processes=processes,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replace(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    con.execute(f"create schema if not exists {table.split('.')[0]}")
    con.register("frame", frame.to_arrow())
    con.execute(f"create or replace table {table} as select * from frame")
    con.unregister("frame")


def _run(
    con: duckdb.DuckDBPyConnection,
    work: Path,
    *,
    horizon: int,
    holidays: str | None,
    method: str,
    scheduler: str | None,
    categories_sql: str,
    series_per_partition: int,
    train_days: int,
    holdout: int,
    processes: int,
) -> ForecastRun:
    from pipelines.defs.forecasting.demand import empty_totals

    categories = _frame(con, categories_sql)
    history = _History(con, work, train_days=train_days, series_per_partition=series_per_partition)
    if not history.series:
        for table, frame in (
            ("analytics.forecast_accuracy", empty_accuracy()),
            ("analytics.demand_forecast", empty_forecast()),
            ("analytics.demand_forecast_totals", empty_totals()),
        ):
            _replace(con, table, frame)
        return ForecastRun(empty_accuracy(), 0, 0, 0, None, [])
    cutoff = history.cutoff

    workers = _local_workers(processes, history.parts)
    with _local_pool(processes, history.parts, scheduler) as pool:
        # 2. Hold-out accuracy.
        scores = [
            scored
            for _, scored in _each(
                history,
                _score_partition,
                scheduler,
                pool,
                workers,
                split=cutoff - timedelta(days=holdout),
                holdout=holdout,
                holidays=holidays,
            )
        ]
        store_daily = _frame(
            con, f"select store_id, ds, sum(y)::bigint as y from {history.sql()} group by all order by all"
        )
        accuracy = accuracy_from_scores(
            pl.concat(scores), categories, store_daily, cutoff=cutoff, holdout=holdout, holidays=holidays
        )
        del scores
        _replace(con, "analytics.forecast_accuracy", accuracy)

        # 3. Base forecasts, one Parquet file per partition.
        base_dir = work / "base"
        base_dir.mkdir()
        series_accuracy = accuracy.filter(pl.col("level") == "series")
        for part, frame in _each(
            history,
            _forecast_partition,
            scheduler,
            pool,
            workers,
            horizon=horizon,
            n_jobs=1,
            accuracy=series_accuracy,
            holidays=holidays,
            cutoff=cutoff,
        ):
            frame.write_parquet(base_dir / f"part-{part:05d}.parquet")
            del frame
    base = f"read_parquet('{_path(base_dir)}/*.parquet')"

    # 4. Reconciliation.
    con.register("categories", categories.to_arrow())
    keyed = f"""
        select base.*, coalesce(c.category, 'unknown') as category
        from {base} as base left join categories as c using (product_id)
    """
    if method != "bottom_up":
        reconciled, offsets = _mintrace(
            con, history, keyed, horizon=horizon, holidays=holidays, method=method
        )
        con.register("reconciled", reconciled)
        # A series missing from the hierarchy (none here) keeps its base forecast, as in _reconciled.
        shifted = f"""
            with s as (
                select k.*, coalesce(r.rec, k.yhat) - k.yhat as shift
                from ({keyed}) as k
                left join bottom_rows as b
                  on b.unique_id = 'chain/' || k.store_id || '/' || k.category || '/' || k.product_id
                left join reconciled as r on r.row = b.row and r.horizon_day = k.horizon_day
            )
            select store_id, product_id, ds, horizon_day,
                   yhat + shift as yhat,
                   case when lo_80 > 0 then lo_80 + shift else 0.0 end as lo_80,
                   hi_80 + shift as hi_80,
                   case when lo_95 > 0 then lo_95 + shift else 0.0 end as lo_95,
                   hi_95 + shift as hi_95,
                   model, cutoff, pattern, confidence
            from s
        """
        published = _ordered_sql(shifted)
    else:
        offsets = None
        published = f"select {', '.join(FORECAST_SCHEMA)} from {base}"
    con.execute(
        f"create or replace table analytics.demand_forecast as {published} order by store_id, product_id, ds"
    )
    if method != "bottom_up":
        con.unregister("reconciled")
        con.unregister("bottom_rows")

    # 5. Totals: sums of the published series.
    sq = ", ".join(
        f"sqrt(sum((yhat - lo_{lvl}) ** 2)) as dlo_{lvl}, sqrt(sum((hi_{lvl} - yhat) ** 2)) as dhi_{lvl}"
        for lvl in LEVELS
    )
    keyed_published = """
        select f.*, coalesce(c.category, 'unknown') as category
        from analytics.demand_forecast as f left join categories as c using (product_id)
    """
    sums = _frame(
        con,
        " union all ".join(
            f"select '{level}' as level, {column} as key, ds, horizon_day, sum(yhat) as yhat, {sq},"
            f" count(*)::bigint as n_series from ({keyed_published}) group by all"
            for level, column in (("store", "store_id"), ("category", "category"), ("chain", "'chain'"))
        ),
    )
    con.unregister("categories")
    totals = totals_from_sums(sums, offsets)
    _replace(con, "analytics.demand_forecast_totals", totals)

    rows = int(con.execute("select count(*) from analytics.demand_forecast").fetchall()[0][0])
    models = [
        (str(m), int(n))
        for m, n in con.execute(
            "select model, count(*) as n from analytics.demand_forecast group by model order by n desc, model"
        ).fetchall()
    ]
    return ForecastRun(accuracy, history.series, rows, totals.height, cutoff, models)


def _ordered_sql(select: str) -> str:
    """:func:`~pipelines.defs.forecasting.demand._ordered` in SQL over ``select``'s FORECAST_SCHEMA rows."""
    return f"""
        with a as (select * replace (greatest(yhat, 0.0) as yhat) from ({select})),
        b as (select * replace (greatest(least(lo_80, yhat), 0.0) as lo_80, greatest(hi_80, yhat) as hi_80)
              from a),
        c as (select * replace (greatest(least(lo_95, lo_80), 0.0) as lo_95, greatest(hi_95, hi_80) as hi_95)
              from b)
        select {", ".join(FORECAST_SCHEMA)} from c
    """


def _mintrace(
    con: duckdb.DuckDBPyConnection,
    history: _History,
    keyed: str,
    *,
    horizon: int,
    holidays: str | None,
    method: str,
) -> tuple[Any, pl.DataFrame]:
    """The reconciled points (an Arrow table: row, horizon_day, rec; ``bottom_rows`` — unique_id, row — is
    left registered on ``con`` to join them back) and the totals' bound offsets, as
    :func:`~pipelines.defs.forecasting.demand._reconciled` makes them."""
    keys = _frame(
        con,
        f"select distinct store_id, product_id, category from ({keyed}) order by store_id, product_id",
    )
    hierarchy = Hierarchy.of(keys)
    daily = _frame(
        con,
        f"""
        select h.store_id, coalesce(c.category, 'unknown') as category, h.ds, sum(h.y)::bigint as y
        from {history.sql()} as h left join categories as c using (product_id)
        group by all order by all
        """,
    )
    base_totals = hierarchy.base_totals(daily, horizon=horizon, holidays=holidays)
    rows = hierarchy.bottom_rows().with_columns(pl.col("row").cast(pl.Int64))
    con.register("bottom_rows", rows.to_arrow())
    bottom = np.full((hierarchy.n_bottom, horizon), np.nan)
    # Column by column from DuckDB: no frame of every series' rows.
    fetched = con.execute(
        f"""
        select r.row, k.horizon_day, k.yhat
        from ({keyed}) as k
        join bottom_rows as r
          on r.unique_id = 'chain/' || k.store_id || '/' || k.category || '/' || k.product_id
        """
    ).fetchnumpy()

    bottom[fetched["row"], fetched["horizon_day"] - 1] = fetched["yhat"]
    del fetched
    reconciled = hierarchy.reconcile(base_totals, bottom, method)
    del bottom
    n = reconciled.shape[0]
    table = pa.table(
        {
            "row": pa.array(np.repeat(np.arange(n, dtype=np.int64), horizon)),
            "horizon_day": pa.array(np.tile(np.arange(1, horizon + 1, dtype=np.int32), n)),
            "rec": pa.array(reconciled.reshape(-1)),
        }
    )
    return table, hierarchy.offsets(base_totals)

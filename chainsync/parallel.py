"""Fan panel work out over a Dask cluster, or run it in-process: the same partitions either way.

A panel (one row per series and period) is split into a number of partitions that depends only on the
data (``series_per_partition`` series each, assigned round-robin over the sorted series ids), never on how
many workers there are. Each partition is handed to ``func`` on its own, so a result computed on a
``distributed`` cluster equals the in-process one by construction: a method that pools statistics over
series (the forecasting's model choice and conformal errors) pools over the same partition everywhere.

``scheduler`` is ``Settings.dask_scheduler`` (``CHAINSYNC_DASK_SCHEDULER``, e.g. ``tcp://10.0.0.5:8786``):
None runs the partitions one after the other in this process. Workers must be able to import ``func``
(the same ChainSync install on every worker machine).

This module is the seam where forecasting and scoring scale out beyond one machine; it imports
``distributed`` only when a scheduler is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import polars as pl

R = TypeVar("R")

SERIES_PER_PARTITION = 2000  # large enough that pooled statistics stay stable, small enough to spread
CONNECT_TIMEOUT = "30s"  # how long a run waits for an unreachable scheduler before failing


def partition_count(series: int, series_per_partition: int = SERIES_PER_PARTITION) -> int:
    """How many partitions ``series`` series make (at least 1)."""
    return max(1, math.ceil(series / max(1, series_per_partition)))


def split_by_series(
    frame: pl.DataFrame, keys: Sequence[str], series_per_partition: int = SERIES_PER_PARTITION
) -> list[pl.DataFrame]:
    """``frame`` split into :func:`partition_count` partitions by the series ``keys`` (e.g. store_id,
    product_id): series sorted by their keys are dealt round-robin, so every partition holds a mix of
    stores and products and the split is the same on every run for the same data. Rows keep their order
    within each partition; empty partitions are dropped."""
    if frame.is_empty():
        return []
    series = frame.select(list(keys)).unique().sort(list(keys))
    count = partition_count(series.height, series_per_partition)
    series = series.with_row_index("_rank").select(*keys, _part=pl.col("_rank") % count)
    tagged = frame.join(series, on=list(keys), how="left", maintain_order="left")
    by_part = tagged.partition_by("_part", maintain_order=True, include_key=False, as_dict=True)
    return [by_part[key] for key in sorted(by_part) if by_part[key].height]


def map_partitions(
    func: Callable[..., R], parts: Sequence[Any], scheduler: str | None = None, **kwargs: Any
) -> list[R]:
    """``[func(part, **kwargs) for part in parts]``, in order: on the Dask cluster at ``scheduler`` (one task
    per partition, ``kwargs`` shipped once and shared), or in this process when ``scheduler`` is None."""
    if not scheduler:
        return [func(part, **kwargs) for part in parts]
    from distributed import Client

    with Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False) as client:
        # Scatter the shared arguments once instead of pickling them into every task.
        shared = {name: client.scatter(value, broadcast=True) for name, value in kwargs.items()}
        futures = client.map(func, list(parts), pure=False, **shared)
        return list(client.gather(futures))


def forecast_panel_partitioned(
    frame: pl.DataFrame,
    *,
    scheduler: str | None,
    series_per_partition: int = SERIES_PER_PARTITION,
    **options: Any,
) -> Any:
    """``chainsync.forecasting.forecast_panel`` of ``frame`` (unique_id, ds, y) in partitions of
    ``series_per_partition`` series by ``unique_id``, on the Dask cluster at ``scheduler`` or in-process;
    ``options`` go to ``forecast_panel``. Returns its ``PanelForecast`` with the partitions' rows."""
    from chainsync.forecasting import forecast_panel
    from chainsync.forecasting.method import PanelForecast

    results = map_partitions(
        forecast_panel, split_by_series(frame, ["unique_id"], series_per_partition), scheduler, **options
    )
    return PanelForecast(
        forecasts=pl.concat([r.forecasts for r in results]), series=pl.concat([r.series for r in results])
    )

"""Benchmark the pipeline at chain size, by cadence: a full marts run (landing, checks, dbt, anomaly scores,
snapshot; no forecasting), the daily forecast run on its own, a marts run after 1 % more sale events, a run
with nothing new, and forecasting on a Dask cluster of 1 and of 2 workers (alternated, medians).

    uv run python bench/pipeline.py --stores 50 --products 2000 --days 365 --json   # ~6M sale lines
    uv run python bench/pipeline.py --stores 50 --products 2000 --days 730          # ~12M sale lines
    uv run python bench/pipeline.py --stores 3 --products 40 --days 60 --dask-series 0   # seconds

The data is the generator's chain ending on a fixed day (``END``), so every run makes the same events.
``--ops-store`` reuses an ops store made by an earlier run of the same size (``--keep`` leaves it in
``<data-dir>/data/ops.sqlite``) to skip generating and importing. Peak RSS is sampled over this process
and all its children (dbt's subprocess, Dask workers) every 0.2 s during the pipeline runs. Prints a table;
``--json`` also prints one JSON object with the figures and the goals of issue 12.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

# bench/profile.py would shadow the standard library's profile module (dbt imports cProfile): run with the
# repository root on the path instead of this directory.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")

import duckdb  # noqa: E402
import psutil  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import select  # noqa: E402

from chainsync.ops_store import get_engine  # noqa: E402
from chainsync.ops_store.events import InboxRow, append_events  # noqa: E402
from chainsync.ops_store.tables import event_inbox  # noqa: E402
from chainsync.settings import Settings  # noqa: E402

END = date(2026, 10, 31)
CORES = os.cpu_count() or 1
GOALS = {  # issue 12, on 2 cores
    "full_seconds_per_10m_lines": 180.0,
    "incremental_share_of_full": 0.10,
    "noop_seconds": 2.0,
    "forecast_series_per_second_per_core": 200.0,
    "peak_rss_mb": 6144.0,
}


class PeakRss:
    """The largest summed RSS of this process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.stage_peak = 0  # since the last take()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self.stage_peak = max(self.stage_peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return self.peak / 2**20

    def take(self) -> float:
        """The peak (MB) since the previous call, and start a new stage."""
        peak, self.stage_peak = self.stage_peak, 0
        return round(peak / 2**20, 1)


def more_sales(engine, every: int, seed: int = 1) -> tuple[list[InboxRow], int]:  # type: ignore[no-untyped-def]
    """New sale events: every ``every``-th stored one (by seq, so the same ones each run), re-keyed and
    moved to the days after the history (tomorrow's trade looks like a sample of the past). Returns (rows,
    sale lines)."""
    import random

    rng = random.Random(seed)
    with engine.connect() as conn:
        payloads = conn.execute(
            select(event_inbox.c.payload)
            .where(event_inbox.c.event_type == "sale", event_inbox.c.seq % every == 0)
            .order_by(event_inbox.c.seq)
        ).scalars()
        rows, lines = [], 0
        for text in payloads:
            event = json.loads(text)
            occurred = datetime.fromisoformat(event["occurred_at"])
            shifted = datetime.combine(END + timedelta(days=rng.randint(1, 3)), occurred.timetz())
            event["event_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
            event["transaction_id"] = f"{event['transaction_id']}-b{rng.randint(0, 10**6)}"[:64]
            event["occurred_at"] = shifted.isoformat()
            lines += len(event["lines"])
            rows.append(
                InboxRow(
                    event["event_id"],
                    "sale",
                    event["store_id"],
                    event["device_id"],
                    shifted,
                    json.dumps(event),
                )
            )
    return rows, lines


def sale_lines(settings: Settings) -> int:
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return int(con.execute("select count(*) from raw.sale_lines").fetchone()[0])  # type: ignore[index]


def dask_rates(settings: Settings, series: int, repeats: int) -> dict[str, Any]:
    """Forecast the first ``series`` series of the warehouse's history on a LocalCluster of 1 and of 2
    workers (one thread each, loopback), alternated ABAB, ``repeats`` times each: median seconds, and
    whether both clusters gave the same rows as in-process."""
    import polars as pl
    from distributed import LocalCluster
    from polars.testing import assert_frame_equal

    from pipelines.defs.forecasting.demand import forecast_demand, history_sql

    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        history = pl.from_arrow(con.sql(history_sql()).to_arrow_table())
    assert isinstance(history, pl.DataFrame)
    keys = history.select("store_id", "product_id").unique().sort("store_id", "product_id").head(series)
    sample = history.join(keys, on=["store_id", "product_id"], how="semi")
    in_process = forecast_demand(sample, horizon=90)
    seconds: dict[int, list[float]] = {1: [], 2: []}
    clusters = {
        n: LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        for n in (1, 2)
    }
    try:
        for cluster in clusters.values():  # warm-up: numba compiles once per worker
            assert_frame_equal(
                forecast_demand(sample, horizon=90, scheduler=cluster.scheduler_address), in_process
            )
        for _ in range(repeats):
            for n, cluster in clusters.items():
                started = time.perf_counter()
                forecast_demand(sample, horizon=90, scheduler=cluster.scheduler_address)
                seconds[n].append(time.perf_counter() - started)
    finally:
        for cluster in clusters.values():
            cluster.close()
    n_series = keys.height
    return {
        "dask_series": n_series,
        "dask_1_worker_seconds": round(statistics.median(seconds[1]), 2),
        "dask_2_workers_seconds": round(statistics.median(seconds[2]), 2),
        "dask_speedup": round(statistics.median(seconds[1]) / statistics.median(seconds[2]), 2),
        "dask_equals_in_process": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--products", type=int, default=150)
    parser.add_argument("--days", type=int, default=540)
    parser.add_argument(
        "--increment-every", type=int, default=100, help="add every n-th sale event again (1 %%)"
    )
    parser.add_argument("--dask-series", type=int, default=4000, help="series for 1 vs 2 workers; 0 skips")
    parser.add_argument("--dask-repeats", type=int, default=2)
    parser.add_argument("--ops-store", type=Path, default=None, help="reuse this ops.sqlite (same size)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = parser.parse_args()

    from pipelines.run import run_pipeline
    from tools import importer
    from tools.generator import generate_chain

    console = Console(stderr=args.json)  # with --json, stdout holds the JSON object only
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="chainsync-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=root / "data")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, int, str]] = []
    figures: dict[str, Any] = {"stores": args.stores, "products": args.products, "days": args.days}

    t0 = time.perf_counter()
    if args.ops_store is not None:
        shutil.copy(args.ops_store, settings.data_dir / "ops.sqlite")
        rows.append(("copy ops store", time.perf_counter() - t0, 0, f"from {args.ops_store}"))
    else:
        generate_chain(root / "chain", stores=args.stores, products=args.products, days=args.days, end=END)
        summary = importer.import_generated(get_engine(settings.ops_store), root / "chain")
        rows.append(("generate + import", time.perf_counter() - t0, summary.events, "events"))
    engine = get_engine(settings.ops_store)

    by_run: dict[str, float] = {}
    figures["peak_rss_mb_by_run"] = by_run

    def run(stage: str, job: str) -> Any:
        rss.take()
        result = run_pipeline(settings, job=job, console=None if args.json else console)
        by_run[stage] = rss.take()
        if not result.success:
            raise SystemExit(f"{stage}: pipeline failed (see {settings.data_dir / 'logs'})")
        return result

    with PeakRss() as rss:
        full = run("full", "marts_job")
        figures["sale_lines"] = sale_lines(settings)
        figures["full_seconds"] = round(full.seconds, 2)
        figures["full_step_seconds"] = full.step_seconds
        rows.append(("full marts run", full.seconds, figures["sale_lines"], "sale lines landed"))

        forecast = run("forecast", "forecast_job")
        series = int(forecast.metadata.get("demand_forecast", {}).get("series", 0))
        accuracy = forecast.metadata.get("forecast_accuracy", {})
        figures |= {
            "forecast_series": series,
            "forecast_seconds": round(forecast.seconds, 2),
            "forecast_step_seconds": forecast.step_seconds,
            "forecast_series_per_second_per_core": round(series / forecast.seconds / CORES, 1),
            "forecast_chain_mase": accuracy.get("mase"),
            "forecast_chain_wape": accuracy.get("wape"),
        }
        rows.append(("forecast run (in-process)", forecast.seconds, series, "series"))

        new_rows, new_lines = more_sales(engine, args.increment_every)
        append_events(
            engine, new_rows, received_at=datetime.combine(END + timedelta(days=4), datetime.min.time(), UTC)
        )
        incremental = run("incremental", "marts_job")
        figures["incremental_sale_lines"] = new_lines
        figures["incremental_seconds"] = round(incremental.seconds, 2)
        figures["incremental_step_seconds"] = incremental.step_seconds
        rows.append(
            (f"marts run after +{len(new_rows):,} sale events", incremental.seconds, new_lines, "sale lines")
        )

        idle = run("no-op", "marts_job")
        figures["noop_seconds"] = round(idle.seconds, 2)
        rows.append(
            ("marts run, nothing new", idle.seconds, 0, "no run started" if not idle.run_id else "ran")
        )
    figures["peak_rss_mb"] = round(rss.mb, 1)

    if args.dask_series:
        figures |= dask_rates(settings, args.dask_series, args.dask_repeats)
        for n in (1, 2):
            key = "dask_1_worker_seconds" if n == 1 else "dask_2_workers_seconds"
            rows.append(
                (f"forecast on Dask, {n} worker(s)", figures[key], figures["dask_series"], "series (median)")
            )

    lines_m = figures["sale_lines"] / 1e7
    figures["goals"] = {
        "full_seconds_per_10m_lines": {
            "value": round(figures["full_seconds"] / max(lines_m, 1e-9), 1),
            "goal": GOALS["full_seconds_per_10m_lines"],
        },
        "incremental_share_of_full": {
            "value": round(figures["incremental_seconds"] / figures["full_seconds"], 3),
            "goal": GOALS["incremental_share_of_full"],
        },
        "noop_seconds": {"value": figures["noop_seconds"], "goal": GOALS["noop_seconds"]},
        "peak_rss_mb": {"value": figures["peak_rss_mb"], "goal": GOALS["peak_rss_mb"]},
        "forecast_series_per_second_per_core": {
            "value": figures["forecast_series_per_second_per_core"],
            "goal": GOALS["forecast_series_per_second_per_core"],
            "higher_is_better": True,
        },
    }
    for goal in figures["goals"].values():
        value, target = goal["value"], goal["goal"]
        goal["met"] = value >= target if goal.pop("higher_is_better", False) else value <= target

    table = Table(
        title=f"pipeline benchmark: {args.stores} stores x {args.products} products x {args.days} days"
    )
    for column in ("stage", "seconds", "rows", "rows/s", "what"):
        table.add_column(column, justify="right" if column in ("seconds", "rows", "rows/s") else "left")
    for stage, seconds, count, what in rows:
        table.add_row(
            stage, f"{seconds:.1f}", f"{count:,}", f"{count / seconds:,.0f}" if seconds else "-", what
        )
    console.print(table)
    for name, goal in figures["goals"].items():
        console.print(f"{name}: {goal['value']} (goal {goal['goal']}) {'met' if goal['met'] else 'MISSED'}")
    console.print(f"peak RSS (process tree): {figures['peak_rss_mb']:,.0f} MB")
    if args.json:
        print(json.dumps(figures))
    if not args.keep and args.data_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    else:
        console.print(f"data kept in {root}")


if __name__ == "__main__":
    main()

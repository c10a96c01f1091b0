"""The benchmarks run in CI at a small size: each must finish, print its figures, and keep its own
invariants (every acknowledged event stored, every broadcast delivered). Speed is not asserted here; the
figures in the README come from full-size runs of the same scripts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.slow
def test_websocket_bench_delivers_every_broadcast() -> None:
    out = _bench("websocket.py", "--clients", "50", "--broadcasts", "5", "--probes", "20", "--seconds", "60")
    figures = json.loads(out[out.index("{") :])
    assert figures["connected"] == 50
    assert figures["deliveries"] == figures["deliveries_expected"] == 250
    assert figures["server_dropped"] == 0
    assert figures["fanout_p50_ms"] <= figures["fanout_p99_ms"]


@pytest.mark.slow
def test_ingest_bench_stores_every_acknowledged_event() -> None:
    out = _bench("ingest.py", "--clients", "2", "--rounds", "2", "--seconds", "2", "--max-batches", "50")
    assert "= every acknowledged event" in out
    assert "ratio chainsync sqlite/bare" in out


@pytest.mark.slow
def test_sync_bench_stores_every_acknowledged_item() -> None:
    out = _bench(
        "sync.py",
        *("--terminals", "4", "--rounds", "2", "--seconds", "2", "--max-batches", "10", "--products", "300"),
        *("--repeats", "2"),
    )
    assert "= every acknowledged item" in out
    assert "ratios chainsync/bare" in out


@pytest.mark.slow
def test_security_bench_times_the_reread_and_the_body_scan() -> None:
    out = _bench("security.py", "--rows", "500", "--calls", "5", "--events", "50", "--repeats", "2")
    (reputations,) = [line for line in out.splitlines() if line.startswith("ip_reputation")]
    pruned = re.search(r"prune deleted ([\d,]+) in [\d.]+ s, left ([\d,]+)", reputations)
    assert pruned is not None, reputations
    deleted, left = (int(g.replace(",", "")) for g in pruned.groups())
    assert deleted + left == 500 and deleted > 0 and left > 0  # the once-banned within retention stay
    scans = [line for line in out.splitlines() if line.startswith("body scan")]
    assert len(scans) == 2 and all("scan / parse" in line for line in scans)


@pytest.mark.slow
def test_pipeline_bench_reports_every_cadence() -> None:
    """bench/pipeline.py at a tiny size: every figure of issue 12 is printed, the increment landed, the
    no-op started no run, and peak RSS was sampled."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py")]
        + ["--stores", "2", "--products", "8", "--days", "30", "--dask-series", "0", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # a few Dagster + dbt runs; minutes on a loaded machine
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("full_seconds", "incremental_seconds", "noop_seconds", "forecast_seconds", "peak_rss_mb"):
        assert figures[key] > 0, key
    assert figures["sale_lines"] > 0 and 0 < figures["incremental_sale_lines"] < figures["sale_lines"]
    assert 0 < figures["forecast_series"] <= 2 * 8
    assert figures["noop_seconds"] < figures["full_seconds"]
    # The per-step profile: the landing, the dbt build and the snapshot of the full run are in it.
    assert {"raw_sales_events", "chainsync_dbt_models", "serving_snapshot"} <= set(
        figures["full_step_seconds"]
    )
    assert sum(figures["full_step_seconds"].values()) <= figures["full_seconds"]
    assert set(figures["goals"]) == {
        "full_seconds_per_10m_lines",
        "incremental_share_of_full",
        "noop_seconds",
        "peak_rss_mb",
        "forecast_series_per_second_per_core",
    }
    assert "no run started" in result.stderr
    # Peak RSS per run, so the run that reaches the peak is known.
    by_run = figures["peak_rss_mb_by_run"]
    assert set(by_run) == {"full", "forecast", "incremental", "no-op"}
    assert by_run["full"] > 0 and by_run["forecast"] > 0
    assert max(by_run.values()) <= figures["peak_rss_mb"]

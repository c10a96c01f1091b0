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

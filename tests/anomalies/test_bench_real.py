"""bench/anomaly_real.py at a small size: it runs on the real Walmart panel, prints both detectors' rows, and
the method beats the naive baseline on the same injections (the README's figures come from the full run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_method_beats_the_baseline_on_injected_walmart_weeks() -> None:
    args = ["--designs", "multiply", "--seeds", "5", "--injections", "200"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "anomaly_real.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    f1 = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r"^\| multiply \| 5 \| (method|baseline) \|.* \| ([0-9.]+) \|$", result.stdout, re.M
        )
    }
    assert set(f1) == {"method", "baseline"}
    assert f1["method"] > 0.5 and f1["baseline"] < 0.1
    assert "clean panel: method" in result.stdout

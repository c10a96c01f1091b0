"""The API never opens the warehouse, so importing it must not load the heavy pipeline libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("dagster", "pyod", "great_expectations", "statsforecast", "duckdb")


def test_import_api_main_does_not_load_pipeline_libraries() -> None:
    code = (
        "import json, sys\n"
        "import api.main\n"
        "api.main.create_app\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

"""The pipeline's last failure, as the run-failure sensor records it beside the serving snapshots.

Dagster writes ``<serving>/pipeline_status.json`` (atomically, like ``current.json``); the API reads it for
its health and metrics endpoints without ever talking to Dagster. Light on purpose: no dagster import.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUS_FILE = "pipeline_status.json"


def read_run_status(serving_dir: Path) -> dict[str, Any]:
    """``{"last_failure": {...} | None, "failures_total": int}``; empty when nothing was recorded."""
    try:
        data = json.loads((serving_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {"last_failure": None, "failures_total": 0}
    return data if isinstance(data, dict) else {"last_failure": None, "failures_total": 0}


def record_run_failure(serving_dir: Path, failure: dict[str, Any]) -> dict[str, Any]:
    """Record ``failure`` (run_id, job, message, ...) as the last one; returns the new status."""
    status = read_run_status(serving_dir)
    status["last_failure"] = {"recorded_at": datetime.now(UTC).isoformat(), **failure}
    status["failures_total"] = int(status.get("failures_total") or 0) + 1
    serving_dir.mkdir(parents=True, exist_ok=True)
    tmp = serving_dir / f".{STATUS_FILE}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(status, indent=2, default=str))
    os.replace(tmp, serving_dir / STATUS_FILE)
    return status

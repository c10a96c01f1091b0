"""Facts about the machine and the files the API can see, for health and metrics: store sizes on disk,
free disk space, the serving snapshots, the pipeline's last recorded failure. Only ``stat`` calls and
small JSON reads: the warehouse is measured, never opened."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from chainsync.run_status import read_run_status
from chainsync.settings import Settings


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _tree_size(root: Path, limit: int = 20_000) -> int | None:
    """Bytes under ``root`` (at most ``limit`` files looked at)."""
    if not root.exists():
        return None
    total = 0
    for n, (dirpath, _dirs, files) in enumerate(os.walk(root)):
        for name in files:
            with_size = _size(Path(dirpath) / name)
            total += with_size or 0
        if n > limit:
            break
    return total


def sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.ops_store)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def store_sizes(settings: Settings) -> dict[str, int | None]:
    """Bytes on disk: the ops store (with its WAL), the warehouse, the serving snapshots."""
    ops = sqlite_path(settings)
    ops_bytes = None
    if ops is not None:
        parts = [_size(ops), _size(ops.with_name(ops.name + "-wal"))]
        ops_bytes = sum(p for p in parts if p is not None) if parts[0] is not None else None
    return {
        "ops_store": ops_bytes,
        "warehouse": _size(settings.warehouse),
        "serving": _tree_size(settings.serving),
    }


def disk_free_bytes(settings: Settings) -> int | None:
    path = settings.data_dir if settings.data_dir.exists() else Path(".")
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def pipeline_status(settings: Settings) -> dict[str, Any]:
    """The last failure the run-failure sensor recorded and the snapshot versions kept."""
    status = read_run_status(settings.serving)
    versions = settings.serving / "versions"
    try:
        kept = sum(1 for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        kept = 0
    return {**status, "snapshot_versions_kept": kept}

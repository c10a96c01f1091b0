"""Serving snapshots: immutable Parquet sets published by the pipeline, read by the API and dashboards.

Layout under the serving directory::

    versions/<version>/<table>.parquet
    versions/<version>/<table>/<part>.parquet   a table published in parts (``parts=``): a directory
    versions/<version>/manifest.json     {"version", "created_at", "run_id", "tables": {...}}
    current.json                          the pointer: {"version": ...}, replaced atomically (os.replace)

A table in parts reads as one (``pl.read_parquet`` of its directory, which :meth:`Snapshot.read` and every
reader of ``path()`` do); a publish rewrites only the parts it is given and carries the others over, so a
large table whose changes fall in a few parts (the daily sales by month) is not rewritten whole.

A version directory is complete before ``current.json`` names it, so a reader never sees half a snapshot,
and readers never block a publish. Old versions beyond ``keep`` are pruned, never the current one.

What a snapshot holds, table by table (columns, kinds, labels, who may read them), is declared once in
:mod:`chainsync.snapshot_contract`; the pipeline checks every table against it before publishing.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

POINTER = "current.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Snapshot:
    """A published snapshot: its manifest and where its files lie."""

    root: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])

    @property
    def tables(self) -> list[str]:
        return sorted(self.manifest["tables"])

    def path(self, table: str) -> Path:
        try:
            return self.root / self.manifest["tables"][table]["file"]
        except KeyError:
            raise KeyError(f"snapshot {self.version} has no table {table!r}") from None

    def read(self, table: str) -> pl.DataFrame:
        return pl.read_parquet(self.path(table))

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.created_at).total_seconds()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_snapshot(
    serving_dir: Path,
    tables: dict[str, pl.DataFrame],
    *,
    run_id: str | None = None,
    extra: dict[str, Any] | None = None,
    keep: int = 5,
    carry: Snapshot | None = None,
    parts: dict[str, dict[str, pl.DataFrame]] | None = None,
) -> Snapshot:
    """Write ``tables`` as a new immutable version and switch ``current.json`` to it atomically.

    ``carry``: a published snapshot whose other tables (those not in ``tables``) the new version keeps as
    they are, hard-linked (copied across file systems) rather than rewritten, so a run that changed a few
    tables publishes in time proportional to those.

    ``parts``: tables published as directories of parts, ``{table: {part: frame}}``: the parts given are
    written, the table's other parts in ``carry`` (when it holds the table in parts) are kept as they are."""
    created = datetime.now(UTC)
    version = f"{created:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"
    versions = serving_dir / "versions"
    staging = versions / f".tmp-{version}"
    staging.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        "version": version,
        "created_at": created.isoformat(),
        "run_id": run_id,
        "tables": {},
        **(extra or {}),
    }
    for name, frame in tables.items():
        file = f"{name}.parquet"
        frame.write_parquet(staging / file)
        manifest["tables"][name] = {"file": file, "rows": frame.height, "columns": frame.columns}
    for name, given in (parts or {}).items():
        carried = carry.manifest["tables"].get(name, {}) if carry is not None else {}
        kept = {p: n for p, n in carried.get("parts", {}).items() if p not in given}
        (staging / name).mkdir()
        for part, frame in given.items():
            frame.write_parquet(staging / name / f"{part}.parquet")
        for part in kept:
            _link(carry.path(name) / f"{part}.parquet", staging / name / f"{part}.parquet")  # type: ignore[union-attr]
        rows = {**kept, **{p: f.height for p, f in given.items()}}
        columns = next(iter(given.values())).columns if given else carried.get("columns", [])
        manifest["tables"][name] = {
            "file": name,
            "rows": sum(rows.values()),
            "columns": columns,
            "parts": dict(sorted(rows.items())),
        }
    if carry is not None:
        for name in sorted(set(carry.tables) - set(tables) - set(parts or {})):
            entry = dict(carry.manifest["tables"][name])
            if "parts" in entry:
                (staging / entry["file"]).mkdir()
                for part in entry["parts"]:
                    _link(carry.path(name) / f"{part}.parquet", staging / entry["file"] / f"{part}.parquet")
            else:
                _link(carry.path(name), staging / entry["file"])
            manifest["tables"][name] = entry
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    _fsync_dir(staging)
    final = versions / version
    os.replace(staging, final)

    tmp_pointer = serving_dir / f".{POINTER}.{uuid.uuid4().hex}"
    with open(tmp_pointer, "w") as fh:
        json.dump({"version": version, "created_at": manifest["created_at"]}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_pointer, serving_dir / POINTER)
    _fsync_dir(serving_dir)
    _prune(versions, keep=keep, current=version)
    return Snapshot(root=final, manifest=manifest)


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _prune(versions: Path, *, keep: int, current: str) -> None:
    done = sorted(p for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in done[: max(0, len(done) - keep)]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)


def current_snapshot(serving_dir: Path) -> Snapshot | None:
    """The snapshot ``current.json`` names, or None before the first publish."""
    try:
        pointer = json.loads((serving_dir / POINTER).read_text())
    except FileNotFoundError:
        return None
    root = serving_dir / "versions" / pointer["version"]
    manifest = json.loads((root / MANIFEST).read_text())
    return Snapshot(root=root, manifest=manifest)


def audit_anchors(serving_dir: Path) -> list[dict[str, Any]]:
    """The audit-chain heads recorded in the kept snapshot versions (``{"seq", "record_hash", "version"}``),
    oldest first: checkpoints of the security audit trail kept outside its table (see
    :func:`chainsync.ops_store.audit_log.verify_audit_chain`)."""
    versions = serving_dir / "versions"
    out: list[dict[str, Any]] = []
    if not versions.is_dir():
        return out
    for root in sorted(versions.iterdir()):
        manifest_path = root / MANIFEST
        if root.name.startswith(".") or not manifest_path.is_file():
            continue
        try:
            head = json.loads(manifest_path.read_text()).get("audit_head")
        except (OSError, ValueError):
            continue
        if (
            isinstance(head, dict)
            and isinstance(head.get("seq"), int)
            and isinstance(head.get("record_hash"), str)
        ):
            out.append({"seq": head["seq"], "record_hash": head["record_hash"], "version": root.name})
    return out

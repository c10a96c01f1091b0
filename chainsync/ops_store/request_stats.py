"""The request log: per-minute request statistics per API instance, method and route template.

Each API process aggregates its requests in memory and merges completed minutes here
(:func:`merge_request_stats`); the pipeline reads them back by ``bucket_start`` (:func:`request_stats_since`,
an index range scan on the primary key) to detect latency and error-rate degradation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chainsync.ops_store.tables import request_stats

COLUMNS = tuple(c.name for c in request_stats.columns)
KEY = ("bucket_start", "instance", "method", "route")
_CHUNK = 2_000
# How far behind the newest landed minute the pipeline re-reads (raw_request_stats). A minute written later
# than that would never be landed, so the API drops buckets older than this instead of retrying them.
LANDING_OVERLAP = timedelta(minutes=30)


def _greater(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    # max(a, b) that reads the same on SQLite and PostgreSQL (whose two-argument form is greatest()).
    return case((a >= b, a), else_=b)


def merge_request_stats(engine: Engine, rows: Sequence[dict[str, Any]], *, replace: bool = False) -> int:
    """Upsert ``rows`` (dicts with every column of ``request_stats``; ``bucket_start`` a naive UTC minute).

    By default a row for a key already stored is *added* to it: counts and latency sums add up, the max is
    the larger one, and p50/p95 become the request-weighted mean of both (a bucket flushed twice, e.g. a
    late request of an already flushed minute, is rare and small). ``replace=True`` overwrites instead
    (an idempotent bulk import). Returns the number of rows written."""
    if not rows:
        return 0
    dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(request_stats)
    new, old = stmt.excluded, request_stats.c
    if replace:
        update: dict[str, Any] = {c: new[c] for c in COLUMNS if c not in KEY}
    else:
        total = old.requests + new.requests
        update = {
            "requests": total,
            "errors_4xx": old.errors_4xx + new.errors_4xx,
            "errors_5xx": old.errors_5xx + new.errors_5xx,
            "latency_ms_sum": old.latency_ms_sum + new.latency_ms_sum,
            "latency_ms_max": _greater(old.latency_ms_max, new.latency_ms_max),
            **{
                c: (old[c] * old.requests + new[c] * new.requests) / case((total > 0, total), else_=1)
                for c in ("latency_ms_p50", "latency_ms_p95")
            },
        }
    stmt = stmt.on_conflict_do_update(index_elements=list(KEY), set_=update)
    with engine.begin() as conn:
        for start in range(0, len(rows), _CHUNK):
            conn.execute(stmt, list(rows[start : start + _CHUNK]))
    return len(rows)


def request_stats_since(
    engine: Engine, since: datetime | None, *, chunk_size: int = 50_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows with ``bucket_start >= since`` (all when None), in chunks of tuples in :data:`COLUMNS` order,
    oldest first."""
    query = select(*(request_stats.c[c] for c in COLUMNS)).order_by(*(request_stats.c[c] for c in KEY))
    if since is not None:
        query = query.where(request_stats.c.bucket_start >= since)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        while chunk := result.fetchmany(chunk_size):
            yield [tuple(r) for r in chunk]

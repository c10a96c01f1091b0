"""Times in the ops store: stored as naive UTC (SQLite has no timezone type), returned timezone-aware."""

from __future__ import annotations

from datetime import UTC, datetime


def naive(ts: datetime) -> datetime:
    """``ts`` as naive UTC wall time, as stored (a naive ``ts`` is taken to be UTC already)."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def aware(ts: datetime | None) -> datetime | None:
    """A stored (naive UTC) time as a timezone-aware one; None stays None."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    """A stored (naive UTC) time as an ISO 8601 string with its offset; None stays None."""
    return None if ts is None else aware(ts).isoformat()  # type: ignore[union-attr]

"""The ops store schema (SQLAlchemy Core). The API owns these tables; Dagster only reads them.

Changes go through an Alembic migration in ``migrations/versions`` as well as here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, naive UTC on the Python side on every engine.

    SQLite has no timezone type and keeps UTC wall time; PostgreSQL keeps ``timestamptz`` (the DDL is
    ``DateTime(timezone=True)`` as in the migrations) and hands back aware values in the session's zone.
    Binding aware UTC and returning naive UTC makes both engines look the same to the code above."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, datetime):
            return value
        if dialect.name == "postgresql":
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value


# Every acknowledged event. ``event_id`` is the idempotency key; ``seq`` is a gap-free, strictly
# increasing number assigned under the store's write lock (SQLite) or the inbox's commit-order lock
# (PostgreSQL, ``cursor_locks.INBOX``), so ``seq`` order is commit order: the watermark the pipeline reads by.
event_inbox = Table(
    "event_inbox",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("event_type", String(16), nullable=False),
    Column("store_id", String(64), nullable=True),
    Column("device_id", String(64), nullable=True),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_event_inbox_type_seq", "event_type", "seq"),
    Index("ix_event_inbox_type_occurred", "event_type", "occurred_at"),
)

stores = Table(
    "stores",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(100), nullable=False),
    Column("city", String(100), nullable=False),
    Column("opened_on", String(10), nullable=True),  # ISO date
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("updated_at", UtcDateTime(), nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("product_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("category", String(100), nullable=False),
    Column("unit_cost_cents", Integer, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("lead_time_days", Integer, nullable=False, server_default="7"),
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("updated_at", UtcDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # admin | manager | cashier
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", UtcDateTime(), nullable=False),
    # Bumped when authority or credentials change; access tokens issued under another version are refused.
    Column("security_version", Integer, nullable=False, server_default="0"),
)
# One account per username whatever its case ("MANAGER" cannot be created beside "manager").
Index("ix_users_username_lower", func.lower(users.c.username), unique=True)

user_stores = Table(
    "user_stores",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("store_id", String(64), primary_key=True),
)

# Device API keys: ``prefix`` identifies the key in logs and lists; only a SHA-256 of the whole key is
# kept (the key is 256 random bits, so a slow hash adds nothing but latency).
device_keys = Table(
    "device_keys",
    metadata,
    Column("prefix", String(16), primary_key=True),
    Column("key_hash", String(64), nullable=False),
    Column("store_id", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("expires_at", UtcDateTime(), nullable=True),  # None: until revoked
)

# --- offline sync (migration 0002) -------------------------------------------------------------
# Every mutation a device uploaded, keyed by the client's own mutation id: the idempotency record that
# makes a replayed batch answer exactly as it did the first time (Replicache's per-client mutation ids).
sync_mutations = Table(
    "sync_mutations",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("mutation_id", String(64), primary_key=True),
    Column("item_type", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # applied | duplicate | rejected | conflict
    Column("event_id", String(36), nullable=True),
    Column("conflict_id", Integer, nullable=True),
    Column("result", Text, nullable=False),  # the JSON answer given the first time
    Column("batch_id", String(64), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Index("ix_sync_mutations_received", "received_at"),
)

# Per device sync state: checkpoints, last reported queue length and clock skew.
sync_devices = Table(
    "sync_devices",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("last_upload_at", UtcDateTime(), nullable=True),
    Column("last_batch_id", String(64), nullable=True),
    Column("last_download_at", UtcDateTime(), nullable=True),
    Column("last_cursor_seq", BigInteger, nullable=True),
    Column("pending_reported", Integer, nullable=False, server_default="0"),
    Column("clock_skew_seconds", Integer, nullable=False, server_default="0"),
    Column("offline_since", UtcDateTime(), nullable=True),
    Column("items_applied", BigInteger, nullable=False, server_default="0"),
    Column("items_rejected", BigInteger, nullable=False, server_default="0"),
)

# Items rejected for good (invalid, unknown product ...): kept for people to look at; never retried and
# never in the way of later items.
sync_dead_letters = Table(
    "sync_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("store_id", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("mutation_id", String(64), nullable=False),
    Column("item_type", String(32), nullable=False),
    Column("errors", Text, nullable=False),  # JSON [{"field", "message"}]
    Column("payload", Text, nullable=False),  # the item as sent (truncated)
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_sync_dead_letters_device", "store_id", "device_id"),
)

# Store-level edits a terminal may make offline (shelf label, reorder point), versioned per row.
store_product_overrides = Table(
    "store_product_overrides",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("product_id", String(64), primary_key=True),
    Column("shelf_label", String(64), nullable=True),
    Column("reorder_point", Integer, nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(160), nullable=False),
)

# Edits based on an older version than the server's (or server-wins catalog edits, closed at once).
sync_conflicts = Table(
    "sync_conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("store_id", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("mutation_id", String(64), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("entity_key", String(64), nullable=False),
    Column("base_version", Integer, nullable=True),
    Column("server_version", Integer, nullable=True),
    Column("client_value", Text, nullable=False),  # JSON
    Column("server_value", Text, nullable=False),  # JSON
    Column("client_edited_at", UtcDateTime(), nullable=True),  # skew-corrected, UTC
    Column("status", String(16), nullable=False),  # open | resolved
    Column("resolution", String(32), nullable=True),
    Column("resolved_value", Text, nullable=True),
    Column("resolved_by", String(160), nullable=True),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_sync_conflicts_store_status", "store_id", "status"),
)

# The audit trail of conflict resolutions (who, when, what; never a secret).
sync_audit = Table(
    "sync_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(160), nullable=False),
    Column("action", String(32), nullable=False),
    Column("store_id", String(64), nullable=False),
    Column("conflict_id", Integer, nullable=True),
    Column("detail", Text, nullable=False),  # JSON
)

# What a device downloads: every change to the catalog (store_id NULL) or a store's overrides, in a
# strictly increasing ``seq``; a download cursor is a position in it. Catalog rows are logged by triggers
# on ``products`` (so every writer is covered); ``op`` is ``upsert`` or ``delete`` (a tombstone). On
# PostgreSQL a trigger draws ``seq`` under the change log's commit-order lock (migration 0008).
sync_changes = Table(
    "sync_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("store_id", String(64), nullable=True),
    Column("entity", String(32), nullable=False),
    Column("entity_key", String(64), nullable=False),
    Column("op", String(8), nullable=False),
    Column("changed_at", UtcDateTime(), nullable=False),
    Index("ix_sync_changes_store_seq", "store_id", "seq"),
    sqlite_autoincrement=True,
)

# --- security (migration 0003) -----------------------------------------------------------------
# The security audit trail, hash-chained: ``record_hash`` is SHA-256 over the previous record's hash and
# this record's canonical JSON, so editing, deleting or reordering a record breaks every hash after it.
security_audit = Table(
    "security_audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("occurred_at", UtcDateTime(), nullable=False),  # UTC
    Column("category", String(32), nullable=False),  # authentication | authorization | data_access | ...
    Column("action", String(64), nullable=False),  # login_failure, rate_limited, ip_blocked, ...
    Column("outcome", String(16), nullable=False),  # success | failure | denied | blocked | logged
    Column("severity", String(16), nullable=False, server_default="info"),  # info | warning | critical
    Column("actor", String(160), nullable=True),
    Column("role", String(16), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("method", String(8), nullable=True),
    Column("route", String(200), nullable=True),
    Column("risk_score", Float, nullable=True),
    Column("detail", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    Index("ix_security_audit_ip", "source_ip", "seq"),
    Index("ix_security_audit_action", "action", "seq"),
    sqlite_autoincrement=True,
)

# IP reputation: a leaky-bucket risk score per address (decays with time), and the escalating ban
# (fail2ban's bantime.increment). Survives restarts; read back on start-up; pruned once negligible
# (``chainsync.ops_store.reputation.prune_reputations``).
ip_reputation = Table(
    "ip_reputation",
    metadata,
    Column("ip", String(64), primary_key=True),
    Column("score", Float, nullable=False),
    Column("score_at", UtcDateTime(), nullable=False),  # when ``score`` was last computed
    Column("ban_count", Integer, nullable=False, server_default="0"),
    Column("blocked_until", UtcDateTime(), nullable=True),
    Column("last_reason", String(200), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    # The re-read every API process makes (migration 0006): blocks in force, rows written since.
    Index("ix_ip_reputation_blocked_until", "blocked_until"),
    Index("ix_ip_reputation_updated_at", "updated_at"),
)

# IP allow and deny rules managed by admins (on top of the CHAINSYNC_IP_* settings).
ip_rules = Table(
    "ip_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cidr", String(64), nullable=False),
    Column("action", String(8), nullable=False),  # allow | deny
    Column("note", String(200), nullable=True),
    Column("created_by", String(160), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("cidr", "action", name="uq_ip_rules_cidr_action"),
)

# Refresh tokens: only a SHA-256 of each is stored. A refresh rotates the token inside its family; a
# reused (already rotated) token revokes the whole family, as OAuth 2.0 Security BCP 4.14 advises.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("family_id", String(32), nullable=False, index=True),
    Column("username", String(128), nullable=False, index=True),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("rotated_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True, index=True),
)

# TOTP second factor per user (RFC 6238). ``last_step`` refuses a code replayed within its window.
user_totp = Table(
    "user_totp",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("secret", String(255), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="0"),
    Column("last_step", BigInteger, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

# Access tokens ended by logout before they expire, shared by every API process (rows past
# ``expires_at`` can be deleted: the token no longer verifies anyway).
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
    Column("revoked_at", UtcDateTime(), nullable=False),
)

# The request log, aggregated: one row per minute, API process, method and route template. Latency
# percentiles are per row; the pipeline combines processes (sum of counts, max of percentiles).
request_stats = Table(
    "request_stats",
    metadata,
    Column("bucket_start", UtcDateTime(), primary_key=True),
    Column("instance", String(64), primary_key=True),
    Column("method", String(10), primary_key=True),
    Column("route", String(200), primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("errors_4xx", Integer, nullable=False),
    Column("errors_5xx", Integer, nullable=False),
    Column("latency_ms_sum", Float, nullable=False),
    Column("latency_ms_max", Float, nullable=False),
    Column("latency_ms_p50", Float, nullable=False),
    Column("latency_ms_p95", Float, nullable=False),
)

# --- live figures (migration 0007) -------------------------------------------------------------
# Sales per store and business day (the store's own timezone), added to in the transaction that stores
# each sale (``chainsync.ops_store.live_sales``): "today so far" reads one row per store. Integer cents.
live_store_sales = Table(
    "live_store_sales",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("business_day", Date, primary_key=True),
    Column("transactions", Integer, nullable=False, server_default="0"),
    Column("refunds", Integer, nullable=False, server_default="0"),
    Column("voids", Integer, nullable=False, server_default="0"),
    Column("units", BigInteger, nullable=False, server_default="0"),
    Column("net_revenue_cents", BigInteger, nullable=False, server_default="0"),
    Column("sold_cents", BigInteger, nullable=False, server_default="0"),  # net of `sale` kinds only
)

# Per store and transaction: the units per product a terminal's sale sold, and those refunds naming it
# (``refund_of``) returned so far, as JSON objects. Kept in the ingest transaction (ops_store/sale_rules.py).
sale_refundable = Table(
    "sale_refundable",
    metadata,
    Column("store_id", String(64), primary_key=True),
    Column("transaction_id", String(64), primary_key=True),
    Column("sold", Text, nullable=False),
    Column("refunded", Text, nullable=False, server_default="{}"),
)

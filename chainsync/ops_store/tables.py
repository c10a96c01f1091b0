"""The ops store schema (SQLAlchemy Core). The API owns these tables; Dagster only reads them.

Changes go through an Alembic migration in ``migrations/versions`` as well as here.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Every acknowledged event. ``event_id`` is the idempotency key; ``seq`` is a gap-free, strictly
# increasing number assigned under the store's write lock, the watermark the pipeline reads by.
event_inbox = Table(
    "event_inbox",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("event_type", String(16), nullable=False),
    Column("store_id", String(64), nullable=True),
    Column("device_id", String(64), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_event_inbox_type_seq", "event_type", "seq"),
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
    Column("updated_at", DateTime(timezone=True), nullable=False),
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
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # admin | manager | cashier
    Column("is_active", Boolean, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

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
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

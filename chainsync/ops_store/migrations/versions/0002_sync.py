"""Offline sync: mutation log, device state, dead letters, overrides, conflicts, audit, change log.

Catalog changes reach the change log through triggers on ``products``, so every writer (import, admin
upserts, SQL by hand) is covered; products present before this migration are logged once here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# A change to anything a terminal sees (not the unit cost) is logged; an upsert that rewrites equal values
# (a re-import) is not.
_VISIBLE_CHANGE = (
    "OLD.name IS NOT NEW.name OR OLD.category IS NOT NEW.category OR OLD.price_cents IS NOT NEW.price_cents "
    "OR OLD.lead_time_days IS NOT NEW.lead_time_days OR OLD.is_active IS NOT NEW.is_active"
)
_OP = "CASE WHEN NEW.is_active THEN 'upsert' ELSE 'delete' END"

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER trg_products_sync_insert AFTER INSERT ON products
    BEGIN
        INSERT INTO sync_changes (store_id, entity, entity_key, op, changed_at)
        VALUES (NULL, 'product', NEW.product_id, {_OP}, CURRENT_TIMESTAMP);
    END""",
    f"""CREATE TRIGGER trg_products_sync_update AFTER UPDATE ON products
    WHEN {_VISIBLE_CHANGE}
    BEGIN
        INSERT INTO sync_changes (store_id, entity, entity_key, op, changed_at)
        VALUES (NULL, 'product', NEW.product_id, {_OP}, CURRENT_TIMESTAMP);
    END""",
    """CREATE TRIGGER trg_products_sync_delete AFTER DELETE ON products
    BEGIN
        INSERT INTO sync_changes (store_id, entity, entity_key, op, changed_at)
        VALUES (NULL, 'product', OLD.product_id, 'delete', CURRENT_TIMESTAMP);
    END""",
]

_POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION products_sync_log() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO sync_changes (store_id, entity, entity_key, op, changed_at)
            VALUES (NULL, 'product', OLD.product_id, 'delete', now());
            RETURN OLD;
        END IF;
        IF TG_OP = 'UPDATE' AND NOT (
            OLD.name IS DISTINCT FROM NEW.name OR OLD.category IS DISTINCT FROM NEW.category
            OR OLD.price_cents IS DISTINCT FROM NEW.price_cents
            OR OLD.lead_time_days IS DISTINCT FROM NEW.lead_time_days
            OR OLD.is_active IS DISTINCT FROM NEW.is_active) THEN
            RETURN NEW;
        END IF;
        INSERT INTO sync_changes (store_id, entity, entity_key, op, changed_at)
        VALUES (NULL, 'product', NEW.product_id,
                CASE WHEN NEW.is_active THEN 'upsert' ELSE 'delete' END, now());
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER trg_products_sync AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_sync_log()""",
]


def upgrade() -> None:
    op.create_table(
        "sync_mutations",
        sa.Column("store_id", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("mutation_id", sa.String(64), primary_key=True),
        sa.Column("item_type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("conflict_id", sa.Integer, nullable=True),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sync_mutations_received", "sync_mutations", ["received_at"])
    op.create_table(
        "sync_devices",
        sa.Column("store_id", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("last_upload_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_batch_id", sa.String(64), nullable=True),
        sa.Column("last_download_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_cursor_seq", sa.BigInteger, nullable=True),
        sa.Column("pending_reported", sa.Integer, nullable=False, server_default="0"),
        sa.Column("clock_skew_seconds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("items_applied", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("items_rejected", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "sync_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("mutation_id", sa.String(64), nullable=False),
        sa.Column("item_type", sa.String(32), nullable=False),
        sa.Column("errors", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sync_dead_letters_device", "sync_dead_letters", ["store_id", "device_id"])
    op.create_table(
        "store_product_overrides",
        sa.Column("store_id", sa.String(64), primary_key=True),
        sa.Column("product_id", sa.String(64), primary_key=True),
        sa.Column("shelf_label", sa.String(64), nullable=True),
        sa.Column("reorder_point", sa.Integer, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(160), nullable=False),
    )
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("mutation_id", sa.String(64), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_key", sa.String(64), nullable=False),
        sa.Column("base_version", sa.Integer, nullable=True),
        sa.Column("server_version", sa.Integer, nullable=True),
        sa.Column("client_value", sa.Text, nullable=False),
        sa.Column("server_value", sa.Text, nullable=False),
        sa.Column("client_edited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("resolved_value", sa.Text, nullable=True),
        sa.Column("resolved_by", sa.String(160), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sync_conflicts_store_status", "sync_conflicts", ["store_id", "status"])
    op.create_table(
        "sync_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(160), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("store_id", sa.String(64), nullable=False),
        sa.Column("conflict_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "sync_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("store_id", sa.String(64), nullable=True),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_key", sa.String(64), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,  # never reuse a seq after pruning: cursors must stay monotonic
    )
    op.create_index("ix_sync_changes_store_seq", "sync_changes", ["store_id", "seq"])
    op.execute(
        "INSERT INTO sync_changes (store_id, entity, entity_key, op, changed_at) "
        "SELECT NULL, 'product', product_id, CASE WHEN is_active THEN 'upsert' ELSE 'delete' END, "
        "CURRENT_TIMESTAMP FROM products ORDER BY product_id"
    )
    dialect = op.get_bind().dialect.name
    for ddl in _POSTGRES_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_products_sync ON products")
        op.execute("DROP FUNCTION IF EXISTS products_sync_log()")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_products_sync_{name}")
    op.drop_index("ix_sync_changes_store_seq", table_name="sync_changes")
    op.drop_table("sync_changes")
    op.drop_table("sync_audit")
    op.drop_index("ix_sync_conflicts_store_status", table_name="sync_conflicts")
    op.drop_table("sync_conflicts")
    op.drop_table("store_product_overrides")
    op.drop_index("ix_sync_dead_letters_device", table_name="sync_dead_letters")
    op.drop_table("sync_dead_letters")
    op.drop_table("sync_devices")
    op.drop_index("ix_sync_mutations_received", table_name="sync_mutations")
    op.drop_table("sync_mutations")

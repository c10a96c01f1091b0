"""Devices read the sync change log by ``seq`` cursor. On PostgreSQL a ``serial`` hands out values in
call order, not commit order, so a download could move its cursor past a change that commits later. A
``BEFORE INSERT`` trigger takes the change log's commit-order lock (see
``chainsync.ops_store.cursor_locks``) and only then draws the row's ``seq``, for every writer (the
``products`` trigger, store overrides, SQL by hand). SQLite needs nothing: its write lock already orders
commits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# chainsync.ops_store.cursor_locks.CHANGE_LOG, frozen here as a migration must be.
_CHANGE_LOG_LOCK = 289159577602


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""CREATE OR REPLACE FUNCTION sync_changes_commit_order() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({_CHANGE_LOG_LOCK});
            -- drawn after the lock: higher than every committed seq (the default's draw is discarded)
            NEW.seq := nextval(pg_get_serial_sequence('sync_changes', 'seq'));
            RETURN NEW;
        END $$ LANGUAGE plpgsql"""
    )
    op.execute(
        "CREATE TRIGGER trg_sync_changes_commit_order BEFORE INSERT ON sync_changes "
        "FOR EACH ROW EXECUTE FUNCTION sync_changes_commit_order()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS trg_sync_changes_commit_order ON sync_changes")
    op.execute("DROP FUNCTION IF EXISTS sync_changes_commit_order()")

"""Live per-store sales by business day, kept in the ingest transaction, so ``GET /api/sales/today``
reads one row per store instead of re-parsing every payload of the day. Sales already stored are added
up once here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BACKFILL_CHUNK = 5_000


def upgrade() -> None:
    op.create_table(
        "live_store_sales",
        sa.Column("store_id", sa.String(64), primary_key=True),
        sa.Column("business_day", sa.Date, primary_key=True),
        sa.Column("transactions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refunds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("voids", sa.Integer, nullable=False, server_default="0"),
        sa.Column("units", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("net_revenue_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("sold_cents", sa.BigInteger, nullable=False, server_default="0"),
    )
    _backfill(op.get_bind())


def _backfill(conn: sa.Connection) -> None:
    # The same code as the ingest path, so the backfilled figures cannot differ from the live ones.
    from chainsync.ops_store.events import InboxRow
    from chainsync.ops_store.live_sales import add_sales
    from chainsync.ops_store.tables import event_inbox

    last = 0
    while True:
        rows = conn.execute(
            sa.select(
                event_inbox.c.seq,
                event_inbox.c.event_id,
                event_inbox.c.store_id,
                event_inbox.c.device_id,
                event_inbox.c.occurred_at,
                event_inbox.c.payload,
            )
            .where(event_inbox.c.event_type == "sale", event_inbox.c.seq > last)
            .order_by(event_inbox.c.seq)
            .limit(_BACKFILL_CHUNK)
        ).all()
        if not rows:
            return
        add_sales(
            conn,
            [InboxRow(r.event_id, "sale", r.store_id, r.device_id, r.occurred_at, r.payload) for r in rows],
        )
        last = int(rows[-1].seq)


def downgrade() -> None:
    op.drop_table("live_store_sales")

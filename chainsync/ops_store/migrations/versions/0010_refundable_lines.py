"""Refunds that name the sale they return, and return no more than it sold.

``sale_refundable`` holds, per store and transaction, the units per product sold by a terminal's sale
and the units already returned by refunds naming that transaction (``refund_of``), as JSON objects. It is
kept in the ingest transaction (:mod:`chainsync.ops_store.sale_rules`), so two refunds of one sale racing
each other cannot both pass.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sale_refundable",
        sa.Column("store_id", sa.String(64), primary_key=True),
        sa.Column("transaction_id", sa.String(64), primary_key=True),
        sa.Column("sold", sa.Text(), nullable=False),  # {"product_id": units, ...}
        sa.Column("refunded", sa.Text(), nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_table("sale_refundable")

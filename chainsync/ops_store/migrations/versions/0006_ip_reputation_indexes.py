"""Indexes for the API processes' periodic re-read of ``ip_reputation`` (the rows whose block is in force,
and the rows written since the previous read): one on ``blocked_until`` and one on ``updated_at``, so
SQLite answers the re-read's ``OR`` with two index range searches instead of a scan of every address ever
scored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ip_reputation_blocked_until", "ip_reputation", ["blocked_until"])
    op.create_index("ix_ip_reputation_updated_at", "ip_reputation", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_ip_reputation_updated_at", table_name="ip_reputation")
    op.drop_index("ix_ip_reputation_blocked_until", table_name="ip_reputation")

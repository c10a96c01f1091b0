"""Index the inbox by event type and device time, for "today so far" reads.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_event_inbox_type_occurred", "event_inbox", ["event_type", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_event_inbox_type_occurred", table_name="event_inbox")

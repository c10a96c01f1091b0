"""Revoked access tokens shared by every API process, per-minute request statistics (the request log
the performance anomalies read), and room for an encrypted TOTP secret.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "request_stats",
        sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("instance", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(10), primary_key=True),
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors_4xx", sa.Integer, nullable=False),
        sa.Column("errors_5xx", sa.Integer, nullable=False),
        sa.Column("latency_ms_sum", sa.Float, nullable=False),
        sa.Column("latency_ms_max", sa.Float, nullable=False),
        sa.Column("latency_ms_p50", sa.Float, nullable=False),
        sa.Column("latency_ms_p95", sa.Float, nullable=False),
    )
    with op.batch_alter_table("user_totp") as batch:
        batch.alter_column("secret", type_=sa.String(255), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("user_totp") as batch:
        batch.alter_column("secret", type_=sa.String(64), existing_nullable=False)
    op.drop_table("request_stats")
    op.drop_table("revoked_tokens")

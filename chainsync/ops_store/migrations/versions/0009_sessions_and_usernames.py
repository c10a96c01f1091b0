"""Sessions that really end, and usernames that differ only in case being one account.

* ``users.security_version``: bumped whenever a user's authority or credentials change (deactivation, role,
  stores, password). Access tokens carry the version they were issued under; a token whose version is not
  the user's current one is refused, so such a change ends every live token of the user.
* ``refresh_tokens.revoked_at`` is indexed: the API re-reads the logins (families) revoked within an access
  token's lifetime, and refuses their access tokens.
* ``device_keys.expires_at``: an optional expiry for a terminal's key (``chainsync users rotate-device-key``
  gives the old key a grace period).
* A unique index on ``lower(username)``: ``MANAGER`` cannot be created beside ``manager``. A store that
  already holds such a pair cannot take the index; the upgrade names the pairs instead of failing obscurely.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    names: list[str] = sorted(
        bind.execute(
            sa.text("SELECT lower(username) FROM users GROUP BY lower(username) HAVING count(*) > 1")
        ).scalars()
    )
    if names:
        raise RuntimeError(
            "usernames that differ only in case must be merged or renamed before this upgrade: "
            + ", ".join(names)
        )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("security_version", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    op.create_index("ix_refresh_tokens_revoked_at", "refresh_tokens", ["revoked_at"])
    with op.batch_alter_table("device_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_keys") as batch:
        batch.drop_column("expires_at")
    op.drop_index("ix_refresh_tokens_revoked_at", table_name="refresh_tokens")
    op.drop_index("ix_users_username_lower", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("security_version")

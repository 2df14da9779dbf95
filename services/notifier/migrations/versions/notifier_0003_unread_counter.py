"""unread counter: inbox_state.unread instead of a count(*) per read

Revision ID: notifier_0003
Revises: notifier_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "notifier_0003"
down_revision = "notifier_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Unread rows of each user, expired ones included until the purge deletes them; the
    # unread count shown subtracts those (services/notifier/storage.py).
    op.add_column(
        "inbox_state",
        sa.Column("unread", sa.BigInteger(), server_default="0", nullable=False),
        schema="notifier",
    )
    op.execute(
        "UPDATE notifier.inbox_state s SET unread = c.n "
        "FROM (SELECT user_id, count(*) AS n FROM notifier.notifications "
        "WHERE read_at IS NULL GROUP BY user_id) c WHERE s.user_id = c.user_id"
    )
    # Only unread notifications that can expire: small, and all a count has to look at.
    op.create_index(
        "ix_notifications_unread_expiring",
        "notifications",
        ["user_id", "expires_at"],
        schema="notifier",
        postgresql_where=sa.text("read_at IS NULL AND expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_unread_expiring", "notifications", schema="notifier")
    op.drop_column("inbox_state", "unread", schema="notifier")

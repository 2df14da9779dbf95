"""notification center: users, preferences, template overrides, silent, expiry, versions

Revision ID: notifier_0002
Revises: notifier_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "notifier_0002"
down_revision = "notifier_0001"
branch_labels = None
depends_on = None

# UUIDv7 (RFC 9562) in SQL, for set-based inserts: PostgreSQL 16 has no uuidv7().
# 48 bits of Unix milliseconds over a random v4 UUID, then the version bits 0111.
UUID7 = """
CREATE OR REPLACE FUNCTION notifier.uuid7() RETURNS uuid AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp())
                                               * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$ LANGUAGE sql VOLATILE
"""


def upgrade() -> None:
    op.execute(UUID7)
    op.add_column(
        "inbox_state",
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        schema="notifier",
    )
    op.add_column(
        "notifications",
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        schema="notifier",
    )
    op.add_column(
        "notifications",
        sa.Column("silent", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="notifier",
    )
    op.create_index(
        "ix_notifications_expires_at",
        "notifications",
        ["expires_at"],
        schema="notifier",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_index(
        "ix_notifications_read_created",
        "notifications",
        ["created_at"],
        schema="notifier",
        postgresql_where=sa.text("read_at IS NOT NULL"),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("roles", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        schema="notifier",
    )
    op.create_table(
        "preferences",
        sa.Column("user_id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("muted_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("quiet_start", sa.Text(), nullable=True),
        sa.Column("quiet_end", sa.Text(), nullable=True),
        sa.Column("quiet_timezone", sa.Text(), nullable=True),
        sa.Column("websocket", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
        schema="notifier",
    )
    op.create_table(
        "template_overrides",
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("audience", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.UUID(as_uuid=False), nullable=True),
        sa.PrimaryKeyConstraint("type", "audience"),
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_table("template_overrides", schema="notifier")
    op.drop_table("preferences", schema="notifier")
    op.drop_table("users", schema="notifier")
    op.drop_index(
        "ix_notifications_read_created",
        table_name="notifications",
        schema="notifier",
        postgresql_where=sa.text("read_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_notifications_expires_at",
        table_name="notifications",
        schema="notifier",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    op.drop_column("notifications", "silent", schema="notifier")
    op.drop_column("notifications", "expires_at", schema="notifier")
    op.drop_column("inbox_state", "version", schema="notifier")
    op.execute("DROP FUNCTION IF EXISTS notifier.uuid7()")

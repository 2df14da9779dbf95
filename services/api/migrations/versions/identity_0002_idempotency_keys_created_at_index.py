"""index idempotency keys by age, for the purge

Revision ID: identity_0002
Revises: identity_0001
"""

from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_idempotency_keys_created_at",
        "idempotency_keys",
        ["created_at"],
        unique=False,
        schema="identity",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_idempotency_keys_created_at", table_name="idempotency_keys", schema="identity"
    )

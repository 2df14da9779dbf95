"""outbox rows: tries, backoff and dead rows (docs/failure-modes.md)

Revision ID: bookings_0003
Revises: bookings_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "bookings_0003"
down_revision = "bookings_0002"
branch_labels = None
depends_on = None

COLUMNS = ("attempts", "next_attempt_at", "dead_at", "last_error")


def upgrade() -> None:
    op.add_column(
        "outbox",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        schema="bookings",
    )
    op.add_column(
        "outbox",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        schema="bookings",
    )
    op.add_column(
        "outbox", sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True), schema="bookings"
    )
    op.add_column("outbox", sa.Column("last_error", sa.Text(), nullable=True), schema="bookings")


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("outbox", column, schema="bookings")

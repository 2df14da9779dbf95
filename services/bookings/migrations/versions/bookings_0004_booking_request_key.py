"""bookings: the Idempotency-Key of the request that made or last renewed each booking

Revision ID: bookings_0004
Revises: bookings_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "bookings_0004"
down_revision = "bookings_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites nothing, whatever the table's size.
    op.add_column("bookings", sa.Column("request_key", sa.Text(), nullable=True), schema="bookings")


def downgrade() -> None:
    op.drop_column("bookings", "request_key", schema="bookings")

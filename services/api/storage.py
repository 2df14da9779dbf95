"""Tables of schema `identity` (users, idempotency keys, outbox) and their queries."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from services.runtime.outbox import outbox_table

SCHEMA = "identity"
metadata = sa.MetaData(schema=SCHEMA)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("full_name", sa.Text, nullable=False),
    sa.Column("roles", ARRAY(sa.Text), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# A POST with an Idempotency-Key is answered once and replayed after that.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("principal", sa.Text, primary_key=True),  # user id, or "anonymous"
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),  # null while in progress
    sa.Column("response_headers", sa.LargeBinary, nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

outbox = outbox_table(metadata)


async def user_by_email(conn: AsyncConnection, email: str) -> sa.Row | None:
    return (await conn.execute(sa.select(users).where(users.c.email == email))).first()


async def user_by_id(conn: AsyncConnection, user_id: str) -> sa.Row | None:
    return (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()


async def list_users(
    conn: AsyncConnection, role: str | None, after: str | None, limit: int
) -> list[sa.Row]:
    """Users in creation order (UUIDv7 ids), after the id `after`, with `role` if given."""
    q = sa.select(users).order_by(users.c.id).limit(limit)
    if role is not None:
        q = q.where(sa.literal(role) == sa.any_(users.c.roles))
    if after is not None:
        q = q.where(users.c.id > after)
    return list((await conn.execute(q)).all())


async def insert_user(
    conn: AsyncConnection,
    *,
    id: str,
    email: str,
    password_hash: str,
    full_name: str,
    roles: list[str],
    created_at: datetime,
) -> None:
    """Insert a user; raises sqlalchemy IntegrityError when the email is taken."""
    await conn.execute(
        users.insert().values(
            id=id,
            email=email,
            password_hash=password_hash,
            full_name=full_name,
            roles=roles,
            created_at=created_at,
        )
    )

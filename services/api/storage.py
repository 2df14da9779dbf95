"""Tables of schema `identity` (users, idempotency keys, login throttling, outbox) and
their queries."""

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
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
    # Room on each page for the answer stored after the claim (migration identity_0005).
    postgresql_with={"fillfactor": 10},
)

# Failed-login throttling (services/api/throttle.py): one theoretical arrival time per
# account or client address, shared by every api replica. A row whose tat has passed
# means the same as no row, so those are purged.
login_attempts = sa.Table(
    "login_attempts",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),  # "account:<hash>" or "address:<hash>"
    sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
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


async def lock_login_keys(
    conn: AsyncConnection, keys: list[str], now: datetime
) -> dict[str, datetime]:
    """Lock the throttling rows of `keys` for this transaction (creating missing ones
    with tat `now`) and return key -> tat. Pass `keys` sorted: every transaction then
    locks in one order and none deadlocks."""
    stmt = pg_insert(login_attempts).values([{"key": key, "tat": now} for key in keys])
    stmt = stmt.on_conflict_do_update(
        index_elements=[login_attempts.c.key], set_={"tat": login_attempts.c.tat}
    ).returning(login_attempts.c.key, login_attempts.c.tat)
    return {row.key: row.tat for row in await conn.execute(stmt)}


async def set_login_tats(conn: AsyncConnection, tats: dict[str, datetime]) -> None:
    """Store new tats of locked throttling rows."""
    await conn.execute(
        login_attempts.update()
        .where(login_attempts.c.key == sa.bindparam("k"))
        .values(tat=sa.bindparam("t")),
        [{"k": key, "t": tat} for key, tat in tats.items()],
    )


async def refund_login_keys(conn: AsyncConnection, refunds: dict[str, timedelta]) -> None:
    """Give back one attempt's time to each key (a login that turned out right)."""
    await conn.execute(
        login_attempts.update()
        .where(login_attempts.c.key == sa.bindparam("k"))
        .values(tat=login_attempts.c.tat - sa.bindparam("d", type_=sa.Interval)),
        [{"k": key, "d": delta} for key, delta in refunds.items()],
    )


async def purge_login_attempts(conn: AsyncConnection, now: datetime) -> int:
    """Delete throttling rows whose tat has passed (they limit nothing); return how many."""
    result = await conn.execute(login_attempts.delete().where(login_attempts.c.tat < now))
    return result.rowcount

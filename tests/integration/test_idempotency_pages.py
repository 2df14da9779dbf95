"""Storing an Idempotency-Key's answer is a HOT update (migration identity_0005): the
answer stays on its claim's page and touches no index. Counted in PostgreSQL's own
per-transaction statistics, which are exact and immediate within the transaction."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.runtime.db import async_url

# Sizes as in benchmarks.bookings: a user id, a UUID hex key, a SHA-256 hex digest; a
# BookingView's JSON and its headers. 40 claims would fill a default page (100%).
CLAIMS = 40
HEADERS_BYTES = 200
BODY_BYTES = 800


async def test_answers_stored_after_claims_are_hot_updates(database_url):
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO identity.idempotency_keys "
                    "(principal, key, request_hash, created_at) "
                    "SELECT gen_random_uuid()::text, md5(i::text), repeat('h', 64), now() "
                    "FROM generate_series(1, :n) AS i"
                ),
                {"n": CLAIMS},
            )
            await conn.execute(
                sa.text(
                    "UPDATE identity.idempotency_keys SET status_code = 201, "
                    "response_headers = convert_to(repeat('h', :h), 'UTF8'), "
                    "response_body = convert_to(repeat('b', :b), 'UTF8')"
                ),
                {"h": HEADERS_BYTES, "b": BODY_BYTES},
            )
            updated, hot = (
                await conn.execute(
                    sa.text(
                        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                        "WHERE schemaname = 'identity' AND relname = 'idempotency_keys'"
                    )
                )
            ).one()
        assert (updated, hot) == (CLAIMS, CLAIMS)
    finally:
        await engine.dispose()

"""The outbox relay against real NATS and PostgreSQL: rows handed over after a commit
are published at once, in order, and deleted; rows nobody handed over (a process died
between its commit and its publish) are published by the poll once they are older than
the grace period."""

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.bookings import storage
from services.bookings.storage import outbox
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.notifier import SyncAnnouncement
from services.runtime.db import make_engine
from services.runtime.natsconn import ensure_streams
from services.runtime.outbox import OutboxRelay, pending
from tests.support import eventually, nats_client


def rows(n: int, at: datetime | None = None):
    out = []
    for k in range(n):
        data = SyncAnnouncement(instance="test", reason="outbox")
        event = new_event(subjects.BOOKING_CREATED, "test", data, f"b{k}")
        if at is not None:
            event = msgspec.structs.replace(event, time=at)
        out.append(pending(event))
    return out


async def stream_ids(js) -> list[str]:
    sub = await js.subscribe(
        subjects.BOOKING_CREATED,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    got = []
    while True:
        try:
            msg = await sub.next_msg(timeout=0.3)
        except Exception:
            break
        got.append(msg.headers["Nats-Msg-Id"])
    await sub.unsubscribe()
    return got


async def count_rows(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one()


async def test_handed_over_rows_are_published_in_order_and_deleted(nats_url, database_url):
    engine = make_engine(database_url, pool_size=2)
    async with nats_client(nats_url) as nc:
        js = nc.jetstream()
        await ensure_streams(js)
        relay = OutboxRelay(engine, js, outbox, poll_seconds=60.0)
        task = asyncio.create_task(relay.run())
        try:
            written = rows(30)
            async with engine.begin() as conn:
                await storage.add_pending(conn, written)
            relay.committed(written)
            expected = [r.event_id for r in written]
            assert await eventually(lambda: _equal(stream_ids(js), expected))
            assert await eventually(lambda: _zero(count_rows(engine)))
        finally:
            relay.stop()
            await task
            await engine.dispose()


async def test_rows_nobody_handed_over_are_published_after_the_grace(nats_url, database_url):
    engine = make_engine(database_url, pool_size=2)
    async with nats_client(nats_url) as nc:
        js = nc.jetstream()
        await ensure_streams(js)
        relay = OutboxRelay(engine, js, outbox, poll_seconds=0.1, grace_seconds=5.0)
        # Written by a process that died before it published: older than the grace.
        orphans = rows(3, at=datetime.now(UTC) - timedelta(seconds=30))
        async with engine.begin() as conn:
            await storage.add_pending(conn, orphans)
        task = asyncio.create_task(relay.run())
        try:
            expected = [r.event_id for r in orphans]
            assert await eventually(lambda: _equal(stream_ids(js), expected))
        finally:
            relay.stop()
            await task
            await engine.dispose()


async def test_a_backlog_on_the_table_drains_without_waiting_a_poll_per_batch(
    nats_url, database_url
):
    """An admin's bulk of accounts (or a long NATS outage) leaves many rows nobody
    handed over: after one wake() they all go out in batch after batch, not one batch
    per poll (the poll here is a minute away)."""
    engine = make_engine(database_url, pool_size=2)
    async with nats_client(nats_url) as nc:
        js = nc.jetstream()
        await ensure_streams(js)
        relay = OutboxRelay(engine, js, outbox, poll_seconds=60.0, batch=10)
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.sleep(0.2)  # the first poll has run and found nothing
            written = rows(45)
            async with engine.begin() as conn:
                await storage.add_pending(conn, written)
            relay.wake()
            expected = [r.event_id for r in written]
            assert await eventually(lambda: _equal(stream_ids(js), expected), timeout=20)
        finally:
            relay.stop()
            await task
            await engine.dispose()


async def _equal(value, expected):
    return (await value) == expected or None


async def _zero(value):
    return (await value) == 0 or None

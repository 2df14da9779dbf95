"""The outbox relay against real NATS and PostgreSQL: rows handed over after a commit
are published at once, in order, and deleted together a little later; rows nobody
handed over (a process died between its commit and its publish) are published by the
poll once they are older than the grace period."""

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa

from services.bookings import storage
from services.bookings.storage import outbox
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.notifier import SyncAnnouncement
from services.runtime.db import make_engine
from services.runtime.metrics import OUTBOX_PUBLISHED
from services.runtime.natsconn import ensure_streams
from services.runtime.outbox import OutboxRelay, pending
from tests.support import eventually, nats_client, stored_messages


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
    return [m.headers["Nats-Msg-Id"] for m in await stored_messages(js, subjects.BOOKING_CREATED)]


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


@asynccontextmanager
async def running_relay(nats_url, database_url, **options):
    """(engine, js, relay, its task) with the relay running on the bookings outbox;
    stopped and the engine disposed on the way out."""
    engine = make_engine(database_url, pool_size=2)
    async with nats_client(nats_url) as nc:
        js = nc.jetstream()
        await ensure_streams(js)
        relay = OutboxRelay(engine, js, outbox, poll_seconds=60.0, **options)
        task = asyncio.create_task(relay.run())
        try:
            yield engine, js, relay, task
        finally:
            relay.stop()
            await task
            await engine.dispose()


async def hand_over(engine, relay: OutboxRelay, n: int) -> list[str]:
    """Commit `n` rows and hand them to `relay`, as a handler does; their event ids."""
    written = rows(n)
    async with engine.begin() as conn:
        await storage.add_pending(conn, written)
    relay.committed(written)
    return [r.event_id for r in written]


async def test_published_rows_are_deleted_together_later_and_on_stop(nats_url, database_url):
    """The fast way deletes its published rows in one statement, up to
    delete_after_seconds later: here a minute, so they are still in the table after
    they went out, and stop() deletes them."""
    async with running_relay(nats_url, database_url, delete_after_seconds=60.0) as (
        engine,
        js,
        relay,
        task,
    ):
        await asyncio.sleep(0.2)  # the first poll has run and found nothing
        expected = []
        for _ in range(3):  # three commits, three publish batches
            expected += await hand_over(engine, relay, 5)
            assert await eventually(lambda e=list(expected): _equal(stream_ids(js), e))
        assert await count_rows(engine) == 15
        relay.stop()
        await task
        assert await count_rows(engine) == 0


async def test_published_rows_are_deleted_after_delete_after_seconds(nats_url, database_url):
    async with running_relay(nats_url, database_url, delete_after_seconds=0.3) as (
        engine,
        _,
        relay,
        _,
    ):
        await hand_over(engine, relay, 5)
        assert await eventually(lambda: _zero(count_rows(engine)), timeout=5)


async def test_a_claim_never_takes_rows_already_published_the_fast_way(nats_url, database_url):
    """A wake() claims every unpublished row at once, without the grace: the rows the
    fast way published and has not yet deleted are deleted first, not published again."""
    async with running_relay(nats_url, database_url, delete_after_seconds=60.0) as (
        engine,
        js,
        relay,
        _,
    ):
        expected = await hand_over(engine, relay, 5)
        assert await eventually(lambda: _equal(stream_ids(js), expected))
        before = _published("bookings")
        relay.wake()
        assert await eventually(lambda: _zero(count_rows(engine)), timeout=5)
        await asyncio.sleep(0.3)
        assert _published("bookings") == before


def _published(schema: str) -> float:
    return OUTBOX_PUBLISHED.labels(schema)._value.get()


async def _equal(value, expected):
    return (await value) == expected or None


async def _zero(value):
    return (await value) == 0 or None

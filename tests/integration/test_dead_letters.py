"""Poison messages against real NATS and PostgreSQL (docs/failure-modes.md): an outbox
row that cannot be published and a consumer message that cannot be handled become dead
letters after their bounded tries, the messages behind them keep flowing, and
`parkmate dead-letters list|replay` finds and replays them."""

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import msgspec
import sqlalchemy as sa
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY

from services import deadletters
from services.bookings import storage
from services.bookings.storage import outbox
from services.contracts import subjects
from services.contracts.envelope import decode_envelope, new_event
from services.contracts.notifier import SyncAnnouncement
from services.runtime import consumer
from services.runtime.consumer import run_pull_consumer
from services.runtime.db import make_engine
from services.runtime.natsconn import deliver_publish_refusals, message_size
from services.runtime.outbox import OutboxRelay, pending
from tests.support import eventually, stored_messages


def event(subject: str = subjects.BOOKING_CREATED, reason: str = "ok", at=None):
    e = new_event(subject, "test", SyncAnnouncement(instance="test", reason=reason), "b1")
    return msgspec.structs.replace(e, time=at) if at is not None else e


def dead_count(service: str, subject: str) -> float:
    value = REGISTRY.get_sample_value(
        "parkmate_dead_letters_total", {"service": service, "subject": subject}
    )
    return value or 0.0


async def stream_ids(js, subject: str = "booking.>") -> list[str]:
    return [m.headers["Nats-Msg-Id"] for m in await stored_messages(js, subject)]


async def outbox_rows(engine) -> list:
    async with engine.connect() as conn:
        t = outbox
        query = sa.select(t.c.id, t.c.event_id, t.c.attempts, t.c.dead_at, t.c.last_error)
        return list(await conn.execute(query.order_by(t.c.id)))


async def dead_row(engine, event_id: str):
    """The outbox row of `event_id` once it is dead, else None."""
    rows = [r for r in await outbox_rows(engine) if r.event_id == event_id]
    return rows[0] if rows and rows[0].dead_at is not None else None


async def _equal(value, expected):
    got = await value
    return got == expected or None


async def test_a_row_too_big_to_publish_is_dead_and_the_rows_behind_it_go(nc, database_url):
    engine = make_engine(database_url, pool_size=2)
    js = nc.jetstream()
    relay = OutboxRelay(engine, js, outbox, poll_seconds=0.1, grace_seconds=5.0)
    big = pending(event(reason="x" * nc.max_payload))
    old = datetime.now(UTC) - timedelta(seconds=30)
    # Handed over (the fast path), and orphans of a crashed process (the table path).
    handed = [pending(event()), big, pending(event())]
    orphan_big = pending(event(reason="y" * nc.max_payload, at=old))
    orphans = [pending(event(at=old)), orphan_big, pending(event(at=old))]
    before = dead_count("bookings", subjects.BOOKING_CREATED)
    async with engine.begin() as conn:
        await storage.add_pending(conn, orphans + handed)
    task = asyncio.create_task(relay.run())
    try:
        relay.committed(handed)
        expected = [r.event_id for r in orphans + handed if r not in (big, orphan_big)]
        assert await eventually(lambda: _equal(_sorted(stream_ids(js)), sorted(expected)))
        left = await outbox_rows(engine)
        dead = {r.event_id: r for r in left if r.dead_at is not None}
        assert set(dead) == {big.event_id, orphan_big.event_id}
        assert all(r.attempts == 1 and "max_payload" in r.last_error for r in dead.values())
        assert dead_count("bookings", subjects.BOOKING_CREATED) == before + 2
        listed = await deadletters.list_dead(engine, js, "bookings")
        assert {d.origin.rsplit(" ", 1)[-1] for d in listed} == set(dead)
    finally:
        relay.stop()
        await task
        await engine.dispose()


async def _sorted(value):
    return sorted(await value)


async def test_a_refused_row_is_tried_with_backoff_then_dead_then_replayed(nc, database_url):
    engine = make_engine(database_url, pool_size=2)
    js = nc.jetstream()
    relay = OutboxRelay(
        engine,
        js,
        outbox,
        poll_seconds=0.05,
        # No grace: a replayed row is young here, unlike one that died after its tries.
        grace_seconds=0.0,
        max_attempts=3,
        backoff_seconds=0.05,
    )
    # No stream takes `lost.thing` yet: the server refuses it, each try.
    lost = pending(event("lost.thing"))
    behind = [pending(event()) for _ in range(3)]
    async with engine.begin() as conn:
        await storage.add_pending(conn, [lost, *behind])
    task = asyncio.create_task(relay.run())
    try:
        relay.committed([lost, *behind])
        assert await eventually(lambda: _equal(stream_ids(js), [r.event_id for r in behind]))

        row = await eventually(lambda: dead_row(engine, lost.event_id))
        assert row.attempts == 3
        assert "NoStreamResponse" in row.last_error
        (listed,) = await deadletters.list_dead(engine, js)
        assert listed.id == f"bookings:{row.id}" and listed.subject == "lost.thing"

        # The operator fixes the cause (a stream for the subject) and replays it.
        await js.add_stream(StreamConfig(name="LOST", subjects=["lost.>"]))
        said = await deadletters.replay(engine, js, listed.id)
        assert "publishes it" in said
        assert await eventually(lambda: _equal(stream_ids(js, "lost.>"), [lost.event_id]))
        assert await deadletters.list_dead(engine, js) == []
    finally:
        relay.stop()
        await task
        await engine.dispose()
        await delete_stream(js, "LOST")


async def test_a_row_the_stream_refuses_is_charged_its_tries_at_once(nc, database_url):
    """A refusal with an error (here: larger than the stream's max_msg_size, error
    10054) must reach the relay at once and be charged, like one without a stream.
    nats-py 2.16 lost such a refusal, and the publish waited out its timeout and
    counted as NATS being away, forever (natsconn.deliver_publish_refusals)."""
    deliver_publish_refusals()
    engine = make_engine(database_url, pool_size=2)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="SMALL", subjects=["small.>"], max_msg_size=256))
    relay = OutboxRelay(
        engine,
        js,
        outbox,
        poll_seconds=0.05,
        grace_seconds=0.0,
        max_attempts=3,
        backoff_seconds=0.05,
    )
    refused = pending(event("small.thing", reason="x" * 1000))
    behind = [pending(event()) for _ in range(2)]
    async with engine.begin() as conn:
        await storage.add_pending(conn, [refused, *behind])
    task = asyncio.create_task(relay.run())
    try:
        relay.committed([refused, *behind])
        assert await eventually(lambda: _equal(stream_ids(js), [r.event_id for r in behind]))

        # Three tries with 0.05 s backoffs: seconds at most, unless each waits 10 s.
        row = await eventually(lambda: dead_row(engine, refused.event_id), timeout=8)
        assert row.attempts == 3
        assert "BadRequestError" in row.last_error and "err_code=10054" in row.last_error
    finally:
        relay.stop()
        await task
        await engine.dispose()
        await delete_stream(js, "SMALL")


async def delete_stream(js, name: str) -> None:
    try:
        await js.delete_stream(name)
    except NotFoundError:  # the test failed before it made it
        pass


class Flaky:
    """A handler that fails for one poisoned event until it is fixed; records the rest."""

    def __init__(self, poisoned: str) -> None:
        self.poisoned = poisoned
        self.fixed = False
        self.handled: list[str] = []

    async def __call__(self, msg: Msg) -> None:
        e = decode_envelope(msg.data)
        if e.id == self.poisoned and not self.fixed:
            raise RuntimeError("cannot handle this one")
        self.handled.append(e.id)


async def publish(js, events) -> None:
    for e in events:
        await js.publish(e.type, msgspec.json.encode(e), headers={"Nats-Msg-Id": e.id})


async def test_a_message_that_always_fails_ends_in_dead_and_replays(nc, database_url):
    js = nc.jetstream()
    poison, *good = [event() for _ in range(4)]
    handler = Flaky(poison.id)
    stop = asyncio.Event()
    ready = asyncio.Event()
    before = dead_count("test", subjects.BOOKING_CREATED)
    task = asyncio.create_task(
        run_pull_consumer(
            js,
            subjects.EVENTS_STREAM,
            "dead-test",
            ["booking.>"],
            handler,
            stop,
            max_deliver=3,
            ready=ready,
            service="test",
            retry_seconds=0.05,
        )
    )
    engine = make_engine(database_url, pool_size=1)
    try:
        await ready.wait()
        await publish(js, [poison, *good])
        assert await eventually(lambda: _async(set(handler.handled) == {e.id for e in good}))

        async def dead_listed():
            found = await deadletters.list_dead(engine, js, "timers")
            assert found == []  # another service's filter
            found = await deadletters.list_dead(engine, js, None)
            return found or None

        (letter,) = await eventually(dead_listed)
        assert letter.id.startswith("DEAD:") and letter.service == "test"
        assert letter.subject == subjects.BOOKING_CREATED and letter.tries == 2
        assert "cannot handle this one" in letter.error
        assert "EVENTS seq 1, consumer dead-test" == letter.origin
        assert dead_count("test", subjects.BOOKING_CREATED) == before + 1
        dead_msg = await js.get_msg(subjects.DEAD_STREAM, int(letter.id.split(":")[1]))
        assert dead_msg.subject == "dead.dead-test"
        assert dead_msg.headers[consumer.DEAD_MSG_ID] == poison.id
        assert poison.id not in handler.handled

        handler.fixed = True
        await deadletters.replay(engine, js, letter.id)
        assert await eventually(lambda: _async(poison.id in handler.handled))
        assert await deadletters.list_dead(engine, js) == []
    finally:
        stop.set()
        await task
        await engine.dispose()


async def test_an_undecodable_message_is_dead_at_once(nc):
    js = nc.jetstream()
    stop, ready = asyncio.Event(), asyncio.Event()
    seen: list[int] = []

    async def handler(msg: Msg) -> None:
        seen.append(msg.metadata.num_delivered)
        decode_envelope(msg.data)

    task = asyncio.create_task(
        run_pull_consumer(
            js,
            subjects.EVENTS_STREAM,
            "dead-decode",
            ["booking.>"],
            handler,
            stop,
            ready=ready,
            service="test",
        )
    )
    try:
        await ready.wait()
        await js.publish(subjects.BOOKING_CREATED, b"{not json")
        msg = await eventually(lambda: _dead_message(js))
        assert msg.headers[consumer.DEAD_DELIVERIES] == "1"
        assert msg.headers[consumer.DEAD_ERROR].startswith("undecodable")
        assert msg.data == b"{not json"
        assert seen == [1]
    finally:
        stop.set()
        await task


async def test_the_cli_lists_and_replays(nc, nats_url, database_url):
    engine = make_engine(database_url, pool_size=1)
    js = nc.jetstream()
    # No grace: a replayed row is young here, unlike one that died after its tries.
    relay = OutboxRelay(engine, js, outbox, poll_seconds=0.05, grace_seconds=0.0, max_attempts=1)
    lost = pending(event("lost.cli"))
    async with engine.begin() as conn:
        await storage.add_pending(conn, [lost])
    task = asyncio.create_task(relay.run())
    env = os.environ | {"PARKMATE_DATABASE_URL": database_url, "PARKMATE_NATS_URL": nats_url}
    try:
        relay.committed([lost])
        (letter,) = await eventually(lambda: deadletters.list_dead(engine, js))
        code, out = await cli(env, "list", "--service", "bookings")
        assert code == 0 and out.startswith(f"{letter.id}\tbookings\tlost.cli\ttries=1\t")
        code, out = await cli(env, "list", "--service", "notifier")
        assert code == 0 and out == ""
        code, out = await cli(env, "replay", "bookings:999999")
        assert code == 1 and "no dead row" in out
        await js.add_stream(StreamConfig(name="LOST", subjects=["lost.>"]))
        code, out = await cli(env, "replay", "--all")
        assert code == 0 and letter.id in out
        assert await eventually(lambda: _equal(stream_ids(js, "lost.>"), [lost.event_id]))
    finally:
        relay.stop()
        await task
        await engine.dispose()
        await delete_stream(js, "LOST")


async def cli(env: dict, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "dead-letters",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if args[0] == "replay" else asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def _dead_message(js):
    try:
        return await js.get_msg(subjects.DEAD_STREAM, seq=1)
    except Exception:
        return None


async def _async(value):
    return value


async def test_a_message_of_exactly_max_payload_by_message_size_is_stored(nc):
    # message_size must match the server's reckoning: one byte more and the server
    # would close the connection instead of answering.
    headers = {"Nats-Msg-Id": "exact"}
    payload = b"z" * (nc.max_payload - message_size(b"", headers))
    assert message_size(payload, headers) == nc.max_payload
    await nc.jetstream().publish(subjects.BOOKING_CREATED, payload, headers=headers)

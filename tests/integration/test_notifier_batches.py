"""The notifier stores a fetched batch of events in one transaction: seqs, versions and
unread counts stay exact per user, repeats are dropped, concurrent replicas never make a
gap or a duplicate, and one undecodable event does not hold up the rest."""

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

import msgspec
import pytest
from sqlalchemy import event as sa_event

from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.ids import uuid7
from services.notifier import handlers, storage
from services.notifier.config import Settings
from services.notifier.entrypoints import serve
from services.runtime.config import Common
from services.runtime.db import make_engine
from tests.integration.test_notifier_service import event, publish, summary
from tests.support import Collector, eventually, running


@pytest.fixture
async def deps(nc, database_url):
    engine = make_engine(database_url, pool_size=4)
    yield handlers.Deps(engine=engine, nc=nc)
    await engine.dispose()


def encoded(*events) -> list[bytes]:
    return [msgspec.json.encode(e) for e in events]


async def test_one_batch_keeps_each_inbox_exact(nc, deps):
    d1, d2, owner = (str(uuid7()) for _ in range(3))
    live = await Collector().start(nc, "notify.user.*")
    created1 = event(subjects.BOOKING_CREATED, d1, owner)
    batch = [
        created1,
        event(subjects.BOOKING_EXPIRING, d1, owner),
        event(subjects.BOOKING_CREATED, d2, owner),
        created1,  # a redelivery inside the same batch
        event(subjects.USER_REGISTERED, d1, owner),  # not a notifying event: skipped
        event(subjects.BOOKING_RENEWED, d1, owner),
    ]
    stored = await handlers.on_events(deps, encoded(*batch))
    assert len(stored) == 6

    inbox = {u: await _inbox(deps.engine, u) for u in (d1, d2, owner)}
    assert [x.seq for x in inbox[d1]] == [1, 2, 3]
    assert [x.type for x in inbox[d1]] == [
        "booking.created",
        "booking.expiring",
        "booking.renewed",
    ]
    assert [(x.seq, x.title) for x in inbox[owner]] == [(1, "New booking"), (2, "New booking")]
    assert [x.seq for x in inbox[d2]] == [1]

    await eventually(lambda: _has(live, 6))
    frames = defaultdict(list)
    for _, subject, body in live.items:
        frames[subject.rsplit(".", 1)[1]].append(body)
    # Each frame carries the unread count and inbox version just after its notification.
    assert [(f["unread_count"], f["version"]) for f in frames[d1]] == [(1, 1), (2, 2), (3, 3)]
    assert [(f["unread_count"], f["version"]) for f in frames[owner]] == [(1, 1), (2, 2)]
    async with deps.engine.connect() as conn:
        assert await storage.summary(conn, d1, datetime.now(UTC)) == (3, 3, 3)

    # The whole batch again (a redelivery after a crash): nothing new, nothing published.
    assert await handlers.on_events(deps, encoded(*batch)) == []
    await live.caught_up(deps.nc, "notify.user.marker")
    assert len(live.items) == 6
    assert [x.seq for x in await _inbox(deps.engine, owner)] == [1, 2]


async def _inbox(engine, user: str) -> list[n.Notification]:
    async with engine.connect() as conn:
        return await storage.after_seq(conn, user, 0, 500, datetime.now(UTC))


async def _has(collector, k):
    return len(collector.items) >= k


async def test_concurrent_replicas_with_overlapping_batches_make_no_gap_or_duplicate(
    nc, database_url
):
    drivers = [str(uuid7()) for _ in range(6)]
    owner = str(uuid7())
    events = [
        event(subjects.BOOKING_EXPIRING if k % 2 else subjects.BOOKING_CREATED, d, owner)
        for k in range(8)
        for d in drivers
    ]
    engines = [make_engine(database_url, pool_size=2) for _ in range(2)]
    try:
        replicas = [handlers.Deps(engine=e, nc=nc) for e in engines]
        # Each replica gets overlapping slices, as redeliveries to two replicas would.
        slices = [events[i : i + 12] for i in range(0, len(events), 8)]
        await asyncio.gather(
            *(
                handlers.on_events(replicas[k % 2], encoded(*chunk))
                for k, chunk in enumerate(slices + slices[::-1])
            )
        )
        for user, expected in [(d, 8) for d in drivers] + [(owner, 4 * len(drivers))]:
            items = await _inbox(engines[0], user)
            assert [x.seq for x in items] == list(range(1, expected + 1))
            booking_ids = [x.data["booking_id"] for x in items]
            assert len(set(booking_ids)) == len(booking_ids)
    finally:
        for e in engines:
            await e.dispose()


async def test_an_undecodable_event_in_a_batch_does_not_hold_up_the_others(
    nc, nats_url, database_url
):
    driver, owner = str(uuid7()), str(uuid7())
    # Published before the notifier starts, so its first fetch holds all three.
    await publish(nc, event(subjects.BOOKING_CREATED, driver, owner))
    await nc.jetstream().publish(subjects.BOOKING_CREATED, b"{not json")
    await publish(nc, event(subjects.BOOKING_EXPIRING, driver, owner))
    async with running(serve, Settings(Common(nats_url, database_url))):
        await eventually(lambda: _last_seq(nc, driver, 2))
        await eventually(lambda: _last_seq(nc, owner, 1))
        # The bad one was terminated, not left to be redelivered forever.
        await eventually(lambda: _all_settled(nc))


async def _last_seq(nc, user, seq):
    return (await summary(nc, user)).last_seq == seq


async def _all_settled(nc):
    info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, "notifier")
    return info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_batch_of_registrations_is_one_upsert_with_the_later_roles(deps):
    from services.contracts.envelope import new_event
    from services.contracts.identity import UserRegisteredData

    ann, bob = str(uuid7()), str(uuid7())

    def registered(user_id: str, roles: list[str]):
        data = UserRegisteredData(
            user_id=user_id, email="x@example.com", full_name="X", roles=roles
        )
        return new_event(subjects.USER_REGISTERED, "identity", data, user_id)

    first = registered(ann, ["driver"])
    batch = [
        first,
        event(subjects.BOOKING_CREATED, bob, ann),  # not a registration: skipped here
        registered(bob, ["owner"]),
        registered(ann, ["driver", "owner"]),
    ]
    await handlers.on_user_events(deps, encoded(*batch))
    async with deps.engine.connect() as conn:
        rows = {
            r.user_id: r
            for r in await conn.execute(
                storage.users.select().where(storage.users.c.user_id.in_([ann, bob]))
            )
        }
    assert rows[ann].roles == ["driver", "owner"]
    assert rows[ann].registered_at == first.time
    assert rows[bob].roles == ["owner"]
    # A later batch changes the roles of a known user and keeps when they registered.
    await handlers.on_user_events(deps, encoded(registered(ann, ["admin"])))
    async with deps.engine.connect() as conn:
        row = (
            await conn.execute(storage.users.select().where(storage.users.c.user_id == ann))
        ).one()
    assert row.roles == ["admin"] and row.registered_at == first.time


async def test_a_first_delivery_leaves_out_the_check_and_still_skips_a_stored_copy(
    nc, database_url
):
    engine = make_engine(database_url, pool_size=1)
    sent: list[str] = []

    def watch(dbapi_connection, record) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda r: sent.append(r.query))

    sa_event.listen(engine.sync_engine, "connect", watch)
    deps = handlers.Deps(engine=engine, nc=nc)
    try:
        driver, owner = str(uuid7()), str(uuid7())
        live = await Collector().start(nc, f"notify.user.{driver}")
        created = event(subjects.BOOKING_CREATED, driver, owner)
        assert len(await handlers.on_events(deps, encoded(created), first_delivery=True)) == 2
        await asyncio.sleep(0)  # asyncpg tells its query loggers in the loop's next turn
        assert storage._ALREADY_STORED not in sent

        # A second copy of `created` in the stream (published again after the stream's
        # duplicate window), at its first delivery, in a batch with a new event.
        renewed = event(subjects.BOOKING_RENEWED, driver, owner, created.data.booking_id)
        stored = await handlers.on_events(deps, encoded(created, renewed), first_delivery=True)
        assert [x.type for x in stored] == ["booking.renewed"]
        await asyncio.sleep(0)
        assert storage._ALREADY_STORED in sent  # the batch was stored again with the check

        assert [(x.seq, x.type) for x in await _inbox(engine, driver)] == [
            (1, "booking.created"),
            (2, "booking.renewed"),
        ]
        async with engine.connect() as conn:
            assert await storage.summary(conn, driver, datetime.now(UTC)) == (2, 2, 2)
        await live.caught_up(nc, f"notify.user.{driver}")
        assert [(f["unread_count"], f["version"]) for _, _, f in live.items] == [(1, 1), (2, 2)]
    finally:
        await engine.dispose()


async def test_a_second_copy_of_an_event_in_the_stream_notifies_once(
    nc, nats_url, database_url, deps
):
    driver, owner = str(uuid7()), str(uuid7())
    live = await Collector().start(nc, f"notify.user.{driver}")
    created = event(subjects.BOOKING_CREATED, driver, owner)
    async with running(serve, Settings(Common(nats_url, database_url))):
        await publish(nc, created)
        await eventually(lambda: _last_seq(nc, driver, 1))
        # The same event under another message id: JetStream stores it as a new message,
        # which the notifier gets at its first delivery.
        await publish(nc, created, msg_id=f"again-{created.id}")
        await publish(nc, event(subjects.BOOKING_EXPIRING, driver, owner))
        await eventually(lambda: _last_seq(nc, driver, 2))
        await eventually(lambda: _all_settled(nc))
    assert [x.type for x in await _inbox(deps.engine, driver)] == [
        "booking.created",
        "booking.expiring",
    ]
    await live.caught_up(nc, f"notify.user.{driver}")
    assert [f["notification"]["seq"] for _, _, f in live.items] == [1, 2]

"""The notifier against real NATS and PostgreSQL: who hears what, seq, idempotency."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.contracts import notifier as n
from services.contracts import subjects
from services.contracts.bookings import BookingEventData, Money
from services.contracts.envelope import new_event
from services.contracts.ids import uuid7
from services.notifier.config import Settings
from services.notifier.entrypoints import serve
from services.runtime.config import Common
from services.runtime.micro import RemoteError, call
from tests.support import Collector, consumed, eventually, running


def event(type_: str, driver: str, owner: str, booking_id: str | None = None):
    end = datetime.now(UTC) + timedelta(minutes=5)
    booking_id = booking_id or str(uuid7())
    data = BookingEventData(
        booking_id=booking_id,
        lot_id=str(uuid7()),
        lot_name="Main St",
        slot_id=str(uuid7()),
        slot_label="A1",
        driver_id=driver,
        owner_id=owner,
        status="active",
        start_time=end - timedelta(hours=1),
        end_time=end,
        version=1,
        renewals=0,
        booking_seconds=3600,
        warning_seconds=300,
        price=Money("2.40"),
        payment_method="cash",
        payment_status="pending",
    )
    return new_event(type_, "test", data, booking_id)


async def publish(nc, ev, msg_id: str | None = None):
    await nc.jetstream().publish(
        ev.type, msgspec.json.encode(ev), headers={"Nats-Msg-Id": msg_id or ev.id}
    )


async def summary(nc, user_id) -> n.InboxSummary:
    return await call(
        nc, subjects.NOTIFIER_INBOX_SUMMARY, n.InboxSummaryRequest(user_id), n.InboxSummary
    )


async def test_booking_created_reaches_driver_and_owner_live_and_in_the_inbox(
    nc, nats_url, database_url
):
    driver, owner, bystander = (str(uuid7()) for _ in range(3))
    live = await Collector().start(nc, "notify.user.*")
    async with running(serve, Settings(Common(nats_url, database_url))):
        ev = event(subjects.BOOKING_CREATED, driver, owner)
        await publish(nc, ev)
        await eventually(lambda: _count(live, 2))
        frames = {subject.rsplit(".", 1)[1]: body for _, subject, body in live.items}
        assert frames[driver]["type"] == "notification"
        assert frames[driver]["notification"]["level"] == "success"
        assert frames[driver]["notification"]["data"]["booking_id"] == ev.subject
        assert frames[owner]["notification"]["title"] == "New booking"
        assert bystander not in frames
        assert (await summary(nc, driver)) == n.InboxSummary(unread_count=1, last_seq=1, version=1)
        assert (await summary(nc, bystander)) == n.InboxSummary(0, 0, 0)
        # The same event delivered again (a new message id defeats JetStream's dedupe,
        # as a redelivery after a crash would) makes no second notification.
        await publish(nc, ev, msg_id=str(uuid7()))
        await consumed(nc.jetstream(), "EVENTS", "notifier")
        assert (await summary(nc, driver)).last_seq == 1
        assert len(live.items) == 2


async def _count(collector, k):
    return len(collector.items) >= k


async def test_seq_is_gapless_per_user_with_two_replicas(nc, nats_url, database_url):
    driver, owner = str(uuid7()), str(uuid7())
    settings = Settings(Common(nats_url, database_url))
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(serve, settings))
        await stack.enter_async_context(running(serve, settings))
        await asyncio.gather(
            *(publish(nc, event(subjects.BOOKING_EXPIRING, driver, owner)) for _ in range(40))
        )
        await eventually(lambda: _last_seq_is(nc, driver, 40), timeout=20)
        page = await call(
            nc,
            subjects.NOTIFIER_INBOX_LIST,
            n.InboxAfterRequest(user_id=driver, after_seq=0),
            n.NotificationList,
        )
        assert (await summary(nc, owner)).last_seq == 0  # the owner is not told
    assert [x.seq for x in page.items] == list(range(1, 41))
    assert {x.type for x in page.items} == {"booking.expiring"}


async def _last_seq_is(nc, user_id, seq):
    return (await summary(nc, user_id)).last_seq == seq


async def test_summaries_of_many_users_in_their_order_and_announced_at_start(
    nc, nats_url, database_url
):
    driver, owner, nobody = (str(uuid7()) for _ in range(3))
    syncs = await Collector().start(nc, subjects.NOTIFY_SYNC)
    async with running(serve, Settings(Common(nats_url, database_url))):
        await eventually(lambda: _count(syncs, 1))
        assert syncs.items[0][2]["reason"] == "started"
        await publish(nc, event(subjects.BOOKING_CREATED, driver, owner))

        async def stored() -> bool:
            return (await summary(nc, driver)).last_seq == 1

        await eventually(stored)
        got = await call(
            nc,
            subjects.NOTIFIER_INBOX_SUMMARIES,
            n.InboxSummariesRequest([nobody, owner, driver]),
            n.InboxSummaries,
        )
        assert got.items == [
            n.InboxSummary(0, 0, 0),
            await summary(nc, owner),
            await summary(nc, driver),
        ]
        with pytest.raises(RemoteError) as refused:
            await call(
                nc,
                subjects.NOTIFIER_INBOX_SUMMARIES,
                n.InboxSummariesRequest([driver] * 1001),
                n.InboxSummaries,
            )
        assert refused.value.code == "invalid"

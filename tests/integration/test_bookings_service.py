"""The bookings service against real NATS (JetStream) and PostgreSQL."""

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.bookings.config import Settings
from services.bookings.entrypoints import serve
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.envelope import decode_envelope, new_event
from services.contracts.ids import uuid7
from services.contracts.timers import TimerFired
from services.runtime.config import Common
from services.runtime.micro import RemoteError, call
from tests.support import consumed, eventually, nats_client, running, stored_messages

OWNER = c.Actor(user_id=str(uuid7()), roles=["owner"])
DRIVER = c.Actor(user_id=str(uuid7()), roles=["driver"])
OTHER_DRIVER = c.Actor(user_id=str(uuid7()), roles=["driver"])


@pytest.fixture
async def bookings(nats_url, database_url):
    async with (
        running(serve, Settings(Common(nats_url, database_url))),
        nats_client(nats_url) as nc,
    ):
        yield nc


async def make_lot(nc, **kw) -> c.LotView:
    args = {
        "name": "Lot",
        "address": "1 Street",
        "slot_count": 2,
        "booking_seconds": 60,
        "warning_seconds": 10,
        "price_per_hour": c.MoneyIn("2.40"),
    } | kw
    return await call(nc, subjects.BOOKINGS_LOT_CREATE, c.CreateLot(actor=OWNER, **args), c.LotView)


async def events(nc, subject: str) -> list:
    """Every event on EVENTS with `subject`, as (headers, envelope)."""
    msgs = await stored_messages(nc.jetstream(), subject)
    return [(m.headers, decode_envelope(m.data)) for m in msgs]


async def test_lot_creation_and_rules(bookings):
    lot = await make_lot(bookings, slot_labels=["A1", "A2", "B1"], slot_count=None)
    assert lot.owner_id == OWNER.user_id and lot.total_slots == 3 and lot.free_slots == 3
    assert [s.label for s in lot.slots] == ["A1", "A2", "B1"]
    with pytest.raises(RemoteError) as e:
        await call(
            bookings,
            subjects.BOOKINGS_LOT_CREATE,
            c.CreateLot(actor=DRIVER, name="x", address="y", slot_count=1),
            c.LotView,
        )
    assert e.value.code == "forbidden"
    with pytest.raises(RemoteError) as e:
        await make_lot(bookings, warning_seconds=60)
    assert e.value.code == "invalid" and "warning_seconds" in e.value.detail


async def test_booking_publishes_a_cloudevent_through_the_outbox(bookings):
    lot = await make_lot(bookings)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )
    assert booking.status == "active" and booking.price == c.Money("0.04")  # 2.40 an hour for 60 s
    assert 59 <= booking.remaining_seconds <= 60
    found = await eventually(lambda: events(bookings, subjects.BOOKING_CREATED))
    headers, event = found[0]
    assert headers["Nats-Msg-Id"] == event.id and event.specversion == "1.0"
    data = msgspec.json.decode(event.data, type=c.BookingEventData)
    assert data.booking_id == booking.id and data.owner_id == OWNER.user_id
    assert data.driver_id == DRIVER.user_id and data.slot_label == "1"


async def test_twenty_concurrent_bookings_of_one_slot_give_one_booking(bookings):
    lot = await make_lot(bookings)
    drivers = [c.Actor(user_id=str(uuid7()), roles=["driver"]) for _ in range(20)]

    async def book(actor):
        try:
            return await call(
                bookings,
                subjects.BOOKINGS_BOOKING_CREATE,
                c.CreateBooking(actor=actor, slot_id=lot.slots[0].id),
                c.BookingView,
                timeout=15,
            )
        except RemoteError as e:
            return e

    results = await asyncio.gather(*(book(a) for a in drivers))
    ok = [r for r in results if isinstance(r, c.BookingView)]
    refused = [r for r in results if isinstance(r, RemoteError)]
    assert len(ok) == 1 and len(refused) == 19
    assert {r.code for r in refused} == {"conflict"}
    assert all(r.extra["booked_until"] for r in refused)
    slots = await call(
        bookings, subjects.BOOKINGS_SLOT_LIST, c.ListSlots(actor=DRIVER, lot_id=lot.id), c.SlotList
    )
    assert [s.status for s in slots.items] == ["booked", "free"]


async def fire(nc, booking: c.BookingView, kind: str, version: int) -> None:
    body = TimerFired(
        booking_id=booking.id,
        kind=kind,
        version=version,
        end_time=booking.end_time,
        fire_at=datetime.now(UTC),
    )
    await nc.jetstream().publish(
        subjects.timer_fired_subject(booking.id, kind), msgspec.json.encode(body)
    )


async def get(nc, booking_id, actor=DRIVER) -> c.BookingView:
    return await call(
        nc,
        subjects.BOOKINGS_BOOKING_GET,
        c.GetBooking(actor=actor, booking_id=booking_id),
        c.BookingView,
    )


async def test_fired_timers_warn_once_expire_and_drop_stale_fires(bookings):
    lot = await make_lot(bookings, booking_seconds=1, warning_seconds=0)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )
    await fire(bookings, booking, "warning", 1)
    await fire(bookings, booking, "warning", 1)  # a duplicate fire warns nobody twice
    await fire(bookings, booking, "expiry", 7)  # stale: another period
    await consumed(bookings.jetstream(), subjects.TIMERS_STREAM, "bookings-timers")
    assert (await get(bookings, booking.id)).status == "active"
    await fire(bookings, booking, "expiry", 1)  # may arrive before the end: redelivered
    expired = await eventually(lambda: _status_is(bookings, booking.id, "expired"), timeout=10)
    assert expired.remaining_seconds == 0
    assert datetime.now(UTC) >= booking.end_time
    assert len(await eventually(lambda: events(bookings, subjects.BOOKING_EXPIRED))) == 1
    assert len(await events(bookings, subjects.BOOKING_EXPIRING)) == 1
    lot_now = await call(
        bookings, subjects.BOOKINGS_LOT_GET, c.GetLot(actor=DRIVER, lot_id=lot.id), c.LotView
    )
    assert lot_now.free_slots == 2


async def test_an_expiry_before_its_warning_warns_first_and_the_late_warning_is_dropped(
    bookings,
):
    # The order a killed bookings process leaves: the warning it held is redelivered
    # after the ack wait, the expiry delivered meanwhile comes first.
    lot = await make_lot(bookings, booking_seconds=1, warning_seconds=0)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )
    await asyncio.sleep(max(0.0, (booking.end_time - datetime.now(UTC)).total_seconds()))
    await fire(bookings, booking, "expiry", 1)
    await eventually(lambda: _status_is(bookings, booking.id, "expired"), timeout=10)
    await fire(bookings, booking, "warning", 1)
    await consumed(bookings.jetstream(), subjects.TIMERS_STREAM, "bookings-timers")
    mine = [
        e.type
        for _, e in await events(bookings, "booking.>")
        if e.subject == booking.id and e.type != subjects.BOOKING_CREATED
    ]
    assert mine == [subjects.BOOKING_EXPIRING, subjects.BOOKING_EXPIRED]


async def _status_is(nc, booking_id, status):
    b = await get(nc, booking_id)
    return b if b.status == status else None


async def test_bookings_are_private_and_paginated(bookings):
    lot = await make_lot(bookings, slot_count=5)
    for slot in lot.slots:
        await call(
            bookings,
            subjects.BOOKINGS_BOOKING_CREATE,
            c.CreateBooking(actor=DRIVER, slot_id=slot.id),
            c.BookingView,
        )
    first = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_LIST,
        c.ListBookings(actor=DRIVER, limit=3),
        c.BookingPage,
    )
    second = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_LIST,
        c.ListBookings(actor=DRIVER, limit=3, cursor=first.next_cursor),
        c.BookingPage,
    )
    ids = [b.id for b in first.items + second.items]
    assert len(ids) == 5 == len(set(ids)) and second.next_cursor is None
    assert ids == sorted(ids, reverse=True)
    stranger = c.Actor(user_id=str(uuid7()), roles=["driver"])
    with pytest.raises(RemoteError) as e:
        await get(bookings, ids[0], stranger)
    assert e.value.code == "not_found"
    assert (await get(bookings, ids[0], OWNER)).id == ids[0]
    empty = await call(
        bookings, subjects.BOOKINGS_BOOKING_LIST, c.ListBookings(actor=stranger), c.BookingPage
    )
    assert empty.items == []


async def test_bookings_is_a_discoverable_micro_service(bookings):
    reply = await bookings.request("$SRV.INFO.bookings", b"", timeout=2)
    info = msgspec.json.decode(reply.data)
    assert info["name"] == "bookings"
    assert subjects.BOOKINGS_BOOKING_CREATE in {e["subject"] for e in info["endpoints"]}


async def test_expiry_before_the_end_is_redelivered_not_dropped(bookings):
    lot = await make_lot(bookings, booking_seconds=2, warning_seconds=1)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )
    await fire(bookings, booking, "expiry", 1)
    # The early fire is nak'ed until the end, never settled, so no ack to wait for:
    # expired is first seen only once the end has passed.
    done = await eventually(lambda: _status_is(bookings, booking.id, "expired"), timeout=10)
    assert datetime.now(UTC) >= booking.end_time
    assert done.remaining_seconds == 0


async def test_sweep_expires_an_overdue_booking_whose_timer_never_came(nats_url, database_url):
    from services.bookings.handlers.common import Deps
    from services.bookings.handlers.timers import sweep_overdue
    from services.bookings.payments import SimulatedProvider
    from services.runtime.db import make_engine

    async with (
        running(serve, Settings(Common(nats_url, database_url))),
        nats_client(nats_url) as nc,
    ):
        lot = await make_lot(nc, booking_seconds=60, warning_seconds=10)
        booking = await call(
            nc,
            subjects.BOOKINGS_BOOKING_CREATE,
            c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
            c.BookingView,
        )
        engine = make_engine(database_url, pool_size=1)
        later = booking.end_time + timedelta(seconds=45)
        deps = Deps(engine=engine, payments=SimulatedProvider(), clock=lambda: later)
        try:
            assert await sweep_overdue(deps, overdue_seconds=60) == 0  # not overdue enough
            assert await sweep_overdue(deps, overdue_seconds=30) == 1
            assert await sweep_overdue(deps, overdue_seconds=30) == 0
        finally:
            await engine.dispose()
        assert (await get(nc, booking.id)).status == "expired"
        assert len(await eventually(lambda: events(nc, subjects.BOOKING_EXPIRED))) == 1
        # Never expired without its warning: the sweep warned first (late).
        assert len(await eventually(lambda: events(nc, subjects.BOOKING_EXPIRING))) == 1


async def test_sweep_applies_many_overdue_bookings_in_batches(nats_url, database_url, monkeypatch):
    from services.bookings.handlers import timers
    from services.bookings.handlers.common import Deps
    from services.bookings.payments import SimulatedProvider
    from services.runtime.db import make_engine

    # Batches of 2 expiries: the three bookings take two of them.
    monkeypatch.setattr(timers, "SWEEP_BATCH", 2)
    async with (
        running(serve, Settings(Common(nats_url, database_url))),
        nats_client(nats_url) as nc,
    ):
        lot = await make_lot(nc, slot_count=3, booking_seconds=60, warning_seconds=10)
        made = [
            await call(
                nc,
                subjects.BOOKINGS_BOOKING_CREATE,
                c.CreateBooking(actor=DRIVER, slot_id=slot.id),
                c.BookingView,
            )
            for slot in lot.slots
        ]
        ids = {b.id for b in made}
        engine = make_engine(database_url, pool_size=1)
        later = max(b.end_time for b in made) + timedelta(seconds=45)
        deps = Deps(engine=engine, payments=SimulatedProvider(), clock=lambda: later)
        try:
            assert await timers.sweep_overdue(deps, overdue_seconds=30) == 3
            assert await timers.sweep_overdue(deps, overdue_seconds=30) == 0
        finally:
            await engine.dispose()
        for b in made:
            assert (await get(nc, b.id)).status == "expired"

        async def of_these(subject):
            found = [e for _, e in await events(nc, subject) if e.subject in ids]
            return found if len(found) >= 3 else None

        for subject in (subjects.BOOKING_EXPIRING, subjects.BOOKING_EXPIRED):
            found = await eventually(lambda subject=subject: of_these(subject))
            assert sorted(e.subject for e in found) == sorted(ids), subject


async def test_one_batch_of_fires_is_applied_in_order_per_booking(nats_url, database_url):
    from services.bookings.handlers.common import Deps
    from services.bookings.handlers.timers import on_timers_fired
    from services.bookings.payments import SimulatedProvider
    from services.runtime.db import make_engine

    async with (
        running(serve, Settings(Common(nats_url, database_url))),
        nats_client(nats_url) as nc,
    ):
        lot = await make_lot(nc, slot_count=3, booking_seconds=60, warning_seconds=10)
        a, b, later = [
            await call(
                nc,
                subjects.BOOKINGS_BOOKING_CREATE,
                c.CreateBooking(actor=DRIVER, slot_id=slot.id),
                c.BookingView,
            )
            for slot in lot.slots
        ]
        engine = make_engine(database_url, pool_size=1)
        after_end = a.end_time + timedelta(seconds=1)
        deps = Deps(engine=engine, payments=SimulatedProvider(), clock=lambda: after_end)

        def fired(booking, kind, version, end_time=None):
            return TimerFired(
                booking_id=booking if isinstance(booking, str) else booking.id,
                kind=kind,
                version=version,
                end_time=end_time or a.end_time,
                fire_at=a.end_time,
            )

        not_yet = later.end_time + timedelta(seconds=30)
        batch = [
            fired(a, "warning", 1),
            fired(a, "warning", 1),  # a duplicate: no second warning
            fired(a, "expiry", 1),
            fired(a, "expiry", 1),  # after the expiry above: stale
            fired(b, "expiry", 2),  # another period: stale
            fired(str(uuid7()), "expiry", 1),  # no such booking
            fired("not-a-uuid", "warning", 1),
        ]
        try:
            outcomes = await on_timers_fired(deps, batch)
            assert outcomes == [None] * len(batch)
            # A fire that arrives before the end, by this host's clock, is redelivered.
            deps.clock = lambda: later.end_time - timedelta(seconds=2)
            retry = await on_timers_fired(deps, [fired(later, "expiry", 1, not_yet)])
            assert retry[0] is not None and 1.5 <= retry[0] <= 2.5
        finally:
            await engine.dispose()
        assert (await get(nc, a.id)).status == "expired"
        assert (await get(nc, b.id)).status == "active"
        assert (await get(nc, later.id)).status == "active"
        expired = await eventually(lambda: events(nc, subjects.BOOKING_EXPIRED))
        expiring = await events(nc, subjects.BOOKING_EXPIRING)
        assert [e.subject for _, e in expired] == [a.id]
        assert [e.subject for _, e in expiring] == [a.id]
        data = msgspec.json.decode(expired[0][1].data, type=c.BookingEventData)
        assert data.status == "expired" and data.version == 1


async def test_concurrent_renewals_each_apply_once_in_version_order(bookings):
    """Renewals write only if the booking is as they read it; the losers of a race read
    again, so ten at once give ten renewals, versions 2 to 11, events in that order."""
    lot = await make_lot(bookings)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )

    async def renew():
        return await call(
            bookings,
            subjects.BOOKINGS_BOOKING_RENEW,
            c.RenewBooking(actor=DRIVER, booking_id=booking.id),
            c.BookingView,
            timeout=15,
        )

    results = await asyncio.gather(*(renew() for _ in range(10)), return_exceptions=True)
    renewed = [r for r in results if isinstance(r, c.BookingView)]
    # A renewal that lost RENEW_TRIES races in a row is a 409 to retry, never a half state.
    lost = [r for r in results if isinstance(r, RemoteError)]
    assert all(r.code == "conflict" and "renew it again" in r.detail for r in lost)
    assert len(renewed) + len(lost) == 10 and renewed
    final = await get(bookings, booking.id)
    assert final.renewals == len(renewed)
    assert final.end_time == booking.end_time + timedelta(seconds=60 * len(renewed))
    assert sorted(r.renewals for r in renewed) == list(range(1, len(renewed) + 1))
    found = await eventually(
        lambda: _at_least(events(bookings, subjects.BOOKING_RENEWED), len(renewed))
    )
    versions = [msgspec.json.decode(e.data, type=c.BookingEventData).version for _, e in found]
    assert versions == list(range(2, len(renewed) + 2))


async def test_a_fire_decided_on_a_booking_renewed_since_is_not_written(bookings, database_url):
    """A batch of fires writes a booking's new state and events only if the booking is
    still as read: a renewal that lands between the read and the write wins, and the
    fire, decided again, is stale."""
    from services.bookings import storage
    from services.bookings.handlers.common import Deps
    from services.bookings.handlers.timers import on_timers_fired
    from services.bookings.payments import SimulatedProvider
    from services.runtime.db import make_engine, raw_connection
    from services.runtime.outbox import pending

    lot = await make_lot(bookings)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )
    engine = make_engine(database_url, pool_size=1)
    after_end = booking.end_time + timedelta(seconds=1)
    try:
        async with raw_connection(engine) as raw:
            [read] = await storage.fetch_bookings(raw, [booking.id])
            assert (read.version, read.warned_version) == (1, None)
            await call(
                bookings,
                subjects.BOOKINGS_BOOKING_RENEW,
                c.RenewBooking(actor=DRIVER, booking_id=booking.id),
                c.BookingView,
            )
            expiry = new_event(
                subjects.BOOKING_EXPIRED, "test", {"booking_id": booking.id}, booking.id
            )
            change = storage.FiredChange(booking.id, 1, None, "expired", None)
            applied = await storage.apply_fires(
                raw, [change], after_end, [pending(expiry)], [booking.id]
            )
            assert applied == set()
            written = await raw.fetchval(
                "SELECT count(*) FROM bookings.outbox WHERE event_id = $1", expiry.id
            )
            assert written == 0
        deps = Deps(engine=engine, payments=SimulatedProvider(), clock=lambda: after_end)
        stale = TimerFired(
            booking_id=booking.id,
            kind="expiry",
            version=1,
            end_time=booking.end_time,
            fire_at=booking.end_time,
        )
        assert await on_timers_fired(deps, [stale]) == [None]
    finally:
        await engine.dispose()
    now = await get(bookings, booking.id)
    assert (now.status, now.renewals) == ("active", 1)


async def _at_least(found, n: int):
    got = await found
    return got if len(got) >= n else None


async def test_renewal_after_the_expiry_rebooks_once_and_never_extends_the_expired(bookings):
    """An expiry and a renewal race: whichever writes first, the other sees it. Here the
    expiry wins, so the renewal (within grace, slot free) makes a new booking from the
    old one, and the old stays expired."""
    lot = await make_lot(bookings, booking_seconds=1, warning_seconds=0)
    booking = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=DRIVER, slot_id=lot.slots[0].id),
        c.BookingView,
    )
    await asyncio.sleep(1.1)  # let the one-second booking end, on purpose
    await fire(bookings, booking, "expiry", 1)
    await eventually(lambda: _expired(bookings, booking.id))
    renewed = await call(
        bookings,
        subjects.BOOKINGS_BOOKING_RENEW,
        c.RenewBooking(actor=DRIVER, booking_id=booking.id),
        c.BookingView,
    )
    assert renewed.id != booking.id and renewed.renewed_from == booking.id
    assert renewed.status == "active" and renewed.renewals == 1
    assert (await get(bookings, booking.id)).status == "expired"
    with pytest.raises(RemoteError) as again:
        await call(
            bookings,
            subjects.BOOKINGS_BOOKING_RENEW,
            c.RenewBooking(actor=DRIVER, booking_id=booking.id),
            c.BookingView,
        )
    assert again.value.code == "conflict"  # the slot is taken now, by the new booking


async def _expired(nc, booking_id):
    return (await get(nc, booking_id)).status == "expired" or None


async def create(nc, slot_id: str, key: str | None, actor=DRIVER) -> c.BookingView:
    return await call(
        nc,
        subjects.BOOKINGS_BOOKING_CREATE,
        c.CreateBooking(actor=actor, slot_id=slot_id, request_key=key),
        c.BookingView,
    )


async def renew(nc, booking_id: str, key: str | None) -> c.BookingView:
    return await call(
        nc,
        subjects.BOOKINGS_BOOKING_RENEW,
        c.RenewBooking(actor=DRIVER, booking_id=booking_id, request_key=key),
        c.BookingView,
    )


async def test_a_create_retried_with_its_key_gets_the_booking_it_made(bookings):
    """The api's answer to a create may be lost (a 503 after it stopped waiting) while
    the booking was made: the retry, same driver and same Idempotency-Key, gets that
    booking back; nothing is made or announced twice. Another key, or another driver
    with the same key, still meets a taken slot."""
    lot = await make_lot(bookings)
    slot = lot.slots[0].id
    first = await create(bookings, slot, "k-create")
    again = await create(bookings, slot, "k-create")
    assert again.id == first.id and again.end_time == first.end_time
    for key, actor in (("k-other", DRIVER), (None, DRIVER), ("k-create", OTHER_DRIVER)):
        with pytest.raises(RemoteError) as taken:
            await create(bookings, slot, key, actor)
        assert taken.value.code == "conflict", (key, actor)
    concurrent = await asyncio.gather(
        *(create(bookings, lot.slots[1].id, "k-race") for _ in range(5))
    )
    assert len({b.id for b in concurrent}) == 1  # the losers of the race find the winner
    await eventually(lambda: _at_least(events(bookings, subjects.BOOKING_CREATED), 2))
    await asyncio.sleep(0.5)  # on purpose: a doubled event would arrive meanwhile
    created = await events(bookings, subjects.BOOKING_CREATED)
    made = [msgspec.json.decode(e.data, type=c.BookingEventData).booking_id for _, e in created]
    assert sorted(made) == sorted([first.id, concurrent[0].id])


async def test_a_renewal_retried_with_its_key_renews_once(bookings):
    lot = await make_lot(bookings)
    booking = await create(bookings, lot.slots[0].id, "k-book")
    once = await renew(bookings, booking.id, "k-renew-1")
    again = await renew(bookings, booking.id, "k-renew-1")
    assert once.renewals == again.renewals == 1 and again.end_time == once.end_time
    later = await renew(bookings, booking.id, "k-renew-2")  # a new key: a new renewal
    assert later.renewals == 2
    stale = await renew(bookings, booking.id, "k-renew-1")  # no longer the last change
    assert stale.renewals == 3
    found = await eventually(lambda: _at_least(events(bookings, subjects.BOOKING_RENEWED), 3))
    await asyncio.sleep(0.5)  # on purpose: a doubled event would arrive meanwhile
    assert len(await events(bookings, subjects.BOOKING_RENEWED)) == len(found) == 3


async def test_a_rebooking_retried_with_its_key_gets_the_new_booking(bookings):
    lot = await make_lot(bookings, booking_seconds=1, warning_seconds=0)
    booking = await create(bookings, lot.slots[0].id, None)
    await asyncio.sleep(1.1)  # let the one-second booking end, on purpose
    await fire(bookings, booking, "expiry", 1)
    await eventually(lambda: _expired(bookings, booking.id))
    rebooked = await renew(bookings, booking.id, "k-rebook")
    assert rebooked.id != booking.id and rebooked.renewed_from == booking.id
    again = await renew(bookings, booking.id, "k-rebook")
    assert again.id == rebooked.id and again.start_time == rebooked.start_time
    with pytest.raises(RemoteError) as taken:  # another key: the slot is taken now
        await renew(bookings, booking.id, "k-other")
    assert taken.value.code == "conflict"

"""The timers service against a real nats-server: schedules fire on time, are replaced
on renewal and removed on cancellation, and fire with the timers process stopped."""

import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.contracts import subjects
from services.contracts.bookings import BookingEventData, Money
from services.contracts.envelope import new_event
from services.contracts.timers import TimerFired
from services.runtime.natsconn import ensure_streams
from services.timers.config import Settings
from services.timers.entrypoints import serve
from tests.support import eventually, nats_client, running


def booking_event(
    type_: str, booking_id: str, end: datetime, version: int = 1, warning: int = 1
) -> bytes:
    data = BookingEventData(
        booking_id=booking_id,
        lot_id="l",
        lot_name="L",
        slot_id="s",
        slot_label="1",
        driver_id="d",
        owner_id="o",
        status="active",
        start_time=end - timedelta(seconds=10),
        end_time=end,
        version=version,
        renewals=version - 1,
        booking_seconds=10,
        warning_seconds=warning,
        price=Money("0.00"),
        payment_method="cash",
        payment_status="pending",
    )
    return msgspec.json.encode(new_event(type_, "test", data, booking_id))


async def publish(nc, type_: str, payload: bytes) -> None:
    await nc.jetstream().publish(type_, payload)


@pytest.fixture
async def timers(nats_url):
    async with nats_client(nats_url) as nc:
        await ensure_streams(nc.jetstream())
        fired: list[tuple[float, TimerFired]] = []

        async def cb(msg):
            fired.append((time.time(), msgspec.json.decode(msg.data, type=TimerFired)))

        await nc.jetstream().subscribe(
            subjects.TIMERS_FIRED_BOOKING,
            cb=cb,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        yield nc, fired


async def test_warning_and_expiry_fire_at_their_times_never_early(timers, nats_url):
    nc, fired = timers
    end = datetime.now(UTC) + timedelta(seconds=2)
    async with running(serve, Settings(nats_url)):
        await publish(
            nc, subjects.BOOKING_CREATED, booking_event(subjects.BOOKING_CREATED, "b1", end)
        )
        await eventually(lambda: len(fired) >= 2, timeout=10)
    kinds = [(f.kind, f.booking_id, f.version) for _, f in fired]
    assert kinds == [("warning", "b1", 1), ("expiry", "b1", 1)]
    for arrived, f in fired:
        assert arrived >= f.fire_at.timestamp()  # never early
        assert arrived - f.fire_at.timestamp() < 1.5  # generous window for a busy machine
    assert fired[1][1].fire_at == end


async def test_renewal_replaces_and_cancellation_removes_the_schedules(timers, nats_url):
    nc, fired = timers
    now = datetime.now(UTC)
    async with running(serve, Settings(nats_url)):
        await publish(
            nc,
            subjects.BOOKING_CREATED,
            booking_event(subjects.BOOKING_CREATED, "renewed", now + timedelta(seconds=1.5)),
        )
        await publish(
            nc,
            subjects.BOOKING_RENEWED,
            booking_event(
                subjects.BOOKING_RENEWED, "renewed", now + timedelta(seconds=3), version=2
            ),
        )
        await publish(
            nc,
            subjects.BOOKING_CREATED,
            booking_event(subjects.BOOKING_CREATED, "cancelled", now + timedelta(seconds=1.5)),
        )
        await publish(
            nc,
            subjects.BOOKING_CANCELLED,
            booking_event(subjects.BOOKING_CANCELLED, "cancelled", now + timedelta(seconds=1.5)),
        )
        # The renewed expiry (3 s) fires after the replaced and cancelled ones would
        # have (1.5 s): once it is here, none of those came.
        await eventually(lambda: any(f.kind == "expiry" for _, f in fired), timeout=10)
    got = [(f.booking_id, f.kind, f.version) for _, f in fired]
    assert got == [("renewed", "warning", 2), ("renewed", "expiry", 2)]


async def test_schedules_fire_while_the_timers_process_is_stopped(timers, nats_url):
    nc, fired = timers
    end = datetime.now(UTC) + timedelta(seconds=2)
    async with running(serve, Settings(nats_url)):
        await publish(
            nc, subjects.BOOKING_CREATED, booking_event(subjects.BOOKING_CREATED, "b2", end)
        )

        async def scheduled() -> bool:
            info = await nc.jetstream().stream_info(subjects.TIMERS_STREAM)
            return info.state.messages >= 2

        await eventually(scheduled)
    # The service is stopped now; the server fires on its own.
    await eventually(lambda: len(fired) >= 2, timeout=10)
    assert [(f.kind, f.booking_id) for _, f in fired] == [("warning", "b2"), ("expiry", "b2")]


async def test_a_fired_schedule_leaves_nothing_so_an_expiry_needs_no_purge(timers, nats_url):
    """One-shot schedules are removed once they fire, which is why booking.expired is not
    among the events the timers consumer takes (no purge request per expiry)."""
    nc, fired = timers
    end = datetime.now(UTC) + timedelta(seconds=1)
    js = nc.jetstream()
    async with running(serve, Settings(nats_url)):
        await publish(
            nc, subjects.BOOKING_CREATED, booking_event(subjects.BOOKING_CREATED, "b3", end)
        )
        await eventually(lambda: len(fired) >= 2)
        assert [f.kind for _, f in fired] == ["warning", "expiry"]
        info = await js.stream_info(
            subjects.TIMERS_STREAM, subjects_filter=subjects.timer_schedules_of("b3")
        )
        assert not info.state.subjects  # both schedules are gone
        consumer = await js.consumer_info(subjects.EVENTS_STREAM, "timers")
        assert subjects.BOOKING_EXPIRED not in consumer.config.filter_subjects


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restarted"])
async def test_a_late_older_event_never_replaces_a_newer_schedule(timers, nats_url, restart):
    """A `booking.created` redelivered after the `booking.renewed` made meanwhile (its
    first handling failed while NATS was away) must leave the renewal's schedules: else
    the renewed booking's warning and expiry never fire (seen in the nats-server kill
    test, where only the overdue sweep ended the booking, half a minute late).
    `restarted`: the process that gets the late event has not seen the renewal (a
    restart, another replica), so only the server's sequence check stops it."""
    nc, fired = timers
    now = datetime.now(UTC)
    booking = f"late-{'restarted' if restart else 'same'}"
    renewed = booking_event(
        subjects.BOOKING_RENEWED, booking, now + timedelta(seconds=6), version=2
    )
    late = booking_event(subjects.BOOKING_CREATED, booking, now + timedelta(seconds=4))

    async def settled() -> bool:
        info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, "timers")
        return info.num_pending == 0 and info.num_ack_pending == 0

    def expired() -> bool:
        return any(f.booking_id == booking and f.kind == "expiry" for _, f in fired)

    async with running(serve, Settings(nats_url)):
        await publish(nc, subjects.BOOKING_RENEWED, renewed)
        await eventually(settled)
        if not restart:
            await publish(nc, subjects.BOOKING_CREATED, late)
            await eventually(expired, timeout=15)
    if restart:
        async with running(serve, Settings(nats_url)):
            await publish(nc, subjects.BOOKING_CREATED, late)
            await eventually(expired, timeout=15)
    got = [(f.kind, f.version) for _, f in fired if f.booking_id == booking]
    assert got == [("warning", 2), ("expiry", 2)]

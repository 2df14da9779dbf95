"""Renewals decided on the row this replica kept (services/bookings/kept.py), against a
real PostgreSQL: one round trip when the kept row is current, and the same answer as a
fresh read would give whenever anything it was decided on changed meanwhile."""

import asyncio
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event

from services.bookings.handlers import bookings as handlers
from services.bookings.handlers import carwash as carwash_handlers
from services.bookings.handlers import lots as lot_handlers
from services.bookings.handlers.common import Deps
from services.bookings.payments import SimulatedProvider
from services.contracts import bookings as c
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7
from services.runtime.db import make_engine, raw_connection

OWNER = c.Actor(user_id=str(uuid7()), roles=["owner"])
DRIVER = c.Actor(user_id=str(uuid7()), roles=["driver"])
BOOKING_SECONDS = 3600


class Statements:
    """Counts what the engine's connections send to PostgreSQL (asyncpg's query logger
    sees every statement on a raw connection)."""

    def __init__(self, engine):
        self.sent: Counter = Counter()
        event.listen(engine.sync_engine, "connect", self._watch)

    def _watch(self, dbapi_connection, record) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda r: self.sent.update(["q"]))

    @property
    def count(self) -> int:
        return self.sent["q"]


@pytest.fixture
async def engine(database_url):
    # One connection, watched from its start: every statement is counted, and the types
    # asyncpg looks up once per connection are looked up by the set-up, not the renewals.
    engine = make_engine(database_url, pool_size=1)
    _counted[id(engine)] = Statements(engine)
    yield engine
    await engine.dispose()
    del _counted[id(engine)]


_counted: dict[int, Statements] = {}


async def statements(engine) -> int:
    """Statements the `engine` fixture's connection has sent so far (asyncpg tells its
    query loggers in the loop's next turn)."""
    await asyncio.sleep(0)
    return _counted[id(engine)].count


def replica(engine) -> Deps:
    """One bookings replica's handler dependencies (its own kept rows)."""
    return Deps(engine=engine, payments=SimulatedProvider())


async def new_lot(deps: Deps, slot_count: int, **lot) -> tuple[c.LotView, c.SlotList]:
    made = await lot_handlers.create_lot(
        deps,
        c.CreateLot(
            actor=OWNER,
            name="Kept",
            address="1 Kept Street",
            slot_count=slot_count,
            booking_seconds=BOOKING_SECONDS,
            warning_seconds=600,
            price_per_hour=c.MoneyIn("2.00"),
            **lot,
        ),
    )
    return made, await lot_handlers.list_slots(deps, c.ListSlots(actor=OWNER, lot_id=made.id))


async def lot_and_booking(deps: Deps, **lot) -> tuple[c.LotView, c.BookingView]:
    made, slots = await new_lot(deps, 2, **lot)
    warm_up = await handlers.create_booking(
        replica(deps.engine), c.CreateBooking(actor=DRIVER, slot_id=slots.items[1].id)
    )
    await renew(replica(deps.engine), warm_up.id)
    booking = await handlers.create_booking(
        deps, c.CreateBooking(actor=DRIVER, slot_id=slots.items[0].id)
    )
    return made, booking


async def renew(deps: Deps, booking_id: str, key: str | None = None) -> c.BookingView:
    return await handlers.renew_booking(
        deps, c.RenewBooking(actor=DRIVER, booking_id=booking_id, request_key=key)
    )


async def outbox_versions(engine, booking_id: str) -> int:
    async with raw_connection(engine) as raw:
        return await raw.fetchval(
            "SELECT count(*) FROM bookings.outbox WHERE subject LIKE 'booking.renewed%'"
            " AND convert_from(payload, 'UTF8') LIKE '%' || $1 || '%'",
            booking_id,
        )


async def test_renewing_a_booking_this_replica_wrote_takes_one_statement(engine):
    deps = replica(engine)
    _, booking = await lot_and_booking(deps)
    before = await statements(engine)
    once = await renew(deps, booking.id)
    assert (await statements(engine)) - before == 1
    twice = await renew(deps, booking.id)
    assert (await statements(engine)) - before == 2
    assert (once.renewals, twice.renewals) == (1, 2)
    assert twice.end_time == booking.end_time + timedelta(seconds=2 * BOOKING_SECONDS)
    fresh = await handlers.get_booking(deps, c.GetBooking(actor=DRIVER, booking_id=booking.id))
    assert (fresh.renewals, fresh.end_time, fresh.price) == (2, twice.end_time, twice.price)


async def test_a_booking_renewed_through_another_replica_is_renewed_from_its_current_row(
    engine,
):
    a, b = replica(engine), replica(engine)
    _, booking = await lot_and_booking(a)
    await renew(b, booking.id)  # a's kept row is now a version behind
    before = await statements(engine)
    view = await renew(a, booking.id)
    # The kept try (it writes nothing and returns the current row), then the write.
    assert (await statements(engine)) - before == 2
    assert view.renewals == 2
    assert view.end_time == booking.end_time + timedelta(seconds=2 * BOOKING_SECONDS)
    assert await outbox_versions(engine, booking.id) == 2


async def test_a_lot_change_applies_to_the_next_renewal_of_a_kept_booking(engine):
    deps = replica(engine)
    made, booking = await lot_and_booking(deps)
    other = replica(engine)  # the owner's change goes through another replica
    await lot_handlers.update_lot(
        other, c.UpdateLot(actor=OWNER, lot_id=made.id, price_per_hour=c.MoneyIn("4.00"))
    )
    view = await renew(deps, booking.id)
    # 2.00 for the first hour, 4.00 for the renewal's.
    assert Decimal(view.price.amount) == Decimal("6.00")


async def test_a_kept_booking_cancelled_meanwhile_is_refused_as_a_fresh_read_would(engine):
    deps = replica(engine)
    _, booking = await lot_and_booking(deps)
    await handlers.cancel_booking(
        replica(engine), c.CancelBooking(actor=DRIVER, booking_id=booking.id)
    )
    with pytest.raises(DomainError) as refused:
        await renew(deps, booking.id)
    assert refused.value.code == "conflict" and "cancelled" in refused.value.detail
    assert await outbox_versions(engine, booking.id) == 0


async def test_a_car_wash_ordered_after_the_row_was_kept_shows_in_the_renewal(engine):
    deps = replica(engine)
    _, booking = await lot_and_booking(deps, carwash_price=c.MoneyIn("5.00"))
    assert booking.carwash is None
    order = await carwash_handlers.request_carwash(
        replica(engine), c.RequestCarwash(actor=DRIVER, booking_id=booking.id)
    )
    view = await renew(deps, booking.id)
    assert view.renewals == 1
    assert view.carwash is not None and view.carwash.id == order.id


async def test_a_renewal_retried_with_its_key_is_answered_once_from_a_kept_row(engine):
    deps = replica(engine)
    _, booking = await lot_and_booking(deps)
    once = await renew(deps, booking.id, "k-1")
    again = await renew(deps, booking.id, "k-1")
    assert once.renewals == again.renewals == 1 and once.end_time == again.end_time
    assert await outbox_versions(engine, booking.id) == 1


async def bookings_of_one_lot(deps: Deps, n: int) -> list[c.BookingView]:
    _, slots = await new_lot(deps, n)
    return [
        await handlers.create_booking(deps, c.CreateBooking(actor=DRIVER, slot_id=s.id))
        for s in slots.items
    ]


async def test_one_booking_renewed_twice_at_once_is_renewed_twice_once_each(engine):
    deps = replica(engine)
    _, booking = await lot_and_booking(deps)
    # Both are decided on the same kept row: one writes, the other finds it stale and is
    # decided on the booking as that write left it.
    views = await asyncio.gather(renew(deps, booking.id, "k1"), renew(deps, booking.id, "k2"))
    assert sorted(v.renewals for v in views) == [1, 2]
    assert max(v.end_time for v in views) == booking.end_time + timedelta(
        seconds=2 * BOOKING_SECONDS
    )
    assert await outbox_versions(engine, booking.id) == 2


async def test_one_renewal_sent_twice_at_once_renews_once(engine):
    deps = replica(engine)
    _, booking = await lot_and_booking(deps)
    views = await asyncio.gather(renew(deps, booking.id, "same"), renew(deps, booking.id, "same"))
    assert [v.renewals for v in views] == [1, 1]
    assert views[0].end_time == views[1].end_time
    assert await outbox_versions(engine, booking.id) == 1


async def test_a_stale_kept_row_among_concurrent_renewals_holds_up_none_of_them(engine):
    a, b = replica(engine), replica(engine)
    await lot_and_booking(a)
    booked = await bookings_of_one_lot(a, 3)
    await renew(b, booked[1].id)  # a's kept row of the middle one is now a version behind
    views = await asyncio.gather(*(renew(a, x.id) for x in booked))
    assert [v.renewals for v in views] == [1, 2, 1]
    assert [await outbox_versions(engine, x.id) for x in booked] == [1, 2, 1]

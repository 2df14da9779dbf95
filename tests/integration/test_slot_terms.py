"""A create from kept slot terms (services/bookings/terms.py) against real NATS and
PostgreSQL: kept terms are written in one statement while the lot terms version is
current, and any change of a lot, its slots or its staff, made through another
replica, sends the next create back to a fresh read."""

import itertools
from contextlib import asynccontextmanager
from datetime import timedelta

import msgspec
import pytest

from services.bookings.config import Settings
from services.bookings.entrypoints import serve
from services.bookings.handlers import bookings as handlers
from services.bookings.handlers.common import Deps
from services.bookings.payments import SimulatedProvider
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7
from services.runtime.config import Common
from services.runtime.db import make_engine, raw_connection
from services.runtime.micro import call
from tests.integration.test_bookings_service import DRIVER, OTHER_DRIVER, OWNER, events, make_lot
from tests.support import eventually, nats_client, running


@asynccontextmanager
async def replicas(nats_url, database_url):
    """The bookings service (one replica, reached over NATS) and the handlers of a
    second replica with its own kept terms (`Deps`), on the same database."""
    engine = make_engine(database_url, pool_size=2)
    try:
        async with (
            running(serve, Settings(Common(nats_url, database_url))),
            nats_client(nats_url) as nc,
        ):
            yield nc, Deps(engine=engine, payments=SimulatedProvider(), nc=nc)
    finally:
        await engine.dispose()


async def book(deps: Deps, slot_id: str, actor=DRIVER, **kw) -> c.BookingView:
    return await handlers.create_booking(deps, c.CreateBooking(actor=actor, slot_id=slot_id, **kw))


async def test_kept_terms_are_written_without_a_read_while_current(nats_url, database_url):
    async with replicas(nats_url, database_url) as (nc, deps):
        lot = await make_lot(nc, slot_count=3)
        first = await book(deps, lot.slots[0].id)
        kept = deps.slot_terms.get(lot.slots[1].id)  # the whole lot is kept
        assert kept is not None and kept.label == lot.slots[1].label
        assert first.slot_label == lot.slots[0].label
        # Labels kept that no read would give: a create that writes them did not read
        # the slot again.
        doctor(deps, lot)
        second = await book(deps, lot.slots[1].id)
        assert second.slot_label == "kept" and second.status == "active"
        created = await eventually(lambda: _at_least(events(nc, subjects.BOOKING_CREATED), 2))
        assert {_data(e).booking_id for _, e in created} == {first.id, second.id}


async def test_a_lot_changed_through_another_replica_applies_to_the_next_create(
    nats_url, database_url
):
    async with replicas(nats_url, database_url) as (nc, deps):
        lot = await make_lot(nc, slot_count=3, booking_seconds=60)
        await book(deps, lot.slots[0].id)
        doctor(deps, lot)
        await call(
            nc,
            subjects.BOOKINGS_LOT_UPDATE,
            c.UpdateLot(actor=OWNER, lot_id=lot.id, booking_seconds=120),
            c.LotView,
        )
        made = await book(deps, lot.slots[1].id)
        assert made.slot_label == lot.slots[1].label  # read afresh, not the kept terms
        assert made.end_time - made.start_time == timedelta(seconds=120)
        assert deps.slot_terms.get(lot.slots[1].id).booking_seconds == 120

        # Staff assigned elsewhere: the next create's event names them.
        doctor(deps, lot)
        employee = str(uuid7())
        await call(
            nc,
            subjects.BOOKINGS_STAFF_ASSIGN,
            c.StaffRequest(actor=OWNER, lot_id=lot.id, user_id=employee),
            c.StaffView,
        )
        third = await book(deps, lot.slots[2].id)
        assert third.slot_label == lot.slots[2].label
        created = await eventually(lambda: _at_least(events(nc, subjects.BOOKING_CREATED), 3))
        data = next(_data(e) for _, e in created if _data(e).booking_id == third.id)
        assert data.staff_ids == [employee]


async def test_kept_terms_never_decide_an_error(nats_url, database_url):
    """A kept slot that is taken, removed, or booked with another's vehicle gets the
    answer a fresh read gives."""
    async with replicas(nats_url, database_url) as (nc, deps):
        lot = await make_lot(nc, slot_count=3)
        taken = await book(deps, lot.slots[0].id)
        with pytest.raises(DomainError) as e:
            await book(deps, lot.slots[0].id, actor=OTHER_DRIVER)
        assert e.value.code == "conflict"
        assert e.value.extra["booked_until"] == taken.end_time.isoformat().replace("+00:00", "Z")

        car = await call(
            nc,
            subjects.BOOKINGS_VEHICLE_CREATE,
            c.CreateVehicle(actor=OTHER_DRIVER, plate="AB12CDE"),
            c.VehicleView,
        )
        doctor(deps, lot)
        with pytest.raises(DomainError) as e:
            await book(deps, lot.slots[1].id, vehicle_id=car.id)
        assert e.value.code == "not_found" and "vehicle" in e.value.detail

        await call(
            nc,
            subjects.BOOKINGS_SLOT_REMOVE,
            c.RemoveSlot(actor=OWNER, lot_id=lot.id, slot_id=lot.slots[2].id),
            c.Done,
        )
        doctor(deps, lot)
        with pytest.raises(DomainError) as e:
            await book(deps, lot.slots[2].id)
        assert e.value.code == "not_found"


def doctor(deps: Deps, lot: c.LotView) -> None:
    """Keep the lot's terms as they are kept now, with labels no read would give."""
    kept = deps.slot_terms.get(lot.slots[0].id)
    assert kept is not None
    deps.slot_terms.put(kept, {s.id: "kept" for s in lot.slots})


async def test_every_change_of_a_lot_its_slots_or_staff_bumps_its_terms_version(
    nats_url, database_url
):
    async with replicas(nats_url, database_url) as (nc, deps):
        lot = await make_lot(nc, slot_count=2)
        other = await make_lot(nc, slot_count=1)
        employee = str(uuid7())
        changes = [
            (subjects.BOOKINGS_LOT_UPDATE, c.UpdateLot(actor=OWNER, lot_id=lot.id, name="New")),
            (
                subjects.BOOKINGS_STAFF_ASSIGN,
                c.StaffRequest(actor=OWNER, lot_id=lot.id, user_id=employee),
            ),
            (
                subjects.BOOKINGS_STAFF_UNASSIGN,
                c.StaffRequest(actor=OWNER, lot_id=lot.id, user_id=employee),
            ),
            (
                subjects.BOOKINGS_SLOT_ADD,
                c.AddSlots(actor=OWNER, lot_id=lot.id, slot_labels=["Z9"]),
            ),
            (
                subjects.BOOKINGS_SLOT_REMOVE,
                c.RemoveSlot(actor=OWNER, lot_id=lot.id, slot_id=lot.slots[1].id),
            ),
        ]
        other_was = await version(deps, other.id)
        seen = [await version(deps, lot.id)]
        for subject, request in changes:
            await nc.request(subject, msgspec.json.encode(request), timeout=5)
            seen.append(await version(deps, lot.id))
        assert all(b > a for a, b in itertools.pairwise(seen)), seen
        assert await version(deps, other.id) == other_was  # other lots' changes leave it be


async def version(deps: Deps, lot_id: str) -> int:
    async with raw_connection(deps.engine) as raw:
        return await raw.fetchval("SELECT terms_version FROM bookings.lots WHERE id = $1", lot_id)


def _data(event) -> c.BookingEventData:
    return msgspec.json.decode(event.data, type=c.BookingEventData)


async def _at_least(found, n: int):
    got = await found
    return got if len(got) >= n else None

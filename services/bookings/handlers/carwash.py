"""bookings.carwash.*: order a car wash, then staff start and complete it."""

import sqlalchemy as sa

from services.bookings import domain
from services.bookings.handlers.common import (
    Deps,
    emit,
    load_booking,
    money,
    parse_id,
)
from services.bookings.policy import Action, LotPeople, require_on_booking
from services.bookings.storage import carwash_orders
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7

EVENT_OF_STATUS = {
    "requested": subjects.CARWASH_REQUESTED,
    "in_progress": subjects.CARWASH_STARTED,
    "completed": subjects.CARWASH_COMPLETED,
}


def carwash_event(row, people: LotPeople, status: str) -> c.CarwashEventData:
    """Event data of the booking's car-wash order (`row` from storage.get_booking)."""
    return c.CarwashEventData(
        order_id=row.carwash_id,
        booking_id=row.id,
        lot_id=row.lot_id,
        lot_name=row.lot_name,
        slot_id=row.slot_id,
        slot_label=row.slot_label,
        driver_id=row.user_id,
        owner_id=row.owner_id,
        staff_ids=sorted(people.staff_ids),
        status=status,
        price=money(row.lot_carwash_price, row.currency),
    )


async def _order_view(conn, order_id: str) -> c.CarwashOrderView:
    o = (await conn.execute(sa.select(carwash_orders).where(carwash_orders.c.id == order_id))).one()
    return c.CarwashOrderView(
        id=o.id,
        booking_id=o.booking_id,
        lot_id=o.lot_id,
        status=o.status,
        price=money(o.price, o.currency),
        created_at=o.created_at,
        updated_at=o.updated_at,
    )


async def request_carwash(deps: Deps, req: c.RequestCarwash) -> c.CarwashOrderView:
    """Order a wash (its driver) during an active booking in a lot that offers one."""
    now = deps.clock()
    async with deps.engine.begin() as conn:
        row, people = await load_booking(conn, req.booking_id, for_update=True)
        require_on_booking(
            Action.REQUEST_CARWASH, req.actor.user_id, req.actor.roles, row.user_id, people, row.id
        )
        domain.check_carwash_orderable(
            row.status, row.lot_carwash_price, row.carwash_id is not None
        )
        order_id = str(uuid7())
        await conn.execute(
            carwash_orders.insert().values(
                id=order_id,
                booking_id=row.id,
                lot_id=row.lot_id,
                status="requested",
                price=row.lot_carwash_price,
                currency=row.currency,
                created_at=now,
                updated_at=now,
            )
        )
        row, _ = await load_booking(conn, row.id)
        await emit(
            conn, subjects.CARWASH_REQUESTED, carwash_event(row, people, "requested"), order_id
        )
        view = await _order_view(conn, order_id)
    deps.wake_outbox()
    return view


async def carwash_step(deps: Deps, req: c.CarwashStep) -> c.CarwashOrderView:
    """Start or complete a wash (the lot's staff, owner, or an admin), in order."""
    order_id = parse_id(req.order_id, "car-wash order")
    async with deps.engine.begin() as conn:
        booking_id = (
            await conn.execute(
                sa.select(carwash_orders.c.booking_id)
                .where(carwash_orders.c.id == order_id)
                .with_for_update()
            )
        ).scalar()
        if booking_id is None:
            raise DomainError("not_found", f"No car-wash order with id {order_id}.")
        row, people = await load_booking(conn, booking_id)
        try:
            require_on_booking(
                Action.RUN_CARWASH, req.actor.user_id, req.actor.roles, row.user_id, people, row.id
            )
        except DomainError as e:
            if e.code == "not_found":  # the order, not the booking, is what was asked for
                raise DomainError("not_found", f"No car-wash order with id {order_id}.") from None
            raise
        status = domain.carwash_step(req.step, row.carwash_status)
        await conn.execute(
            carwash_orders.update()
            .where(carwash_orders.c.id == order_id)
            .values(status=status, updated_at=deps.clock())
        )
        await emit(conn, EVENT_OF_STATUS[status], carwash_event(row, people, status), order_id)
        view = await _order_view(conn, order_id)
    deps.wake_outbox()
    return view

"""bookings.booking.*: book, look, renew, cancel, decline."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from services.bookings import domain, storage
from services.bookings.handlers.carwash import carwash_event
from services.bookings.handlers.common import (
    Deps,
    booking_event_data,
    booking_view,
    check_limit,
    decode_cursor,
    emit,
    encode_cursor,
    load_booking,
    money,
    parse_id,
)
from services.bookings.payments import PaymentDeclined
from services.bookings.policy import Action, require_on_booking
from services.bookings.storage import bookings, carwash_orders, lots, slots, staff, vehicles
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7


def _slot_taken(slot_id: str, end: datetime | None) -> DomainError:
    until = end.isoformat().replace("+00:00", "Z") if end else None
    return DomainError(
        "conflict",
        f"Slot {slot_id} is already booked"
        + (f" until {until}" if until else "")
        + "; pick a free slot (GET /api/v1/lots/{lot_id}/slots).",
        {"slot_id": slot_id, "booked_until": until},
    )


async def create_booking(deps: Deps, req: c.CreateBooking) -> c.BookingView:
    """Book a free slot for its lot's booking_seconds from now.

    Raises DomainError: forbidden (not a driver), not_found (no such slot, or a vehicle
    that is not the caller's), conflict (the slot has an active booking;
    `extra.booked_until` says until when), payment_required (the online payment was
    declined: no booking is made and payment.failed is emitted).
    """
    actor = req.actor
    if not domain.may_book(actor.roles):
        raise DomainError("forbidden", "Only drivers can book a slot.")
    slot_id = parse_id(req.slot_id, "slot")
    vehicle_id = None if req.vehicle_id is None else parse_id(req.vehicle_id, "vehicle")
    # The checks before the charge in one read, outside a transaction (no BEGIN and
    # ROLLBACK round trips); the insert below re-checks what matters under locks.
    async with deps.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        slot = (
            await conn.execute(
                sa.select(
                    slots.c.lot_id,
                    slots.c.label,
                    lots.c.booking_seconds,
                    lots.c.price_per_hour,
                    lots.c.currency,
                    lots.c.owner_id,
                    lots.c.name,
                    lots.c.carwash_price,
                    sa.select(bookings.c.end_time)
                    .where(bookings.c.slot_id == slots.c.id, bookings.c.status == "active")
                    .scalar_subquery()
                    .label("booked_until"),
                    sa.exists()
                    .where(vehicles.c.id == vehicle_id, vehicles.c.user_id == actor.user_id)
                    .label("vehicle_is_mine"),
                )
                .select_from(slots.join(lots, lots.c.id == slots.c.lot_id))
                .where(slots.c.id == slot_id, slots.c.removed_at.is_(None))
            )
        ).first()
    if slot is None:
        raise DomainError("not_found", f"No slot with id {slot_id}.")
    if vehicle_id is not None and not slot.vehicle_is_mine:
        raise DomainError(
            "not_found",
            f"No vehicle with id {req.vehicle_id} is registered to you; see GET /api/v1/vehicles.",
        )
    if req.carwash and slot.carwash_price is None:
        raise DomainError("conflict", "This lot offers no car wash; book without it.")
    if slot.booked_until is not None:
        raise _slot_taken(slot_id, slot.booked_until)
    price = domain.booking_price(slot.price_per_hour, slot.booking_seconds)
    booking_id = str(uuid7())
    payment_status = "pending"
    if req.payment_method == "online":
        try:
            await deps.payments.charge(booking_id, price, slot.currency, req.payment_token)
        except PaymentDeclined as e:
            async with deps.engine.begin() as conn:
                await emit(
                    conn,
                    subjects.PAYMENT_FAILED,
                    c.PaymentFailedData(
                        booking_id=None,
                        lot_id=slot.lot_id,
                        lot_name=slot.name,
                        slot_id=slot_id,
                        slot_label=slot.label,
                        driver_id=actor.user_id,
                        owner_id=slot.owner_id,
                        amount=money(price, slot.currency),
                        reason=e.reason,
                    ),
                    slot_id,
                )
            deps.wake_outbox()
            raise DomainError(
                "payment_required",
                f"The payment was declined: {e.reason}. Use another payment token or pay cash.",
            ) from None
        payment_status = "paid"
    now = deps.clock()
    start, end = domain.new_period(now, slot.booking_seconds)
    try:
        async with deps.engine.begin() as conn:
            # FOR SHARE: a concurrent removal of the slot waits for us, or we for it.
            alive = (
                await conn.execute(
                    sa.select(slots.c.id)
                    .where(slots.c.id == slot_id, slots.c.removed_at.is_(None))
                    .with_for_update(read=True)
                )
            ).first()
            if alive is None:
                raise DomainError("not_found", f"No slot with id {slot_id}.")
            await conn.execute(
                bookings.insert().values(
                    id=booking_id,
                    lot_id=slot.lot_id,
                    slot_id=slot_id,
                    user_id=actor.user_id,
                    vehicle_id=vehicle_id,
                    status="active",
                    start_time=start,
                    end_time=end,
                    version=1,
                    renewals=0,
                    price=price,
                    currency=slot.currency,
                    payment_method=req.payment_method,
                    payment_status=payment_status,
                    created_at=now,
                    updated_at=now,
                )
            )
            if req.carwash:
                await conn.execute(
                    carwash_orders.insert().values(
                        id=str(uuid7()),
                        booking_id=booking_id,
                        lot_id=slot.lot_id,
                        status="requested",
                        price=slot.carwash_price,
                        currency=slot.currency,
                        created_at=now,
                        updated_at=now,
                    )
                )
            row, people = await load_booking(conn, booking_id)
            await emit(
                conn,
                subjects.BOOKING_CREATED,
                booking_event_data(row, people.staff_ids),
                booking_id,
            )
            if req.carwash:
                await emit(
                    conn,
                    subjects.CARWASH_REQUESTED,
                    carwash_event(row, people, "requested"),
                    row.carwash_id,
                )
    except IntegrityError as e:
        if "uq_bookings_active_slot" not in str(e.orig):
            raise
        if payment_status == "paid":
            await deps.payments.refund(booking_id, price, slot.currency)
        async with deps.engine.connect() as conn:
            end = await storage.active_booking_end(conn, slot_id)
        raise _slot_taken(slot_id, end) from None
    except DomainError:
        if payment_status == "paid":
            await deps.payments.refund(booking_id, price, slot.currency)
        raise
    deps.wake_outbox()
    await deps.slot_changed(slot.lot_id, slot_id, end)
    return booking_view(row, deps.clock())


async def get_booking(deps: Deps, req: c.GetBooking) -> c.BookingView:
    """Its driver, the lot's owner and staff, and admins see a booking; others: not_found."""
    async with deps.engine.connect() as conn:
        row, people = await load_booking(conn, req.booking_id)
    require_on_booking(
        Action.SEE_BOOKING, req.actor.user_id, req.actor.roles, row.user_id, people, row.id
    )
    return booking_view(row, deps.clock())


async def list_bookings(deps: Deps, req: c.ListBookings) -> c.BookingPage:
    """Newest first. Drivers see their own; owners and staff also their lots'; admins all."""
    limit = check_limit(req.limit)
    before = decode_cursor(req.cursor)
    actor = req.actor
    q = storage.booking_with_context.order_by(bookings.c.id.desc()).limit(limit + 1)
    if domain.ADMIN not in actor.roles:
        staffed = sa.select(staff.c.lot_id).where(staff.c.user_id == actor.user_id)
        q = q.where(
            sa.or_(
                bookings.c.user_id == actor.user_id,
                lots.c.owner_id == actor.user_id,
                bookings.c.lot_id.in_(staffed),
            )
        )
    if req.status:
        q = q.where(bookings.c.status == req.status)
    if before:
        q = q.where(bookings.c.id < before)
    async with deps.engine.connect() as conn:
        rows = list((await conn.execute(q)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    now = deps.clock()
    return c.BookingPage(
        items=[booking_view(r, now) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


async def renew_booking(deps: Deps, req: c.RenewBooking) -> c.BookingView:
    """Renew (its driver only): extend an active booking, or rebook an expired one within
    the lot's grace. Refusals are 409 with the reason, and emit booking.renewal_failed
    (plus payment.failed when an online charge was declined)."""
    now = deps.clock()
    async with deps.engine.begin() as conn:
        row, people = await load_booking(conn, req.booking_id, for_update=True)
        require_on_booking(
            Action.RENEW, req.actor.user_id, req.actor.roles, row.user_id, people, row.id
        )
        # An active booking holds its own slot; only an expired one needs it free.
        slot_free = (
            row.status == "active" or await storage.active_booking_end(conn, row.slot_id) is None
        )
        amount = domain.booking_price(row.lot_price_per_hour, row.booking_seconds)
        plan = domain.plan_renewal(
            domain.BookingState(row.status, row.end_time, row.version, row.renewals, row.price),
            domain.RenewalTerms(
                row.booking_seconds, row.renew_grace_seconds, row.max_renewals, amount
            ),
            now,
            slot_free,
        )
        if not isinstance(plan, domain.Refuse) and row.payment_method == "online":
            try:
                await deps.payments.charge(
                    f"{row.id}:renewal:{row.renewals + 1}", amount, row.currency, req.payment_token
                )
            except PaymentDeclined as e:
                await emit(
                    conn,
                    subjects.PAYMENT_FAILED,
                    c.PaymentFailedData(
                        booking_id=row.id,
                        lot_id=row.lot_id,
                        lot_name=row.lot_name,
                        slot_id=row.slot_id,
                        slot_label=row.slot_label,
                        driver_id=row.user_id,
                        owner_id=row.owner_id,
                        amount=money(amount, row.currency),
                        reason=e.reason,
                    ),
                    row.id,
                )
                plan = domain.Refuse(f"the payment was declined ({e.reason})")
        if isinstance(plan, domain.Refuse):
            await emit(
                conn,
                subjects.BOOKING_RENEWAL_FAILED,
                booking_event_data(row, people.staff_ids, reason=plan.reason),
                row.id,
            )
        else:
            renewed_id = await _apply_renewal(conn, row, plan, amount, now)
            renewed, _ = await load_booking(conn, renewed_id)
            await emit(
                conn,
                subjects.BOOKING_RENEWED,
                booking_event_data(renewed, people.staff_ids),
                renewed_id,
            )
    deps.wake_outbox()
    if isinstance(plan, domain.Refuse):
        raise DomainError(
            "conflict",
            f"The booking was not renewed: {plan.reason}.",
            {"reason": plan.reason, "booking_id": row.id},
        )
    await deps.slot_changed(renewed.lot_id, renewed.slot_id, renewed.end_time)
    return booking_view(renewed, deps.clock())


async def _apply_renewal(conn, row, plan, amount, now) -> str:
    paid = "paid" if row.payment_method == "online" else "pending"
    if isinstance(plan, domain.Extend):
        await conn.execute(
            bookings.update()
            .where(bookings.c.id == row.id)
            .values(
                end_time=plan.end_time,
                version=plan.version,
                renewals=plan.renewals,
                price=row.price + amount,
                payment_status=paid,
                updated_at=now,
            )
        )
        return row.id
    new_id = str(uuid7())
    try:
        async with conn.begin_nested():
            await conn.execute(
                bookings.insert().values(
                    id=new_id,
                    lot_id=row.lot_id,
                    slot_id=row.slot_id,
                    user_id=row.user_id,
                    vehicle_id=row.vehicle_id,
                    status="active",
                    start_time=plan.start_time,
                    end_time=plan.end_time,
                    version=1,
                    renewals=plan.renewals,
                    price=amount,
                    currency=row.currency,
                    payment_method=row.payment_method,
                    payment_status=paid,
                    renewed_from=row.id,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        raise DomainError(
            "conflict", "The slot was taken by someone else a moment ago; book another slot."
        ) from None
    return new_id


async def cancel_booking(deps: Deps, req: c.CancelBooking) -> c.BookingView:
    """Cancel (its driver): the slot is free at once and both timers are removed."""
    return await _end(
        deps,
        req.actor,
        req.booking_id,
        Action.CANCEL,
        "cancelled",
        subjects.BOOKING_CANCELLED,
        None,
    )


async def decline_booking(deps: Deps, req: c.DeclineBooking) -> c.BookingView:
    """Decline with a reason (lot owner or admin): slot freed, timers removed, an online
    payment refunded."""
    if not req.reason.strip():
        raise DomainError("invalid", "reason must say why the booking is declined.")
    return await _end(
        deps,
        req.actor,
        req.booking_id,
        Action.DECLINE,
        "declined",
        subjects.BOOKING_DECLINED,
        req.reason.strip(),
    )


async def _end(
    deps: Deps,
    actor: c.Actor,
    booking_id: str,
    action: Action,
    status: str,
    event_type: str,
    reason: str | None,
) -> c.BookingView:
    now = deps.clock()
    async with deps.engine.begin() as conn:
        row, people = await load_booking(conn, booking_id, for_update=True)
        require_on_booking(action, actor.user_id, actor.roles, row.user_id, people, row.id)
        domain.check_cancellable(row.status)
        values = {"status": status, "updated_at": now}
        refund = status == "declined" and row.payment_status == "paid"
        if refund:
            await deps.payments.refund(row.id, row.price, row.currency)
            values["payment_status"] = "refunded"
        await conn.execute(bookings.update().where(bookings.c.id == row.id).values(**values))
        row, _ = await load_booking(conn, row.id)
        await emit(conn, event_type, booking_event_data(row, people.staff_ids, reason), row.id)
    deps.wake_outbox()
    await deps.slot_changed(row.lot_id, row.slot_id, None)
    return booking_view(row, deps.clock())

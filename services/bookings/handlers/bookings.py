"""bookings.booking.*: book, look, renew, cancel, decline."""

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg
import sqlalchemy as sa

from services.bookings import domain, storage
from services.bookings.handlers.carwash import carwash_event
from services.bookings.handlers.common import (
    SOURCE,
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
from services.bookings.policy import Action, LotPeople, require_on_booking
from services.bookings.storage import bookings, lots, staff
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.errors import DomainError
from services.contracts.ids import uuid7
from services.runtime.db import raw_connection
from services.runtime.outbox import Pending, pending


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

    One round trip when this process keeps the lot's terms (terms.py) and the create
    pays cash: one statement that inserts the booking, its car-wash order and their
    events (the outbox rows), only if the slot is not removed (it holds a FOR SHARE
    lock on the slot while it runs), the lot terms are still as kept and the vehicle is
    the driver's. Otherwise, or when that statement wrote nothing, two: a read of the
    slot and its lot, then the same statement (and, the first time for a lot and its
    terms version, a read of its slot labels, to keep the lot's terms). The rule "one
    active booking per slot" is the database's unique index, so it holds under any
    concurrency and any number of replicas.

    Raises DomainError: forbidden (not a driver), not_found (no such slot, or a vehicle
    that is not the caller's), conflict (the slot has an active booking;
    `extra.booked_until` says until when), payment_required (the online payment was
    declined: no booking is made and payment.failed is emitted).

    A retry of a create whose answer was lost (same `request_key`, same driver) finds
    the booking that try made, while it is active and that create is its last change,
    and answers it again: nothing is written, charged or announced twice.
    """
    actor = req.actor
    if not domain.may_book(actor.roles):
        raise DomainError("forbidden", "Only drivers can book a slot.")
    slot_id = parse_id(req.slot_id, "slot")
    vehicle_id = None if req.vehicle_id is None else parse_id(req.vehicle_id, "vehicle")
    async with raw_connection(deps.engine) as raw:
        made = None
        kept = deps.slot_terms.get(slot_id)
        # Kept terms only lead to a write: a charge, or an error they would decide
        # (no car wash), waits for a fresh read.
        if (
            kept is not None
            and req.payment_method != "online"
            and (kept.carwash_price is not None or not req.carwash)
        ):
            # None when it wrote nothing; the fresh read below tells why, and replaces
            # the kept terms if they were stale.
            made = await _book(
                deps, raw, req, slot_id, vehicle_id, kept, str(uuid7()), "pending", kept=True
            )
        if made is None:
            made = await _read_and_book(deps, raw, req, slot_id, vehicle_id)
    if made.rows:
        deps.committed(made.rows)
        await deps.slot_changed(made.lot_id, slot_id, made.end)
    return made.view


class _Made(NamedTuple):
    """A create's answer, and what to announce after its connection is back: the
    outbox rows it committed (none for a retry answered again), the lot and the end."""

    view: c.BookingView
    rows: list[Pending]
    lot_id: str
    end: datetime | None


async def _read_and_book(
    deps: Deps, raw, req: c.CreateBooking, slot_id: str, vehicle_id: str | None
) -> _Made:
    """The create from a fresh read of the slot: the checks, the charge, then `_book`.
    The lot's terms and slot labels are kept for the next creates (terms.py), read
    once more when not yet kept at this version."""
    actor = req.actor
    slot = await storage.slot_to_book(raw, slot_id, vehicle_id, actor.user_id, req.request_key)
    if slot is None:
        raise DomainError("not_found", f"No slot with id {slot_id}.")
    if not deps.slot_terms.keeps(slot.lot_id, slot.terms_version):
        # Once per lot and change: the next creates of any of its slots skip this read.
        labels = await storage.lot_labels(raw, slot.lot_id)
        if labels is not None and labels[0] == slot.terms_version:
            deps.slot_terms.put(slot, labels[1])
    if vehicle_id is not None and not slot.vehicle_is_mine:
        raise DomainError(
            "not_found",
            f"No vehicle with id {req.vehicle_id} is registered to you; see GET /api/v1/vehicles.",
        )
    if req.carwash and slot.carwash_price is None:
        raise DomainError("conflict", "This lot offers no car wash; book without it.")
    if slot.booked_by_request is not None:
        return _Made(await _as_made(deps, raw, slot.booked_by_request), [], slot.lot_id, None)
    if slot.booked_until is not None:
        raise _slot_taken(slot_id, slot.booked_until)
    price = domain.booking_price(slot.price_per_hour, slot.booking_seconds)
    booking_id = str(uuid7())
    payment_status = "pending"
    if req.payment_method == "online":
        try:
            await deps.payments.charge(booking_id, price, slot.currency, req.payment_token)
        except PaymentDeclined as e:
            declined = c.PaymentFailedData(
                booking_id=None,
                lot_id=slot.lot_id,
                lot_name=slot.name,
                slot_id=slot_id,
                slot_label=slot.label,
                driver_id=actor.user_id,
                owner_id=slot.owner_id,
                amount=money(price, slot.currency),
                reason=e.reason,
            )
            rows = [pending(new_event(subjects.PAYMENT_FAILED, SOURCE, declined, slot_id))]
            await storage.insert_events(raw, rows)
            deps.committed(rows)
            raise DomainError(
                "payment_required",
                f"The payment was declined: {e.reason}. Use another payment token or pay cash.",
            ) from None
        payment_status = "paid"
    made = await _book(deps, raw, req, slot_id, vehicle_id, slot, booking_id, payment_status)
    assert made is not None  # without kept terms, _book writes or raises
    return made


async def _book(
    deps: Deps,
    raw,
    req: c.CreateBooking,
    slot_id: str,
    vehicle_id: str | None,
    slot: storage.SlotToBook,
    booking_id: str,
    payment_status: str,
    kept: bool = False,
) -> _Made | None:
    """Write the booking `booking_id` of `slot` (its terms), its car wash and events,
    in one statement. With `kept` (terms from deps.slot_terms, not read just now):
    None when that statement wrote nothing (terms changed, slot removed or taken,
    vehicle not the driver's); the caller reads afresh, which tells why. Raises
    DomainError conflict when the slot is taken (or not_found when it is gone, for a
    fresh read), after refunding a paid booking."""
    actor = req.actor
    price = domain.booking_price(slot.price_per_hour, slot.booking_seconds)
    now = deps.clock()
    start, end = domain.new_period(now, slot.booking_seconds)
    new = storage.NewBooking(
        id=booking_id,
        lot_id=slot.lot_id,
        slot_id=slot_id,
        user_id=actor.user_id,
        vehicle_id=vehicle_id,
        start_time=start,
        end_time=end,
        renewals=0,
        price=price,
        currency=slot.currency,
        payment_method=req.payment_method,
        payment_status=payment_status,
        renewed_from=None,
        created_at=now,
        request_key=req.request_key,
    )
    carwash_id = str(uuid7()) if req.carwash else None
    row = _row_of_new(new, slot, carwash_id)
    people = LotPeople(slot.owner_id, frozenset(slot.staff_ids))
    events = [
        new_event(subjects.BOOKING_CREATED, SOURCE, booking_event_data(row, slot.staff_ids), row.id)
    ]
    if carwash_id is not None:
        events.append(
            new_event(
                subjects.CARWASH_REQUESTED,
                SOURCE,
                carwash_event(row, people, "requested"),
                carwash_id,
            )
        )
    rows = [pending(e) for e in events]
    version = slot.terms_version if kept else None
    try:
        made = await storage.create_booking(raw, new, carwash_id, slot.carwash_price, rows, version)
    except asyncpg.UniqueViolationError as e:
        if e.constraint_name != "uq_bookings_active_slot":
            raise
        if payment_status == "paid":
            await deps.payments.refund(booking_id, price, slot.currency)
        if req.request_key is not None:  # the same request, retried, may have won
            again = await storage.made_by_request(raw, slot_id, actor.user_id, req.request_key)
            if again is not None:
                return _Made(await _as_made(deps, raw, again), [], slot.lot_id, None)
        taken_until = await raw.fetchval(
            "SELECT end_time FROM bookings.bookings WHERE slot_id = $1 AND status = 'active'",
            slot_id,
        )
        raise _slot_taken(slot_id, taken_until) from None
    if not made:
        if kept:
            return None
        if payment_status == "paid":
            await deps.payments.refund(booking_id, price, slot.currency)
        raise DomainError("not_found", f"No slot with id {slot_id}.")
    deps.kept_bookings.put(row)
    return _Made(booking_view(row, deps.clock()), rows, slot.lot_id, end)


async def _as_made(deps: Deps, raw, booking_id: str) -> c.BookingView:
    """The answer to a retried request (same Idempotency-Key) whose first try made or
    renewed `booking_id`: the booking as it is, with nothing written, charged or
    announced again. Its first answer was lost (a 503 after the api stopped waiting)."""
    row = await storage.fetch_booking(raw, booking_id)
    if row is None:  # bookings are never deleted; kept for the type checker
        raise DomainError("not_found", f"No booking with id {booking_id}.")
    return booking_view(row, deps.clock())


def _row_of_new(
    new: storage.NewBooking, slot: storage.SlotToBook, carwash_id: str | None
) -> storage.BookingRow:
    """The BookingRow a just-made booking has (no reload after the write)."""
    return storage.BookingRow(
        id=new.id,
        lot_id=new.lot_id,
        slot_id=new.slot_id,
        user_id=new.user_id,
        vehicle_id=new.vehicle_id,
        status="active",
        start_time=new.start_time,
        end_time=new.end_time,
        version=1,
        renewals=new.renewals,
        price=new.price,
        currency=new.currency,
        payment_method=new.payment_method,
        payment_status=new.payment_status,
        warned_version=None,
        renewed_from=new.renewed_from,
        created_at=new.created_at,
        updated_at=new.created_at,
        slot_label=slot.label,
        owner_id=slot.owner_id,
        lot_name=slot.name,
        booking_seconds=slot.booking_seconds,
        warning_seconds=slot.warning_seconds,
        renew_grace_seconds=slot.renew_grace_seconds,
        max_renewals=slot.max_renewals,
        lot_price_per_hour=slot.price_per_hour,
        lot_carwash_price=slot.carwash_price,
        carwash_id=carwash_id,
        carwash_status=None if carwash_id is None else "requested",
        staff_ids=slot.staff_ids,
        slot_taken=False,
        request_key=new.request_key,
        terms_version=slot.terms_version,
    )


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


RENEW_TRIES = 5


async def renew_booking(deps: Deps, req: c.RenewBooking) -> c.BookingView:
    """Renew (its driver only): extend an active booking, or rebook an expired one within
    the lot's grace. Refusals are 409 with the reason, and emit booking.renewal_failed
    (plus payment.failed when an online charge was declined).

    One round trip when this replica keeps the booking as it last wrote it
    (services/bookings/kept.py) and the renewal extends it: one statement that writes the
    change and its event only if the booking and its lot's terms are still as kept. Else
    two: a read, then one statement that writes only if the booking is still as read
    (`storage.extend_booking`, `storage.rebook`). A booking that changed in between (its
    expiry fired, another renewal won) is read again, up to RENEW_TRIES times, and then
    refused as a conflict to retry.

    A retry of a renewal whose answer was lost (same `request_key`) answers the booking
    as that try left it, renewing nothing again (`domain.retried_renewal`).
    """
    booking_id = parse_id(req.booking_id, "booking")
    async with raw_connection(deps.engine) as raw:
        renewed, row = await _try_kept_renewal(deps, raw, booking_id, req)
        if renewed is None:
            for _ in range(RENEW_TRIES):
                renewed = await _try_renewal(deps, raw, booking_id, req, row)
                if renewed is not None:
                    break
                row = None
            else:
                raise DomainError(
                    "conflict", "The booking changed while it was being renewed; renew it again."
                )
    deps.kept_bookings.put(renewed)
    await deps.slot_changed(renewed.lot_id, renewed.slot_id, renewed.end_time)
    return booking_view(renewed, deps.clock())


async def _try_kept_renewal(
    deps: Deps, raw, booking_id: str, req: c.RenewBooking
) -> tuple[storage.BookingRow | None, storage.BookingRow | None]:
    """The renewal in one round trip from the kept row, when that row says it is a plain
    extension by its driver of a booking not paid online (the other cases read first:
    refusals, retries, rebooks and charges are decided on a fresh row). Returns
    (renewed row, None) when written; (None, the booking as it is now) when the kept
    row was stale; (None, None) when nothing is kept or the kept row does not qualify."""
    kept = deps.kept_bookings.get(booking_id)
    if kept is None or kept.status != "active" or kept.payment_method == "online":
        return None, None
    try:
        people = LotPeople(kept.owner_id, frozenset(kept.staff_ids))
        require_on_booking(
            Action.RENEW, req.actor.user_id, req.actor.roles, kept.user_id, people, kept.id
        )
    except DomainError:
        return None, None  # answered from a fresh read
    if (
        domain.retried_renewal(kept.status, kept.request_key, kept.slot_taken, req.request_key)
        is not domain.Retry.NONE
    ):
        return None, None
    now = deps.clock()
    amount = domain.booking_price(kept.lot_price_per_hour, kept.booking_seconds)
    plan = domain.plan_renewal(
        domain.BookingState(kept.status, kept.end_time, kept.version, kept.renewals, kept.price),
        domain.RenewalTerms(
            kept.booking_seconds, kept.renew_grace_seconds, kept.max_renewals, amount
        ),
        now,
        True,
    )
    if not isinstance(plan, domain.Extend):
        return None, None
    renewed, rows = _extension(kept, plan, amount, "pending", now, req.request_key)
    written = await storage.extend_kept(
        raw,
        kept,
        plan.end_time,
        plan.version,
        plan.renewals,
        amount,
        "pending",
        now,
        rows,
        req.request_key,
    )
    if not written.applied:
        deps.kept_bookings.drop(booking_id)
        if written.current is None:
            raise DomainError("not_found", f"No booking with id {req.booking_id}.")
        return None, written.current
    deps.committed(rows)
    return renewed._replace(
        carwash_id=written.carwash_id, carwash_status=written.carwash_status
    ), None


def _extension(
    row: storage.BookingRow,
    plan: domain.Extend,
    amount: Decimal,
    paid: str,
    now: datetime,
    request_key: str | None,
) -> tuple[storage.BookingRow, list[Pending]]:
    """The row an extension by `plan` makes of `row` (`request_key`: the renewal's
    Idempotency-Key, recorded as the booking's last change), and its booking.renewed
    event."""
    renewed = row._replace(
        end_time=plan.end_time,
        version=plan.version,
        renewals=plan.renewals,
        price=row.price + amount,
        payment_status=paid,
        updated_at=now,
        request_key=request_key,
    )
    event = new_event(
        subjects.BOOKING_RENEWED, SOURCE, booking_event_data(renewed, row.staff_ids), row.id
    )
    return renewed, [pending(event)]


async def _try_renewal(
    deps: Deps,
    raw,
    booking_id: str,
    req: c.RenewBooking,
    row: storage.BookingRow | None = None,
) -> storage.BookingRow | None:
    """One read-decide-write round (the read skipped when `row` was just read); None when
    the booking changed since the read."""
    now = deps.clock()
    if row is None:
        row = await storage.fetch_booking(raw, booking_id)
    if row is None:
        raise DomainError("not_found", f"No booking with id {req.booking_id}.")
    people = LotPeople(row.owner_id, frozenset(row.staff_ids))
    require_on_booking(
        Action.RENEW, req.actor.user_id, req.actor.roles, row.user_id, people, row.id
    )
    retry = domain.retried_renewal(row.status, row.request_key, row.slot_taken, req.request_key)
    if retry is domain.Retry.EXTENDED:
        return row
    if retry is domain.Retry.REBOOKED:
        made = await storage.made_by_request(
            raw, row.slot_id, row.user_id, req.request_key, renewed_from=row.id
        )
        if made is not None:
            return await storage.fetch_booking(raw, made)
    amount = domain.booking_price(row.lot_price_per_hour, row.booking_seconds)
    # An active booking holds its own slot; only an expired one needs it free.
    plan = domain.plan_renewal(
        domain.BookingState(row.status, row.end_time, row.version, row.renewals, row.price),
        domain.RenewalTerms(row.booking_seconds, row.renew_grace_seconds, row.max_renewals, amount),
        now,
        row.status == "active" or not row.slot_taken,
    )
    charge_id = f"{row.id}:renewal:{row.renewals + 1}"
    charged = False
    refused: list = []
    if not isinstance(plan, domain.Refuse) and row.payment_method == "online":
        try:
            await deps.payments.charge(charge_id, amount, row.currency, req.payment_token)
            charged = True
        except PaymentDeclined as e:
            declined = c.PaymentFailedData(
                booking_id=row.id,
                lot_id=row.lot_id,
                lot_name=row.lot_name,
                slot_id=row.slot_id,
                slot_label=row.slot_label,
                driver_id=row.user_id,
                owner_id=row.owner_id,
                amount=money(amount, row.currency),
                reason=e.reason,
            )
            refused.append(new_event(subjects.PAYMENT_FAILED, SOURCE, declined, row.id))
            plan = domain.Refuse(f"the payment was declined ({e.reason})")
    if isinstance(plan, domain.Refuse):
        data = booking_event_data(row, people.staff_ids, reason=plan.reason)
        refused.append(new_event(subjects.BOOKING_RENEWAL_FAILED, SOURCE, data, row.id))
        rows = [pending(e) for e in refused]
        await storage.insert_events(raw, rows)
        deps.committed(rows)
        raise DomainError(
            "conflict",
            f"The booking was not renewed: {plan.reason}.",
            {"reason": plan.reason, "booking_id": row.id},
        )
    paid = "paid" if row.payment_method == "online" else "pending"
    if isinstance(plan, domain.Extend):
        renewed, rows = _extension(row, plan, amount, paid, now, req.request_key)
        applied = await storage.extend_booking(
            raw,
            row,
            plan.end_time,
            plan.version,
            plan.renewals,
            amount,
            paid,
            now,
            rows,
            req.request_key,
        )
    else:
        new = storage.NewBooking(
            id=str(uuid7()),
            lot_id=row.lot_id,
            slot_id=row.slot_id,
            user_id=row.user_id,
            vehicle_id=row.vehicle_id,
            start_time=plan.start_time,
            end_time=plan.end_time,
            renewals=plan.renewals,
            price=amount,
            currency=row.currency,
            payment_method=row.payment_method,
            payment_status=paid,
            renewed_from=row.id,
            created_at=now,
            request_key=req.request_key,
        )
        renewed = row._replace(
            **new._asdict(),
            status="active",
            version=1,
            warned_version=None,
            updated_at=now,
            carwash_id=None,
            carwash_status=None,
            slot_taken=False,
        )
        event = new_event(
            subjects.BOOKING_RENEWED, SOURCE, booking_event_data(renewed, row.staff_ids), new.id
        )
        rows = [pending(event)]
        try:
            applied = await storage.rebook(raw, new, row.version, rows)
        except asyncpg.UniqueViolationError:
            if charged:
                await deps.payments.refund(charge_id, amount, row.currency)
            raise DomainError(
                "conflict", "The slot was taken by someone else a moment ago; book another slot."
            ) from None
    if not applied:
        if charged:
            await deps.payments.refund(charge_id, amount, row.currency)
        return None
    deps.committed(rows)
    return renewed


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

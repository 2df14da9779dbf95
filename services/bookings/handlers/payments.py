"""bookings.payment.*: verify a cash payment by hand."""

from services.bookings import domain
from services.bookings.handlers.common import (
    Deps,
    booking_event_data,
    booking_view,
    emit,
    load_booking,
)
from services.bookings.policy import Action, require_on_booking
from services.bookings.storage import bookings
from services.contracts import bookings as c
from services.contracts import subjects


async def verify_payment(deps: Deps, req: c.VerifyPayment) -> c.BookingView:
    """Mark a pending cash payment verified (the lot's owner or staff, or an admin);
    emits payment.verified for the driver. 409 for online or already verified payments."""
    async with deps.engine.begin() as conn:
        row, people = await load_booking(conn, req.booking_id, for_update=True)
        require_on_booking(
            Action.VERIFY_PAYMENT, req.actor.user_id, req.actor.roles, row.user_id, people, row.id
        )
        domain.check_verifiable(row.payment_method, row.payment_status)
        await conn.execute(
            bookings.update()
            .where(bookings.c.id == row.id)
            .values(payment_status="verified", updated_at=deps.clock())
        )
        row, _ = await load_booking(conn, row.id)
        await emit(
            conn, subjects.PAYMENT_VERIFIED, booking_event_data(row, people.staff_ids), row.id
        )
    deps.wake_outbox()
    return booking_view(row, deps.clock())

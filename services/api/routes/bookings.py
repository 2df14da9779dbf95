"""Booking routes (docs/contract.md, "Bookings"): book, look, renew, cancel, decline, verify a
cash payment, order and run car washes; served by the bookings service over NATS."""

from typing import Annotated

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter

from services.api.errors import responses
from services.api.idempotency import key_of
from services.api.routes.common import CursorQuery, PathId, ask, deps
from services.contracts import bookings as c
from services.contracts import subjects as s
from services.contracts.bookings import Actor
from services.contracts.limits import PAGE_MAX, Id, PaymentToken, Reason


class BookingIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A booking request. `payment_token` is for online payments (simulated provider:
    a token starting `tok_decline` is declined). `carwash: true` orders a wash too."""

    slot_id: Id
    vehicle_id: Id | None = None
    payment_method: c.PaymentMethod = "cash"
    payment_token: PaymentToken | None = None
    carwash: bool = False


class RenewIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Optional: `payment_token` for an online booking's renewal charge."""

    payment_token: PaymentToken | None = None


class DeclineIn(msgspec.Struct, forbid_unknown_fields=True):
    """Why the booking is declined (told to the driver)."""

    reason: Reason


@post(
    "/bookings",
    status_code=201,
    dependencies=deps,
    responses=responses(400, 401, 402, 403, 404, 409, 422),
    summary="Book a slot (driver)",
)
async def create_booking(
    request: Request, data: JSONBody[BookingIn], actor: NamedDependency[Actor]
) -> c.BookingView:
    """201 the booking; 409 when the slot is not free (`extra.booked_until`); 402 when the
    online payment is declined; 404 for an unknown slot or someone else's vehicle."""
    req = c.CreateBooking(
        actor=actor, request_key=key_of(request.scope), **msgspec.structs.asdict(data)
    )
    return await ask(request, s.BOOKINGS_BOOKING_CREATE, req, c.BookingView)


@get(
    "/bookings",
    dependencies=deps,
    responses=responses(400, 401),
    summary="Bookings the caller may see, newest first",
)
async def list_bookings(
    request: Request,
    actor: NamedDependency[Actor],
    status: FromQuery[c.BookingStatus | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=PAGE_MAX)] = 50,
    cursor: CursorQuery = None,
) -> c.BookingPage:
    """Drivers: their own; owners and staff: also their lots'; admins: all."""
    return await ask(
        request,
        s.BOOKINGS_BOOKING_LIST,
        c.ListBookings(actor=actor, status=status, limit=limit, cursor=cursor),
        c.BookingPage,
    )


@get(
    "/bookings/{booking_id:str}",
    dependencies=deps,
    responses=responses(401, 404),
    summary="One booking (its driver, the lot's owner and staff, admin)",
)
async def get_booking(
    request: Request, actor: NamedDependency[Actor], booking_id: PathId
) -> c.BookingView:
    return await ask(
        request,
        s.BOOKINGS_BOOKING_GET,
        c.GetBooking(actor=actor, booking_id=booking_id),
        c.BookingView,
    )


@post(
    "/bookings/{booking_id:str}/renew",
    status_code=200,
    dependencies=deps,
    responses=responses(400, 401, 403, 404, 409, 422),
    summary="Renew a booking (its driver)",
)
async def renew(
    request: Request,
    actor: NamedDependency[Actor],
    booking_id: PathId,
    data: JSONBody[RenewIn | None] = None,
) -> c.BookingView:
    """Active: the end moves by the lot's booking_seconds (same id, renewals + 1). Expired
    within the lot's renew_grace_seconds with the slot still free: a new booking from now
    with `renewed_from`. Otherwise 409 with `extra.reason` (booking.renewal_failed)."""
    token = data.payment_token if data else None
    return await ask(
        request,
        s.BOOKINGS_BOOKING_RENEW,
        c.RenewBooking(
            actor=actor,
            booking_id=booking_id,
            payment_token=token,
            request_key=key_of(request.scope),
        ),
        c.BookingView,
    )


@post(
    "/bookings/{booking_id:str}/cancel",
    status_code=200,
    dependencies=deps,
    responses=responses(401, 403, 404, 409, 422),
    summary="Cancel a booking (its driver)",
)
async def cancel(
    request: Request, actor: NamedDependency[Actor], booking_id: PathId
) -> c.BookingView:
    """Status cancelled; the slot is free at once and both timers are removed."""
    return await ask(
        request,
        s.BOOKINGS_BOOKING_CANCEL,
        c.CancelBooking(actor=actor, booking_id=booking_id),
        c.BookingView,
    )


@post(
    "/bookings/{booking_id:str}/decline",
    status_code=200,
    dependencies=deps,
    responses=responses(400, 401, 403, 404, 409, 422),
    summary="Decline a booking with a reason (lot owner, admin)",
)
async def decline(
    request: Request,
    data: JSONBody[DeclineIn],
    actor: NamedDependency[Actor],
    booking_id: PathId,
) -> c.BookingView:
    """Status declined, slot freed, timers removed, an online payment refunded; the
    driver is told the reason."""
    return await ask(
        request,
        s.BOOKINGS_BOOKING_DECLINE,
        c.DeclineBooking(actor=actor, booking_id=booking_id, reason=data.reason),
        c.BookingView,
    )


@post(
    "/bookings/{booking_id:str}/payment/verify",
    status_code=200,
    dependencies=deps,
    responses=responses(401, 403, 404, 409, 422),
    summary="Verify a cash payment (lot owner, lot staff, admin)",
)
async def verify_payment(
    request: Request, actor: NamedDependency[Actor], booking_id: PathId
) -> c.BookingView:
    return await ask(
        request,
        s.BOOKINGS_PAYMENT_VERIFY,
        c.VerifyPayment(actor=actor, booking_id=booking_id),
        c.BookingView,
    )


@post(
    "/bookings/{booking_id:str}/carwash",
    status_code=201,
    dependencies=deps,
    responses=responses(401, 403, 404, 409, 422),
    summary="Order a car wash during an active booking (its driver)",
)
async def order_carwash(
    request: Request, actor: NamedDependency[Actor], booking_id: PathId
) -> c.CarwashOrderView:
    """201 the order `{id, status: "requested", ...}`; 409 when the lot offers no wash,
    the booking is not active, or a wash is already ordered."""
    return await ask(
        request,
        s.BOOKINGS_CARWASH_REQUEST,
        c.RequestCarwash(actor=actor, booking_id=booking_id),
        c.CarwashOrderView,
    )


@post(
    "/carwash/{order_id:str}/start",
    status_code=200,
    dependencies=deps,
    responses=responses(401, 403, 404, 409, 422),
    summary="Start a car wash (lot staff, owner, admin)",
)
async def start_carwash(
    request: Request, actor: NamedDependency[Actor], order_id: PathId
) -> c.CarwashOrderView:
    return await ask(
        request,
        s.BOOKINGS_CARWASH_STEP,
        c.CarwashStep(actor=actor, order_id=order_id, step="start"),
        c.CarwashOrderView,
    )


@post(
    "/carwash/{order_id:str}/complete",
    status_code=200,
    dependencies=deps,
    responses=responses(401, 403, 404, 409, 422),
    summary="Complete a car wash (lot staff, owner, admin)",
)
async def complete_carwash(
    request: Request, actor: NamedDependency[Actor], order_id: PathId
) -> c.CarwashOrderView:
    """The driver is told (carwash.completed)."""
    return await ask(
        request,
        s.BOOKINGS_CARWASH_STEP,
        c.CarwashStep(actor=actor, order_id=order_id, step="complete"),
        c.CarwashOrderView,
    )


routes = [
    create_booking,
    list_bookings,
    get_booking,
    renew,
    cancel,
    decline,
    verify_payment,
    order_carwash,
    start_carwash,
    complete_carwash,
]

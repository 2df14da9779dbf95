"""Messages produced by the bookings service: domain event data and request/reply types.

Requests reach the NATS micro service `bookings` (subjects in `subjects.py`); each carries
the acting user (`Actor`) as the api authenticated them. Errors come back as micro
service errors whose code is one of `errors.ErrorCode`, description the human `detail`,
and body an `ErrorBody` JSON.
"""

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from services.contracts.limits import (
    MAX_BULK,
    MAX_ROLES,
    MAX_SLOTS_PER_LOT,
    Address,
    Amount,
    BookingSeconds,
    Currency,
    Cursor,
    GraceSeconds,
    Id,
    IdempotencyKey,
    MaxRenewals,
    Name,
    PageLimit,
    PaymentToken,
    Plate,
    Reason,
    Role,
    SlotCount,
    SlotLabel,
    VehicleLabel,
    WarningSeconds,
)

BookingStatus = Literal["active", "expired", "cancelled", "declined"]
PaymentMethod = Literal["cash", "online"]
PaymentStatus = Literal["pending", "paid", "verified", "failed", "refunded"]
SlotStatus = Literal["free", "booked"]


class Money(msgspec.Struct, frozen=True):
    """An amount of money: `amount` is a decimal string ("4.50"), `currency` ISO 4217."""

    amount: str
    currency: str = "EUR"


class MoneyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An amount of money in a request: `amount` a decimal string of at most 7 digits
    before the point and 2 after ("4.50"), `currency` an active ISO 4217 code.

    Answers and events use `Money`, which does not re-check what was stored."""

    amount: Amount
    currency: Currency = "EUR"


class Actor(msgspec.Struct, frozen=True):
    """Who asks: the user id (UUID string) and roles taken from a verified token."""

    user_id: Id
    roles: Annotated[list[Role], msgspec.Meta(max_length=MAX_ROLES)]


# ----- domain event data (CloudEvents `data`) -----


class BookingEventData(msgspec.Struct, kw_only=True):
    """`data` of every booking.* event: enough to act without calling back.

    Times are UTC datetimes; `version` grows by one on every change of the booking's
    period, and timers carry it so a stale fire can be told from a current one.
    """

    booking_id: str
    lot_id: str
    lot_name: str
    slot_id: str
    slot_label: str
    driver_id: str
    owner_id: str
    vehicle_id: str | None = None
    status: BookingStatus
    start_time: datetime
    end_time: datetime
    version: int
    renewals: int
    booking_seconds: int
    warning_seconds: int
    price: Money
    payment_method: PaymentMethod
    payment_status: PaymentStatus
    reason: str | None = None
    renewed_from: str | None = None
    staff_ids: list[str] = []


class PaymentFailedData(msgspec.Struct, kw_only=True):
    """`data` of payment.failed: an online charge was declined (booking or renewal).

    `booking_id` is null when the declined charge was for a new booking (none was made).
    """

    booking_id: str | None
    lot_id: str
    lot_name: str
    slot_id: str
    slot_label: str
    driver_id: str
    owner_id: str
    amount: Money
    reason: str


class CarwashEventData(msgspec.Struct, kw_only=True):
    """`data` of carwash.requested / carwash.started / carwash.completed."""

    order_id: str
    booking_id: str
    lot_id: str
    lot_name: str
    slot_id: str
    slot_label: str
    driver_id: str
    owner_id: str
    staff_ids: list[str] = []
    status: Literal["requested", "in_progress", "completed"]
    price: Money


class StaffEventData(msgspec.Struct, kw_only=True):
    """`data` of staff.assigned / staff.unassigned."""

    lot_id: str
    lot_name: str
    owner_id: str
    employee_id: str
    by_user_id: str


# ----- request/reply -----


SlotLabels = Annotated[list[SlotLabel], msgspec.Meta(max_length=MAX_SLOTS_PER_LOT)]


class CreateLot(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Create a lot with its slots; the actor becomes its owner (an admin may name one)."""

    actor: Actor
    name: Name
    address: Address
    slot_labels: SlotLabels | None = None
    slot_count: SlotCount | None = None
    booking_seconds: BookingSeconds = 3600
    warning_seconds: WarningSeconds = 300
    price_per_hour: MoneyIn = MoneyIn("0.00")
    carwash_price: MoneyIn | None = None
    owner_id: Id | None = None


class GetLot(msgspec.Struct, kw_only=True):
    """One lot; `with_slots` false leaves `slots` null (a cheap check that it exists)."""

    actor: Actor
    lot_id: Id
    with_slots: bool = True


class ListLots(msgspec.Struct, kw_only=True):
    """Lots in creation order; `mine` keeps those the actor owns or is staff of."""

    actor: Actor
    limit: PageLimit = 50
    cursor: Cursor | None = None
    mine: bool = False


class ListSlots(msgspec.Struct, kw_only=True):
    actor: Actor
    lot_id: Id


class CreateBooking(msgspec.Struct, kw_only=True):
    """Book `slot_id` for the lot's booking_seconds from now. `request_key`: the HTTP
    request's Idempotency-Key; a retry with the same key, while the booking it made is
    active and that create is its last change, gets that booking back (nothing new is
    made, charged or announced) instead of a 409 (docs/contract.md)."""

    actor: Actor
    slot_id: Id
    vehicle_id: Id | None = None
    payment_method: PaymentMethod = "cash"
    payment_token: PaymentToken | None = None
    carwash: bool = False
    request_key: IdempotencyKey | None = None


class GetBooking(msgspec.Struct, kw_only=True):
    actor: Actor
    booking_id: Id


class ListBookings(msgspec.Struct, kw_only=True):
    actor: Actor
    status: BookingStatus | None = None
    limit: PageLimit = 50
    cursor: Cursor | None = None


class SlotView(msgspec.Struct, kw_only=True):
    """A slot as the API shows it; `booked_until` is the active booking's end or null."""

    id: str
    label: str
    status: SlotStatus
    booked_until: datetime | None = None


class LotView(msgspec.Struct, kw_only=True):
    id: str
    owner_id: str
    name: str
    address: str
    booking_seconds: int
    warning_seconds: int
    renew_grace_seconds: int
    max_renewals: int | None
    price_per_hour: Money
    carwash_price: Money | None
    total_slots: int
    free_slots: int
    created_at: datetime
    slots: list[SlotView] | None = None


class PaymentView(msgspec.Struct, kw_only=True):
    method: PaymentMethod
    status: PaymentStatus
    amount: Money


class CarwashView(msgspec.Struct, kw_only=True):
    id: str
    status: Literal["requested", "in_progress", "completed"]


class BookingView(msgspec.Struct, kw_only=True):
    """A booking as the API shows it; `remaining_seconds` is computed at reply time."""

    id: str
    lot_id: str
    slot_id: str
    slot_label: str
    user_id: str
    vehicle_id: str | None
    status: BookingStatus
    start_time: datetime
    end_time: datetime
    remaining_seconds: int
    renewals: int
    price: Money
    payment: PaymentView
    carwash: CarwashView | None = None
    renewed_from: str | None = None


class LotPage(msgspec.Struct):
    items: list[LotView]
    next_cursor: str | None = None


class SlotList(msgspec.Struct):
    items: list[SlotView]


class BookingPage(msgspec.Struct):
    items: list[BookingView]
    next_cursor: str | None = None


class UpdateLot(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Change a lot's settings; fields left UNSET stay as they are. New values apply to
    bookings and renewals made from now on. `carwash_price` null stops offering washes,
    `max_renewals` null removes the cap."""

    actor: Actor
    lot_id: Id
    name: Name | msgspec.UnsetType = msgspec.UNSET
    address: Address | msgspec.UnsetType = msgspec.UNSET
    booking_seconds: BookingSeconds | msgspec.UnsetType = msgspec.UNSET
    warning_seconds: WarningSeconds | msgspec.UnsetType = msgspec.UNSET
    renew_grace_seconds: GraceSeconds | msgspec.UnsetType = msgspec.UNSET
    max_renewals: MaxRenewals | msgspec.UnsetType | None = msgspec.UNSET
    price_per_hour: MoneyIn | msgspec.UnsetType = msgspec.UNSET
    carwash_price: MoneyIn | msgspec.UnsetType | None = msgspec.UNSET


class AddSlots(msgspec.Struct, kw_only=True):
    """Add slots by label, or `count` slots numbered after the lot's current ones; a lot
    has at most MAX_SLOTS_PER_LOT slots in all."""

    actor: Actor
    lot_id: Id
    slot_labels: SlotLabels | None = None
    count: SlotCount | None = None


class RemoveSlot(msgspec.Struct, kw_only=True):
    actor: Actor
    lot_id: Id
    slot_id: Id


class StaffRequest(msgspec.Struct, kw_only=True):
    """Assign or unassign `user_id`. Roles live with the api, which sets `is_employee`
    (does `user_id` exist with the employee role?); bookings checks the caller first."""

    actor: Actor
    lot_id: Id
    user_id: Id
    is_employee: bool = True


class ListStaff(msgspec.Struct, kw_only=True):
    actor: Actor
    lot_id: Id


class StaffView(msgspec.Struct, kw_only=True):
    lot_id: str
    user_id: str
    assigned_by: str
    assigned_at: datetime


class StaffList(msgspec.Struct):
    items: list[StaffView]


class CreateVehicle(msgspec.Struct, kw_only=True):
    actor: Actor
    plate: Plate
    label: VehicleLabel | None = None


class ListVehicles(msgspec.Struct, kw_only=True):
    actor: Actor


class VehicleView(msgspec.Struct, kw_only=True):
    """A driver's vehicle; `plate` is normalised (upper case, no spaces or dashes)."""

    id: str
    plate: str
    label: str | None
    created_at: datetime


class VehicleList(msgspec.Struct):
    items: list[VehicleView]


class RenewBooking(msgspec.Struct, kw_only=True):
    """Renew a booking; online bookings are charged again with `payment_token`.
    `request_key`: the HTTP request's Idempotency-Key; a retry with the same key gets
    the booking as the first try left it (renewed once, charged once) while that
    renewal is the booking's last change, or while the booking it made is active."""

    actor: Actor
    booking_id: Id
    payment_token: PaymentToken | None = None
    request_key: IdempotencyKey | None = None


class CancelBooking(msgspec.Struct, kw_only=True):
    actor: Actor
    booking_id: Id


class DeclineBooking(msgspec.Struct, kw_only=True):
    actor: Actor
    booking_id: Id
    reason: Reason


class VerifyPayment(msgspec.Struct, kw_only=True):
    actor: Actor
    booking_id: Id


class RequestCarwash(msgspec.Struct, kw_only=True):
    actor: Actor
    booking_id: Id


class CarwashStep(msgspec.Struct, kw_only=True):
    """Move a car-wash order on: `step` is "start" or "complete"."""

    actor: Actor
    order_id: Id
    step: Literal["start", "complete"]


class CarwashOrderView(msgspec.Struct, kw_only=True):
    id: str
    booking_id: str
    lot_id: str
    status: Literal["requested", "in_progress", "completed"]
    price: Money
    created_at: datetime
    updated_at: datetime


class Done(msgspec.Struct):
    """An empty success reply."""


class SlotUpdate(msgspec.Struct, kw_only=True, tag="slot_update", tag_field="type"):
    """Live availability on core NATS `slots.lot.<lot_id>`: no personal data.

    `status` "booked" with `booked_until` (UTC datetime) or "free" with null.
    """

    lot_id: str
    slot_id: str
    status: SlotStatus
    booked_until: datetime | None = None


# ----- bulk set-up (admin; appended for `parkmate replay`) -----


class BulkVehicle(msgspec.Struct, kw_only=True):
    """One vehicle to register for `user_id` (the api checked the user exists)."""

    user_id: Id
    plate: Plate
    label: VehicleLabel | None = None


class CreateVehiclesBulk(msgspec.Struct, kw_only=True):
    """Register many drivers' vehicles in one set-based insert (admins only)."""

    actor: Actor
    vehicles: Annotated[list[BulkVehicle], msgspec.Meta(max_length=MAX_BULK)]


class BulkVehicleView(msgspec.Struct, kw_only=True):
    """A registered vehicle with its driver; `plate` normalised."""

    id: str
    user_id: str
    plate: str
    label: str | None
    created_at: datetime


class BulkVehicleList(msgspec.Struct):
    """The new vehicles, in the order they were asked for."""

    items: list[BulkVehicleView]

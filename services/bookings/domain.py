"""Booking rules, with no I/O: prices, periods, who may do what, when a timer counts.

Times are timezone-aware UTC datetimes; durations are whole seconds.
"""

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from services.contracts.errors import DomainError
from services.contracts.limits import AMOUNT_MAX, MAX_SLOTS_PER_LOT

CENT = Decimal("0.01")
# The largest price a booking's price column (numeric(12, 2)) holds.
PRICE_MAX = Decimal("9999999999.99")

ADMIN, OWNER, EMPLOYEE, DRIVER = "admin", "owner", "employee", "driver"


def parse_money(amount: str, field: str) -> Decimal:
    """A non-negative decimal string with at most two decimals, at most AMOUNT_MAX ->
    Decimal.

    Raises DomainError("invalid") naming `field` otherwise.
    """
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise DomainError(
            "invalid", f'{field}.amount must be a decimal string like "4.50".'
        ) from None
    if not value.is_finite() or value < 0 or value != value.quantize(CENT):
        raise DomainError("invalid", f"{field}.amount must be >= 0 with at most two decimals.")
    if value > Decimal(AMOUNT_MAX):
        raise DomainError("invalid", f"{field}.amount must be at most {AMOUNT_MAX}.")
    return value


def booking_price(price_per_hour: Decimal, booking_seconds: int) -> Decimal:
    """price_per_hour x booking_seconds / 3600, rounded half-up to the cent (decimal math)."""
    return (price_per_hour * Decimal(booking_seconds) / Decimal(3600)).quantize(
        CENT, rounding=ROUND_HALF_UP
    )


@dataclass(frozen=True)
class LotSettings:
    """The timing of a lot: a booking lasts `booking_seconds`, warned `warning_seconds` before."""

    booking_seconds: int
    warning_seconds: int


def validate_lot(
    name: str,
    address: str,
    settings: LotSettings,
    slot_labels: list[str] | None,
    slot_count: int | None,
) -> list[str]:
    """Check a new lot and return its slot labels.

    Either `slot_labels` (unique, non-empty) or `slot_count` (labels "1".."N") must be
    given, 1 to MAX_SLOTS_PER_LOT slots. booking_seconds >= 1 and
    0 <= warning_seconds < booking_seconds. Raises DomainError("invalid") naming the field.
    """
    if not name.strip():
        raise DomainError("invalid", "name must not be empty.")
    if not address.strip():
        raise DomainError("invalid", "address must not be empty.")
    if settings.booking_seconds < 1:
        raise DomainError("invalid", "booking_seconds must be at least 1.")
    if not 0 <= settings.warning_seconds < settings.booking_seconds:
        raise DomainError("invalid", "warning_seconds must be >= 0 and less than booking_seconds.")
    if (slot_labels is None) == (slot_count is None):
        raise DomainError("invalid", "Give exactly one of slot_labels or slot_count.")
    if slot_count is not None:
        if not 1 <= slot_count <= MAX_SLOTS_PER_LOT:
            raise DomainError("invalid", f"slot_count must be between 1 and {MAX_SLOTS_PER_LOT}.")
        return [str(i) for i in range(1, slot_count + 1)]
    labels = [label.strip() for label in slot_labels or []]
    if not 1 <= len(labels) <= MAX_SLOTS_PER_LOT:
        raise DomainError("invalid", f"slot_labels must hold 1 to {MAX_SLOTS_PER_LOT} labels.")
    if any(not label for label in labels):
        raise DomainError("invalid", "slot_labels must not contain empty labels.")
    if len(set(labels)) != len(labels):
        raise DomainError("invalid", "slot_labels must be unique within the lot.")
    return labels


def may_create_lot(roles: list[str]) -> bool:
    """Owners create lots for themselves; admins for anyone."""
    return OWNER in roles or ADMIN in roles


def may_book(roles: list[str]) -> bool:
    """Only drivers book (every registered user starts as a driver)."""
    return DRIVER in roles


def new_period(now: datetime, booking_seconds: int) -> tuple[datetime, datetime]:
    """(start, end) of a booking made at `now`."""
    return now, now + timedelta(seconds=booking_seconds)


def remaining_seconds(end_time: datetime, now: datetime) -> int:
    """Whole seconds left until `end_time`, never negative (rounded up while time remains)."""
    left = (end_time - now).total_seconds()
    if left <= 0:
        return 0
    return int(-(-left // 1))


@dataclass(frozen=True)
class BookingClock:
    """What a fired timer is checked against: the booking's state and period."""

    status: str
    version: int
    end_time: datetime
    warned_version: int | None


def warning_is_due(booking: BookingClock, fired_version: int) -> bool:
    """A warning counts when the booking is still active, in the same period, not yet warned.

    A stale fire (the booking was renewed, cancelled, declined or expired since the
    timer was scheduled) is dropped: see docs/architecture.md, "Time is the server's".
    """
    return (
        booking.status == "active"
        and booking.version == fired_version
        and booking.warned_version != fired_version
    )


def expiry_warns_first(booking: BookingClock) -> bool:
    """Whether expiring `booking` (active, its end come) must first send its period's
    warning, late. A driver is never expired without a warning: the warning's fire can
    come after the expiry's, as when the process holding it was killed and the server
    redelivered it after the expiry had been delivered, or not at all. The warning it
    would have sent is then dropped as stale (`warning_is_due`)."""
    return booking.warned_version != booking.version


class ExpiryDecision(enum.Enum):
    """What to do with a fired expiry timer."""

    EXPIRE = "expire"  # current period and its end has come
    DROP = "drop"  # stale: the booking moved on since the timer was scheduled
    RETRY = "retry"  # current, but this host's clock is behind the NATS server's


def decide_expiry(booking: BookingClock, fired_version: int, now: datetime) -> ExpiryDecision:
    """Decide on a fired expiry: expire only the same active period, never before its end.

    A timer whose version no longer matches is stale (renewed, cancelled, declined or
    already expired) and is dropped; see docs/architecture.md, "Time is the server's". When
    this host's clock says the end has not come yet (clock skew with the NATS server),
    the caller redelivers later rather than dropping it, so the booking still expires.
    """
    if booking.status != "active" or booking.version != fired_version:
        return ExpiryDecision.DROP
    if now < booking.end_time:
        return ExpiryDecision.RETRY
    return ExpiryDecision.EXPIRE


# ----- renewals -----


@dataclass(frozen=True)
class BookingState:
    """The parts of a booking the renewal rules look at (times are UTC datetimes)."""

    status: str
    end_time: datetime
    version: int
    renewals: int
    price: Decimal = Decimal(0)  # what the booking costs so far


@dataclass(frozen=True)
class RenewalTerms:
    """The lot's rules: period length, grace after expiry, renewal cap (None: no cap),
    and what one more period costs."""

    booking_seconds: int
    renew_grace_seconds: int
    max_renewals: int | None
    period_price: Decimal = Decimal(0)


@dataclass(frozen=True)
class Extend:
    """Renew an active booking in place: same id, later end, next version."""

    end_time: datetime
    version: int
    renewals: int


@dataclass(frozen=True)
class Rebook:
    """Renew an expired booking as a new active booking from now (`renewed_from` the old)."""

    start_time: datetime
    end_time: datetime
    renewals: int


@dataclass(frozen=True)
class Refuse:
    """The renewal is refused; `reason` is shown to the driver."""

    reason: str


def plan_renewal(
    b: BookingState, terms: RenewalTerms, now: datetime, slot_free: bool
) -> Extend | Rebook | Refuse:
    """Decide a renewal (docs/contract.md, "Bookings", Renewing).

    Active: the end moves by booking_seconds from the current end. This holds in the
    last moment too, when the expiry timer may already be in flight: the version moves
    on, so that fire is stale and dropped. Expired: within renew_grace_seconds after the
    end and with the slot still free, a new booking from now. Otherwise, or past
    max_renewals, refused with the reason; an extension whose total price would pass
    PRICE_MAX is refused too (book again instead).
    """
    if terms.max_renewals is not None and b.renewals >= terms.max_renewals:
        return Refuse(f"this lot allows at most {terms.max_renewals} renewals")
    period = timedelta(seconds=terms.booking_seconds)
    if b.status == "active":
        if b.price + terms.period_price > PRICE_MAX:
            return Refuse(f"the booking's total price would pass {PRICE_MAX}; book again instead")
        return Extend(b.end_time + period, b.version + 1, b.renewals + 1)
    if b.status != "expired":
        return Refuse(f"a {b.status} booking cannot be renewed; book a slot again")
    if now - b.end_time > timedelta(seconds=terms.renew_grace_seconds):
        return Refuse(f"the renewal window closed {terms.renew_grace_seconds} s after the end")
    if not slot_free:
        return Refuse("the slot was taken by someone else after your booking ended")
    return Rebook(now, now + period, b.renewals + 1)


class Retry(enum.Enum):
    """What a renewal sees of an earlier try of itself (`retried_renewal`)."""

    NONE = "none"  # no sign of one: decide the renewal
    EXTENDED = "extended"  # that try extended this booking, nothing changed it since
    REBOOKED = "rebooked"  # that try may have rebooked it: look for the new booking


def retried_renewal(
    status: str, last_request_key: str | None, slot_taken: bool, request_key: str | None
) -> Retry:
    """Whether a renewal carrying `request_key` (its HTTP Idempotency-Key) was already
    applied by an earlier try whose answer was lost (a 503 after the api stopped
    waiting), from the booking's `status`, the key of its last change
    (`last_request_key`) and whether another booking holds its slot. Without a key there
    is no retry to recognise. Such a retry must answer what the first try did instead of
    renewing again (docs/contract.md, Idempotency-Key)."""
    if request_key is None:
        return Retry.NONE
    if status == "active" and last_request_key == request_key:
        return Retry.EXTENDED
    if status == "expired" and slot_taken:
        return Retry.REBOOKED
    return Retry.NONE


# ----- state changes by people -----


def check_cancellable(status: str) -> None:
    """Only an active booking can be cancelled (by its driver) or declined (by the lot)."""
    if status != "active":
        raise DomainError("conflict", f"The booking is {status}, not active; nothing to do.")


def check_verifiable(method: str, payment_status: str) -> None:
    """Only a pending cash payment is verified by hand."""
    if method != "cash":
        raise DomainError(
            "conflict",
            "Online payments are confirmed by the payment provider; "
            "only cash payments are verified by hand.",
        )
    if payment_status != "pending":
        raise DomainError("conflict", f"The payment is already {payment_status}.")


CARWASH_NEXT = {"start": ("requested", "in_progress"), "complete": ("in_progress", "completed")}


def carwash_step(step: str, status: str) -> str:
    """The order's next status for `step` ("start" or "complete"); 409 out of order."""
    expected, after = CARWASH_NEXT[step]
    if status != expected:
        raise DomainError(
            "conflict", f"The car wash is {status}; it must be {expected} to {step} it."
        )
    return after


def check_carwash_orderable(
    booking_status: str, carwash_price: Decimal | None, has_order: bool
) -> None:
    """A car wash is ordered during an active booking, in a lot that offers one, once."""
    if carwash_price is None:
        raise DomainError("conflict", "This lot offers no car wash.")
    if booking_status != "active":
        raise DomainError("conflict", "A car wash can only be ordered during an active booking.")
    if has_order:
        raise DomainError("conflict", "A car wash is already ordered for this booking.")


def normalise_plate(plate: str) -> str:
    """Upper case with spaces and dashes removed ("ab-12 cd" -> "AB12CD"); 2 to 12 letters
    or digits, else DomainError("invalid")."""
    value = "".join(ch for ch in plate.upper() if ch not in " -\t")
    if not 2 <= len(value) <= 12 or not value.isalnum():
        raise DomainError(
            "invalid", "plate must have 2 to 12 letters or digits (spaces and dashes are ignored)."
        )
    return value

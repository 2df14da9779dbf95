"""What every handler shares: dependencies, ids and cursors, views, event data."""

import base64
import binascii
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import sqlalchemy as sa
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.bookings import domain, storage
from services.bookings.kept import KeptBookings
from services.bookings.payments import PaymentProvider
from services.bookings.policy import LotPeople
from services.bookings.storage import lots
from services.bookings.terms import SlotTerms
from services.contracts import bookings as c
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.errors import DomainError
from services.runtime.outbox import Pending

SOURCE = "parkmate/bookings"
_encoder = msgspec.json.Encoder()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """What handlers need: the engine, the payment provider, a clock (UTC datetimes), two
    ways to have the outbox relay publish at once after a commit (`wake_outbox`: claim
    from the table; `committed`: the rows the handler wrote, published without a read),
    and the NATS connection for live slot updates (None in tests that do not watch
    them); `slot_terms` keeps what creates copy from slots and lots (terms.py),
    `kept_bookings` the bookings as this replica last wrote them, for renewals
    (kept.py)."""

    engine: AsyncEngine
    payments: PaymentProvider
    wake_outbox: Callable[[], None] = lambda: None
    committed: Callable[[list[Pending]], None] = lambda rows: None
    clock: Callable[[], datetime] = utcnow
    nc: Client | None = None
    slot_terms: SlotTerms = field(default_factory=SlotTerms)
    kept_bookings: KeptBookings = field(default_factory=KeptBookings)

    async def slot_changed(self, lot_id: str, slot_id: str, booked_until: datetime | None) -> None:
        """Tell live subscribers of the lot (after the commit) that a slot changed."""
        if self.nc is None:
            return
        update = c.SlotUpdate(
            lot_id=lot_id,
            slot_id=slot_id,
            status="free" if booked_until is None else "booked",
            booked_until=booked_until,
        )
        await self.nc.publish(subjects.slots_lot_subject(lot_id), _encoder.encode(update))


def encode_cursor(last_id: str) -> str:
    """An opaque cursor over a UUIDv7 id (keyset pagination)."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return str(uuid.UUID(raw))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise DomainError(
            "invalid", "cursor is not one this API gave out; start again without it."
        ) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= 200:
        raise DomainError("invalid", "limit must be between 1 and 200.")
    return limit


def parse_id(value: str, what: str) -> str:
    """A UUID string, or DomainError not_found (a malformed id names nothing)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise DomainError("not_found", f"No {what} with id {value!r}.") from None


def money(amount: Decimal | None, currency: str) -> c.Money | None:
    return None if amount is None else c.Money(amount=f"{amount:.2f}", currency=currency)


async def lot_people(conn: AsyncConnection, lot_id: str) -> LotPeople:
    """Owner and staff of a lot; DomainError not_found when there is no such lot."""
    owner = (await conn.execute(sa.select(lots.c.owner_id).where(lots.c.id == lot_id))).scalar()
    if owner is None:
        raise DomainError("not_found", f"No lot with id {lot_id}.")
    return LotPeople(owner, frozenset(await storage.staff_ids(conn, lot_id)))


def slot_view(row: sa.Row) -> c.SlotView:
    return c.SlotView(
        id=row.id,
        label=row.label,
        status="free" if row.booked_until is None else "booked",
        booked_until=row.booked_until,
    )


def lot_view(row: sa.Row, slot_rows: list[sa.Row] | None = None) -> c.LotView:
    return c.LotView(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        address=row.address,
        booking_seconds=row.booking_seconds,
        warning_seconds=row.warning_seconds,
        renew_grace_seconds=row.renew_grace_seconds,
        max_renewals=row.max_renewals,
        price_per_hour=money(row.price_per_hour, row.currency),
        carwash_price=money(row.carwash_price, row.currency),
        total_slots=row.total_slots,
        free_slots=row.total_slots - row.active_bookings,
        created_at=row.created_at,
        slots=None if slot_rows is None else [slot_view(s) for s in slot_rows],
    )


def booking_view(row: sa.Row, now: datetime) -> c.BookingView:
    price = money(row.price, row.currency)
    return c.BookingView(
        id=row.id,
        lot_id=row.lot_id,
        slot_id=row.slot_id,
        slot_label=row.slot_label,
        user_id=row.user_id,
        vehicle_id=row.vehicle_id,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        remaining_seconds=domain.remaining_seconds(row.end_time, now)
        if row.status == "active"
        else 0,
        renewals=row.renewals,
        price=price,
        payment=c.PaymentView(method=row.payment_method, status=row.payment_status, amount=price),
        carwash=None
        if row.carwash_id is None
        else c.CarwashView(id=row.carwash_id, status=row.carwash_status),
        renewed_from=row.renewed_from,
    )


def booking_event_data(
    row: sa.Row, staff: list[str] | frozenset[str], reason: str | None = None
) -> c.BookingEventData:
    return c.BookingEventData(
        booking_id=row.id,
        lot_id=row.lot_id,
        lot_name=row.lot_name,
        slot_id=row.slot_id,
        slot_label=row.slot_label,
        driver_id=row.user_id,
        owner_id=row.owner_id,
        vehicle_id=row.vehicle_id,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        version=row.version,
        renewals=row.renewals,
        booking_seconds=row.booking_seconds,
        warning_seconds=row.warning_seconds,
        price=money(row.price, row.currency),
        payment_method=row.payment_method,
        payment_status=row.payment_status,
        reason=reason,
        renewed_from=row.renewed_from,
        staff_ids=sorted(staff),
    )


async def emit(conn: AsyncConnection, type_: str, data: msgspec.Struct, subject: str) -> None:
    """Write one CloudEvent to the outbox in the caller's transaction."""
    await storage.add_event(conn, new_event(type_, SOURCE, data, subject))


async def load_booking(
    conn: AsyncConnection, booking_id: str, for_update: bool = False
) -> tuple[sa.Row, LotPeople]:
    """The booking (locked when `for_update`) and its lot's people; not_found if none."""
    row = await storage.get_booking(conn, parse_id(booking_id, "booking"), for_update)
    if row is None:
        raise DomainError("not_found", f"No booking with id {booking_id}.")
    return row, LotPeople(row.owner_id, frozenset(row.staff_ids))

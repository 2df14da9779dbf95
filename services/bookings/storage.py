"""Tables of schema `bookings` (SQLAlchemy Core) and the queries handlers share."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from services.contracts.envelope import CloudEvent
from services.runtime.outbox import add_event as outbox_add
from services.runtime.outbox import add_events as outbox_add_many
from services.runtime.outbox import outbox_table

SCHEMA = "bookings"
metadata = sa.MetaData(schema=SCHEMA)

lots = sa.Table(
    "lots",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("owner_id", UUID(as_uuid=False), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("booking_seconds", sa.Integer, nullable=False),
    sa.Column("warning_seconds", sa.Integer, nullable=False),
    sa.Column("renew_grace_seconds", sa.Integer, nullable=False, server_default="900"),
    sa.Column("max_renewals", sa.Integer, nullable=True),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("price_per_hour", sa.Numeric(12, 2), nullable=False),
    sa.Column("carwash_price", sa.Numeric(12, 2), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

slots = sa.Table(
    "slots",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("lot_id", UUID(as_uuid=False), sa.ForeignKey("lots.id"), nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    # A removed slot stays for its bookings' history; it is never offered again.
    sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("lot_id", "label", name="uq_slots_lot_label"),
)

vehicles = sa.Table(
    "vehicles",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), nullable=False),
    sa.Column("plate", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("user_id", "plate", name="uq_vehicles_user_plate"),
)

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("lot_id", UUID(as_uuid=False), sa.ForeignKey("lots.id"), primary_key=True),
    sa.Column("user_id", UUID(as_uuid=False), primary_key=True),
    sa.Column("assigned_by", UUID(as_uuid=False), nullable=False),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_staff_user", "user_id"),
)

carwash_orders = sa.Table(
    "carwash_orders",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column(
        "booking_id", UUID(as_uuid=False), sa.ForeignKey("bookings.id"), nullable=False, unique=True
    ),
    sa.Column("lot_id", UUID(as_uuid=False), sa.ForeignKey("lots.id"), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

bookings = sa.Table(
    "bookings",
    metadata,
    sa.Column("id", UUID(as_uuid=False), primary_key=True),
    sa.Column("lot_id", UUID(as_uuid=False), sa.ForeignKey("lots.id"), nullable=False),
    sa.Column("slot_id", UUID(as_uuid=False), sa.ForeignKey("slots.id"), nullable=False),
    sa.Column("user_id", UUID(as_uuid=False), nullable=False),
    sa.Column("vehicle_id", UUID(as_uuid=False), nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("renewals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("payment_method", sa.Text, nullable=False),
    sa.Column("payment_status", sa.Text, nullable=False),
    sa.Column("warned_version", sa.Integer, nullable=True),
    sa.Column("renewed_from", UUID(as_uuid=False), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The rule "one active booking per slot" lives in the database, so it holds under
    # any concurrency and with any number of replicas.
    sa.Index(
        "uq_bookings_active_slot",
        "slot_id",
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    ),
    sa.Index("ix_bookings_user", "user_id", "id"),
    sa.Index("ix_bookings_lot_status", "lot_id", "status"),
)

outbox = outbox_table(metadata)


# ----- queries -----


async def add_event(conn: AsyncConnection, event: CloudEvent) -> None:
    """Write `event` to this schema's outbox in the caller's transaction."""
    await outbox_add(conn, outbox, event)


async def add_events(conn: AsyncConnection, events: list[CloudEvent]) -> None:
    """Write `events` to this schema's outbox, in order, in one round trip."""
    await outbox_add_many(conn, outbox, events)


active_count = (
    sa.select(sa.func.count())
    .where(bookings.c.lot_id == lots.c.id, bookings.c.status == "active")
    .scalar_subquery()
)
total_count = (
    sa.select(sa.func.count())
    .where(slots.c.lot_id == lots.c.id, slots.c.removed_at.is_(None))
    .scalar_subquery()
)

lot_with_counts = sa.select(
    lots, total_count.label("total_slots"), active_count.label("active_bookings")
)


async def lot_slots(conn: AsyncConnection, lot_id: str) -> list[sa.Row]:
    """Slots of a lot (not removed) in order, each with `booked_until`: the end of its
    active booking, or None when free."""
    active = bookings.alias("active")
    q = (
        sa.select(slots.c.id, slots.c.label, active.c.end_time.label("booked_until"))
        .select_from(
            slots.outerjoin(
                active, sa.and_(active.c.slot_id == slots.c.id, active.c.status == "active")
            )
        )
        .where(slots.c.lot_id == lot_id, slots.c.removed_at.is_(None))
        .order_by(slots.c.position)
    )
    return list((await conn.execute(q)).all())


# The lot's staff ride along with the booking (one round trip instead of two: loading
# a booking is on every hot path, renewals and fired timers included).
_staff_of_booking_lot = (
    sa.select(
        sa.func.coalesce(
            sa.func.array_agg(aggregate_order_by(staff.c.user_id, staff.c.assigned_at)),
            sa.literal_column("'{}'::uuid[]"),
        )
    )
    .where(staff.c.lot_id == bookings.c.lot_id)
    .scalar_subquery()
)

booking_with_context = sa.select(
    bookings,
    slots.c.label.label("slot_label"),
    lots.c.owner_id.label("owner_id"),
    lots.c.name.label("lot_name"),
    lots.c.booking_seconds,
    lots.c.warning_seconds,
    lots.c.renew_grace_seconds,
    lots.c.max_renewals,
    lots.c.price_per_hour.label("lot_price_per_hour"),
    lots.c.carwash_price.label("lot_carwash_price"),
    carwash_orders.c.id.label("carwash_id"),
    carwash_orders.c.status.label("carwash_status"),
    _staff_of_booking_lot.label("staff_ids"),
).select_from(
    bookings.join(slots, slots.c.id == bookings.c.slot_id)
    .join(lots, lots.c.id == bookings.c.lot_id)
    .outerjoin(carwash_orders, carwash_orders.c.booking_id == bookings.c.id)
)


async def get_booking(
    conn: AsyncConnection, booking_id: str, for_update: bool = False
) -> sa.Row | None:
    """A booking joined with its slot label, lot (owner, name, terms) and car-wash order,
    or None. `for_update` locks the booking row for the rest of the transaction."""
    q = booking_with_context.where(bookings.c.id == booking_id)
    if for_update:
        q = q.with_for_update(of=bookings)
    return (await conn.execute(q)).first()


async def get_bookings_for_update(conn: AsyncConnection, booking_ids: list[str]) -> list[sa.Row]:
    """`get_booking` for many ids at once, each row locked; locked in id order, so two
    transactions doing this never deadlock on each other."""
    if not booking_ids:
        return []
    q = (
        booking_with_context.where(bookings.c.id.in_(booking_ids))
        .order_by(bookings.c.id)
        .with_for_update(of=bookings)
    )
    return list((await conn.execute(q)).all())


async def active_booking_end(conn: AsyncConnection, slot_id: str) -> datetime | None:
    """End time of the slot's active booking, or None when it is free."""
    return (
        await conn.execute(
            sa.select(bookings.c.end_time).where(
                bookings.c.slot_id == slot_id, bookings.c.status == "active"
            )
        )
    ).scalar()


async def staff_ids(conn: AsyncConnection, lot_id: str) -> list[str]:
    """User ids of the lot's assigned staff, in assignment order."""
    rows = await conn.execute(
        sa.select(staff.c.user_id).where(staff.c.lot_id == lot_id).order_by(staff.c.assigned_at)
    )
    return [r.user_id for r in rows]

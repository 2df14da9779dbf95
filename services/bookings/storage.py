"""Tables of schema `bookings` (SQLAlchemy Core) and the queries handlers share."""

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from services.contracts.envelope import CloudEvent
from services.runtime.outbox import Pending, outbox_table
from services.runtime.outbox import add_event as outbox_add
from services.runtime.outbox import add_pending as outbox_add_pending

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
    # Bumped by triggers on every change of the lot, its slots or its staff (migration
    # bookings_0005): what creates keep of a lot (terms.py) is current while it holds.
    sa.Column("terms_version", sa.BigInteger, nullable=False, server_default="0"),
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
    # The Idempotency-Key of the request that made the booking or last renewed it: a
    # retry whose first answer was lost finds what that try did (handlers/bookings.py).
    sa.Column("request_key", sa.Text, nullable=True),
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


async def add_pending(conn: AsyncConnection, rows: list[Pending]) -> None:
    """Write outbox `rows` (to hand to the relay after commit), in order, in one round trip."""
    await outbox_add_pending(conn, outbox, rows)


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


# ----- hot paths: one statement per step on a raw asyncpg connection -----
#
# Creates and renewals are most of the traffic (a city's day is ~160,000 renewals), so
# they skip SQLAlchemy and the transaction: one read, then one data-modifying statement
# that also writes the outbox row, applied only if the booking is still as it was read
# (optimistic: status, version and payment status in the WHERE). Nothing else runs
# between read and write, so a lost race is retried from the read.


class BookingRow(NamedTuple):
    """A booking with its slot label, lot terms, car-wash order and lot staff (what
    `booking_with_context` selects), plus `slot_taken`: another booking holds its slot,
    and the lot's `terms_version` when read (lots.terms_version, migration bookings_0005)."""

    id: str
    lot_id: str
    slot_id: str
    user_id: str
    vehicle_id: str | None
    status: str
    start_time: datetime
    end_time: datetime
    version: int
    renewals: int
    price: Decimal
    currency: str
    payment_method: str
    payment_status: str
    warned_version: int | None
    renewed_from: str | None
    created_at: datetime
    updated_at: datetime
    slot_label: str
    owner_id: str
    lot_name: str
    booking_seconds: int
    warning_seconds: int
    renew_grace_seconds: int
    max_renewals: int | None
    lot_price_per_hour: Decimal
    lot_carwash_price: Decimal | None
    carwash_id: str | None
    carwash_status: str | None
    staff_ids: list[str]
    slot_taken: bool
    request_key: str | None
    terms_version: int


_BOOKING_SQL = """
SELECT b.id::text, b.lot_id::text, b.slot_id::text, b.user_id::text, b.vehicle_id::text,
       b.status, b.start_time, b.end_time, b.version, b.renewals, b.price, b.currency,
       b.payment_method, b.payment_status, b.warned_version, b.renewed_from::text,
       b.created_at, b.updated_at,
       s.label, l.owner_id::text, l.name, l.booking_seconds, l.warning_seconds,
       l.renew_grace_seconds, l.max_renewals, l.price_per_hour, l.carwash_price,
       w.id::text, w.status,
       coalesce((SELECT array_agg(st.user_id::text ORDER BY st.assigned_at)
                 FROM bookings.staff st WHERE st.lot_id = b.lot_id), '{}'),
       EXISTS (SELECT 1 FROM bookings.bookings o
               WHERE o.slot_id = b.slot_id AND o.status = 'active' AND o.id <> b.id),
       b.request_key, l.terms_version
FROM bookings.bookings b
JOIN bookings.slots s ON s.id = b.slot_id
JOIN bookings.lots l ON l.id = b.lot_id
LEFT JOIN bookings.carwash_orders w ON w.booking_id = b.id
WHERE b.id = $1
"""


async def fetch_booking(raw: asyncpg.Connection, booking_id: str) -> BookingRow | None:
    """The booking with its context (see BookingRow), or None; no lock taken."""
    record = await raw.fetchrow(_BOOKING_SQL, booking_id)
    return None if record is None else BookingRow(*record)


_BOOKINGS_SQL = _BOOKING_SQL.replace("WHERE b.id = $1", "WHERE b.id = ANY($1::uuid[])")


async def fetch_bookings(raw: asyncpg.Connection, booking_ids: list[str]) -> list[BookingRow]:
    """`fetch_booking` for many ids in one round trip, in no particular order; ids with
    no booking are left out. No lock taken."""
    if not booking_ids:
        return []
    return [BookingRow(*r) for r in await raw.fetch(_BOOKINGS_SQL, booking_ids)]


class FiredChange(NamedTuple):
    """What a batch of fired timers does to one booking: from the state it was read in
    (`version`, `was_warned`: its warned_version, None before the first warning) to its
    new `status` ('active' or 'expired') and `warned_version`."""

    booking_id: str
    version: int
    was_warned: int | None
    status: str
    warned_version: int | None


# The fired timers' writes (timers.on_timers_fired) in one statement. `locked` takes the
# row locks in id order, so two batches over the same bookings (two replicas, or the
# overdue sweep and the consumer) never deadlock; each row is changed only if it is
# still active and as read, and a booking's events are written only if its row was.
_APPLY_FIRES_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[], $5::int[])
        AS i(id, version, was_warned, status, warned_version)
),
locked AS (
    SELECT b.id FROM bookings.bookings b JOIN input i ON i.id = b.id
    WHERE b.status = 'active' AND b.version = i.version
      AND b.warned_version IS NOT DISTINCT FROM i.was_warned
    ORDER BY b.id
    FOR UPDATE OF b
),
changed AS (
    UPDATE bookings.bookings b
    SET status = i.status, warned_version = i.warned_version,
        updated_at = CASE WHEN i.status = 'active' THEN b.updated_at ELSE $6 END
    FROM input i
    WHERE b.id = i.id AND b.id IN (SELECT id FROM locked)
    RETURNING b.id
),
outbox_rows AS (
    INSERT INTO bookings.outbox (event_id, subject, payload, created_at)
    SELECT e.event_id, e.subject, e.payload, e.created_at
    FROM unnest($7::uuid[], $8::text[], $9::bytea[], $10::timestamptz[], $11::uuid[])
         WITH ORDINALITY AS e(event_id, subject, payload, created_at, booking_id, n)
    WHERE e.booking_id IN (SELECT id FROM changed)
    ORDER BY e.n
)
SELECT id::text FROM changed
"""


async def apply_fires(
    raw: asyncpg.Connection,
    changes: list[FiredChange],
    now: datetime,
    events: list[Pending],
    event_bookings: list[str],
) -> set[str]:
    """Write `changes` and their `events` (`event_bookings[k]` is the booking of
    `events[k]`) in one statement; returns the ids of the bookings changed. A booking
    that is no longer active or as read (a renewal or another batch came first) is left
    as it is, and its events are not written: read it again and decide again."""
    if not changes:
        return set()
    records = await raw.fetch(
        _APPLY_FIRES_SQL,
        [x.booking_id for x in changes],
        [x.version for x in changes],
        [x.was_warned for x in changes],
        [x.status for x in changes],
        [x.warned_version for x in changes],
        now,
        *_outbox_args(events),
        event_bookings,
    )
    return {r[0] for r in records}


_OUTBOX_ROWS = """
outbox_rows AS (
    INSERT INTO bookings.outbox (event_id, subject, payload, created_at)
    SELECT e.event_id, e.subject, e.payload, e.created_at
    FROM changed, unnest(${ids}::uuid[], ${subjects}::text[], ${payloads}::bytea[],
                         ${times}::timestamptz[]) WITH ORDINALITY
         AS e(event_id, subject, payload, created_at, n)
    ORDER BY e.n
)"""


def _outbox_args(rows: list[Pending]) -> list:
    return [
        [r.event_id for r in rows],
        [r.subject for r in rows],
        [r.payload for r in rows],
        [r.created_at for r in rows],
    ]


_EXTEND_SQL = (
    """
WITH changed AS (
    UPDATE bookings.bookings
    SET end_time = $5, version = $6, renewals = $7, price = price + $8,
        payment_status = $9, updated_at = $10, request_key = $15
    WHERE id = $1 AND status = $2 AND version = $3 AND payment_status = $4
    RETURNING id
),"""
    + _OUTBOX_ROWS.format(ids=11, subjects=12, payloads=13, times=14)
    + "\nSELECT count(*) FROM changed"
)


# A renewal planned from a kept row (services/bookings/kept.py): the same write, also
# conditional on the lot's terms being those the row was kept with, and the booking as
# it is now in the same round trip, so that a kept row gone stale costs no extra read.
# The SELECT sees the statement's snapshot: the row before this write when it applied
# (its car-wash order is what the answer needs; the staff and whether another booking
# holds the slot are not computed then), the current row when it did not.
_EXTEND_KEPT_SQL = (
    """
WITH changed AS (
    UPDATE bookings.bookings b
    SET end_time = $5, version = $6, renewals = $7, price = price + $8,
        payment_status = $9, updated_at = $10, request_key = $15
    WHERE b.id = $1 AND b.status = $2 AND b.version = $3 AND b.payment_status = $4
      AND (SELECT l.terms_version FROM bookings.lots l WHERE l.id = b.lot_id) = $16
    RETURNING b.id
),"""
    + _OUTBOX_ROWS.format(ids=11, subjects=12, payloads=13, times=14)
    + """
SELECT n.applied,
       b.id::text, b.lot_id::text, b.slot_id::text, b.user_id::text, b.vehicle_id::text,
       b.status, b.start_time, b.end_time, b.version, b.renewals, b.price, b.currency,
       b.payment_method, b.payment_status, b.warned_version, b.renewed_from::text,
       b.created_at, b.updated_at,
       s.label, l.owner_id::text, l.name, l.booking_seconds, l.warning_seconds,
       l.renew_grace_seconds, l.max_renewals, l.price_per_hour, l.carwash_price,
       w.id::text AS carwash_id, w.status AS carwash_status,
       CASE WHEN n.applied = 0 THEN
           coalesce((SELECT array_agg(st.user_id::text ORDER BY st.assigned_at)
                     FROM bookings.staff st WHERE st.lot_id = b.lot_id), '{}') END,
       CASE WHEN n.applied = 0 THEN
           EXISTS (SELECT 1 FROM bookings.bookings o
                   WHERE o.slot_id = b.slot_id AND o.status = 'active' AND o.id <> b.id) END,
       b.request_key, l.terms_version
FROM (SELECT count(*) AS applied FROM changed) n
CROSS JOIN bookings.bookings b
JOIN bookings.slots s ON s.id = b.slot_id
JOIN bookings.lots l ON l.id = b.lot_id
LEFT JOIN bookings.carwash_orders w ON w.booking_id = b.id
WHERE b.id = $1
"""
)


class KeptWrite(NamedTuple):
    """What `extend_kept` did: `applied`, with the booking's car-wash order as it is
    (`carwash_id`, `carwash_status`, what the answer needs beyond the kept row); or not,
    with the booking as it is now in `current` (None: there is no such booking)."""

    applied: bool
    carwash_id: str | None
    carwash_status: str | None
    current: BookingRow | None


async def extend_kept(
    raw: asyncpg.Connection,
    was: BookingRow,
    end_time: datetime,
    version: int,
    renewals: int,
    added_price: Decimal,
    payment_status: str,
    now: datetime,
    events: list[Pending],
    request_key: str | None = None,
) -> KeptWrite:
    """`extend_booking` for a renewal planned from a kept row `was`: written only if the
    booking is still as `was` (status, version, payment status) and its lot's terms are
    still at `was.terms_version`; in one round trip (see KeptWrite)."""
    record = await raw.fetchrow(
        _EXTEND_KEPT_SQL,
        *_extend_args(
            was, end_time, version, renewals, added_price, payment_status, now, events, request_key
        ),
        was.terms_version,
    )
    if record is None:
        return KeptWrite(False, None, None, None)
    if record[0] == 1:
        return KeptWrite(True, record["carwash_id"], record["carwash_status"], None)
    return KeptWrite(False, None, None, BookingRow(*record[1:]))


async def extend_booking(
    raw: asyncpg.Connection,
    was: BookingRow,
    end_time: datetime,
    version: int,
    renewals: int,
    added_price: Decimal,
    payment_status: str,
    now: datetime,
    events: list[Pending],
    request_key: str | None = None,
) -> bool:
    """Move an active booking's end, record `request_key` as its last change's, and
    write `events` to the outbox, in one statement, if the booking is still as `was`
    (status, version, payment status); False when it changed since it was read
    (nothing written)."""
    applied = await raw.fetchval(
        _EXTEND_SQL,
        *_extend_args(
            was, end_time, version, renewals, added_price, payment_status, now, events, request_key
        ),
    )
    return applied == 1


def _extend_args(
    was: BookingRow,
    end_time: datetime,
    version: int,
    renewals: int,
    added_price: Decimal,
    payment_status: str,
    now: datetime,
    events: list[Pending],
    request_key: str | None,
) -> list:
    """Parameters $1 to $15 of _EXTEND_SQL and _EXTEND_KEPT_SQL."""
    return [
        was.id,
        was.status,
        was.version,
        was.payment_status,
        end_time,
        version,
        renewals,
        added_price,
        payment_status,
        now,
        *_outbox_args(events),
        request_key,
    ]


_INSERT_BOOKING = """
INSERT INTO bookings.bookings (id, lot_id, slot_id, user_id, vehicle_id, status,
    start_time, end_time, version, renewals, price, currency, payment_method,
    payment_status, renewed_from, created_at, updated_at, request_key)
SELECT $1::uuid, $2::uuid, $3::uuid, $4::uuid, $5::uuid, 'active', $6::timestamptz,
    $7::timestamptz, 1, $8::int, $9::numeric, $10::text, $11::text, $12::text, $13::uuid,
    $14::timestamptz, $14::timestamptz, $15::text
"""

_REBOOK_SQL = (
    """
WITH changed AS ("""
    + _INSERT_BOOKING
    + """
    WHERE EXISTS (SELECT 1 FROM bookings.bookings
                  WHERE id = $13 AND status = 'expired' AND version = $16)
    RETURNING id
),"""
    + _OUTBOX_ROWS.format(ids=17, subjects=18, payloads=19, times=20)
    + "\nSELECT count(*) FROM changed"
)

_CREATE_REST = (
    """ changed AS ("""
    + _INSERT_BOOKING
    + """
    WHERE EXISTS (SELECT 1 FROM alive)
    RETURNING id
), carwash AS (
    INSERT INTO bookings.carwash_orders (id, booking_id, lot_id, status, price, currency,
        created_at, updated_at)
    SELECT $16::uuid, changed.id, $2::uuid, 'requested', $17::numeric, $10::text,
        $14::timestamptz, $14::timestamptz
    FROM changed WHERE $16::uuid IS NOT NULL
),"""
    + _OUTBOX_ROWS.format(ids=18, subjects=19, payloads=20, times=21)
    + "\nSELECT count(*) FROM changed"
)

_CREATE_SQL = (
    """
WITH alive AS (
    -- FOR SHARE: a concurrent removal of the slot waits for us, or we for it.
    SELECT id FROM bookings.slots WHERE id = $3 AND removed_at IS NULL FOR SHARE
),"""
    + _CREATE_REST
)

# The same create from terms read earlier (services/bookings/terms.py), in one round
# trip instead of two: it writes only while the lot's terms version is still the one
# they were read at (the statement's one snapshot sees it and the slot together),
# the slot has no active booking and the vehicle, if any, is the driver's; else
# nothing, and the caller reads afresh, which tells why. (A taken slot is checked here
# rather than left to the unique index, which would abort the statement after writing
# its rows: the losers of a race for a slot would leave dead rows behind.)
_CREATE_AS_OF_SQL = (
    """
WITH alive AS (
    SELECT s.id FROM bookings.slots s
    WHERE s.id = $3 AND s.removed_at IS NULL
      AND s.lot_id = $2::uuid
      AND (SELECT l.terms_version FROM bookings.lots l WHERE l.id = $2::uuid) = $22::bigint
      AND NOT EXISTS (
          SELECT 1 FROM bookings.bookings b WHERE b.slot_id = $3 AND b.status = 'active')
      AND ($5::uuid IS NULL OR EXISTS (
          SELECT 1 FROM bookings.vehicles v WHERE v.id = $5::uuid AND v.user_id = $4::uuid))
    FOR SHARE OF s
),"""
    + _CREATE_REST
)


class NewBooking(NamedTuple):
    """The columns of a new active booking (version 1); times are UTC datetimes;
    `request_key` the Idempotency-Key of the request making it, if any."""

    id: str
    lot_id: str
    slot_id: str
    user_id: str
    vehicle_id: str | None
    start_time: datetime
    end_time: datetime
    renewals: int
    price: Decimal
    currency: str
    payment_method: str
    payment_status: str
    renewed_from: str | None
    created_at: datetime
    request_key: str | None


async def rebook(
    raw: asyncpg.Connection, new: NewBooking, was_version: int, events: list[Pending]
) -> bool:
    """Insert `new` (renewing the expired booking `new.renewed_from`) and its `events`,
    in one statement, if that booking is still expired at `was_version`; False when it
    changed. Raises asyncpg.UniqueViolationError when the slot has an active booking."""
    applied = await raw.fetchval(_REBOOK_SQL, *new, was_version, *_outbox_args(events))
    return applied == 1


async def create_booking(
    raw: asyncpg.Connection,
    new: NewBooking,
    carwash_id: str | None,
    carwash_price: Decimal | None,
    events: list[Pending],
    terms_version: int | None = None,
) -> bool:
    """Insert `new`, its car-wash order (when `carwash_id`) and its `events`, in one
    statement; False when the slot is removed (nothing written). Raises
    asyncpg.UniqueViolationError when the slot has an active booking.

    With `terms_version` (terms read without `slot_to_book` just before, from the
    cache): also False, nothing written, when the lot terms changed since that version,
    the slot has an active booking, or `new.vehicle_id` is not `new.user_id`'s; the
    caller then reads afresh."""
    args = [*new, carwash_id, carwash_price, *_outbox_args(events)]
    if terms_version is None:
        applied = await raw.fetchval(_CREATE_SQL, *args)
    else:
        applied = await raw.fetchval(_CREATE_AS_OF_SQL, *args, terms_version)
    return applied == 1


class SlotToBook(NamedTuple):
    """What a create checks and copies: the slot's lot terms and people, the end of the
    slot's active booking (None when free), whether the vehicle is the driver's, the
    driver's active booking of the slot made with the request's key, and the lot terms
    lot's terms version they were read at (lots.terms_version, migration bookings_0005)."""

    lot_id: str
    label: str
    booking_seconds: int
    warning_seconds: int
    renew_grace_seconds: int
    max_renewals: int | None
    price_per_hour: Decimal
    currency: str
    owner_id: str
    name: str
    carwash_price: Decimal | None
    booked_until: datetime | None
    vehicle_is_mine: bool
    staff_ids: list[str]
    booked_by_request: str | None
    terms_version: int


_SLOT_TO_BOOK_SQL = """
SELECT s.lot_id::text, s.label, l.booking_seconds, l.warning_seconds,
       l.renew_grace_seconds, l.max_renewals, l.price_per_hour,
       l.currency, l.owner_id::text, l.name, l.carwash_price,
       (SELECT b.end_time FROM bookings.bookings b
        WHERE b.slot_id = s.id AND b.status = 'active'),
       EXISTS (SELECT 1 FROM bookings.vehicles v WHERE v.id = $2::uuid AND v.user_id = $3::uuid),
       coalesce((SELECT array_agg(st.user_id::text ORDER BY st.assigned_at)
                 FROM bookings.staff st WHERE st.lot_id = s.lot_id), '{}'),
       (SELECT b.id::text FROM bookings.bookings b
        WHERE b.slot_id = s.id AND b.status = 'active' AND b.user_id = $3::uuid
          AND b.request_key = $4::text),
       l.terms_version
FROM bookings.slots s JOIN bookings.lots l ON l.id = s.lot_id
WHERE s.id = $1 AND s.removed_at IS NULL
"""


async def slot_to_book(
    raw: asyncpg.Connection,
    slot_id: str,
    vehicle_id: str | None,
    user_id: str,
    request_key: str | None = None,
) -> SlotToBook | None:
    """The slot (not removed) with what a create needs, or None; no lock taken.
    `booked_by_request` is the id of the slot's active booking when `user_id` made it
    with `request_key` (a retried request), else None."""
    record = await raw.fetchrow(_SLOT_TO_BOOK_SQL, slot_id, vehicle_id, user_id, request_key)
    return None if record is None else SlotToBook(*record)


_LOT_LABELS_SQL = """
SELECT l.terms_version,
       coalesce(array_agg(s.id::text) FILTER (WHERE s.id IS NOT NULL), '{}'),
       coalesce(array_agg(s.label) FILTER (WHERE s.id IS NOT NULL), '{}')
FROM bookings.lots l
LEFT JOIN bookings.slots s ON s.lot_id = l.id AND s.removed_at IS NULL
WHERE l.id = $1
GROUP BY l.id
"""


async def lot_labels(raw: asyncpg.Connection, lot_id: str) -> tuple[int, dict[str, str]] | None:
    """The lot's terms version and its slots (not removed) as {slot id: label}, read
    together; None when there is no such lot."""
    record = await raw.fetchrow(_LOT_LABELS_SQL, lot_id)
    if record is None:
        return None
    return record[0], dict(zip(record[1], record[2], strict=True))


_MADE_BY_REQUEST_SQL = """
SELECT id::text FROM bookings.bookings
WHERE slot_id = $1 AND status = 'active' AND user_id = $2 AND request_key = $3
  AND ($4::uuid IS NULL OR renewed_from = $4::uuid)
"""


async def made_by_request(
    raw: asyncpg.Connection,
    slot_id: str,
    user_id: str,
    request_key: str,
    renewed_from: str | None = None,
) -> str | None:
    """The id of the slot's active booking if `user_id` made it with `request_key` (and,
    when given, by renewing `renewed_from`), else None."""
    return await raw.fetchval(_MADE_BY_REQUEST_SQL, slot_id, user_id, request_key, renewed_from)


async def insert_events(raw: asyncpg.Connection, events: list[Pending]) -> None:
    """Write `events` to the outbox, in order, in one statement of their own."""
    await raw.execute(
        "WITH changed AS (SELECT 1),"
        + _OUTBOX_ROWS.format(ids=1, subjects=2, payloads=3, times=4)
        + " SELECT 1",
        *_outbox_args(events),
    )

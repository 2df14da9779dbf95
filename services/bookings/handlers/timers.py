"""timers.fired.booking.>: a warning or an expiry fired by the NATS server (and the
sweep that expires overdue bookings whose fired timer never came)."""

from datetime import timedelta

import sqlalchemy as sa

from services.bookings import domain
from services.bookings.handlers.common import Deps, booking_event_data, emit, load_booking
from services.bookings.storage import bookings
from services.contracts import subjects
from services.contracts.errors import DomainError
from services.contracts.timers import TimerFired
from services.runtime.metrics import TIMER_LATENESS


async def on_timer_fired(deps: Deps, fired: TimerFired) -> float | None:
    """Apply a fired warning or expiry; return None when done (ack), or seconds to wait
    before it is redelivered (this host's clock is behind the NATS server's).

    The booking row is locked, so a renewal racing the expiry either commits first (the
    version moves on and this fire is stale) or waits and then sees `expired`.
    """
    TIMER_LATENESS.labels(fired.kind).observe(
        max(0.0, (deps.clock() - fired.fire_at).total_seconds())
    )
    return await _apply(deps, fired)


async def _apply(deps: Deps, fired: TimerFired) -> float | None:
    expired_row = None
    async with deps.engine.begin() as conn:
        try:
            row, people = await load_booking(conn, fired.booking_id, for_update=True)
        except DomainError:
            return None
        clock = domain.BookingClock(row.status, row.version, row.end_time, row.warned_version)
        now = deps.clock()
        if fired.kind == "warning":
            if not domain.warning_is_due(clock, fired.version):
                return None
            await conn.execute(
                bookings.update().where(bookings.c.id == row.id).values(warned_version=row.version)
            )
            await emit(
                conn, subjects.BOOKING_EXPIRING, booking_event_data(row, people.staff_ids), row.id
            )
        else:
            decision = domain.decide_expiry(clock, fired.version, now)
            if decision is domain.ExpiryDecision.DROP:
                return None
            if decision is domain.ExpiryDecision.RETRY:
                return (row.end_time - now).total_seconds()
            await conn.execute(
                bookings.update()
                .where(bookings.c.id == row.id)
                .values(status="expired", updated_at=now)
            )
            expired_row, _ = await load_booking(conn, row.id)
            await emit(
                conn,
                subjects.BOOKING_EXPIRED,
                booking_event_data(expired_row, people.staff_ids),
                row.id,
            )
    deps.wake_outbox()
    if expired_row is not None:
        await deps.slot_changed(expired_row.lot_id, expired_row.slot_id, None)
    return None


async def sweep_overdue(deps: Deps, overdue_seconds: float, limit: int = 200) -> int:
    """Expire active bookings whose end passed more than `overdue_seconds` ago; return
    how many. A safety net, not the clock: the server-fired expiry normally comes within
    a second, but a fired timer can be lost (its TTL ran out while every bookings replica
    was down for longer). A booking not yet warned for its period is warned first (late)
    rather than expired silently. Safe with replicas: rows are claimed with SKIP LOCKED."""
    cutoff = deps.clock() - timedelta(seconds=overdue_seconds)
    async with deps.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    bookings.c.id,
                    bookings.c.version,
                    bookings.c.end_time,
                    bookings.c.warned_version,
                )
                .where(bookings.c.status == "active", bookings.c.end_time < cutoff)
                .order_by(bookings.c.end_time)
                .limit(limit)
            )
        ).all()
    for row in rows:
        if row.warned_version != row.version:
            # Its timers may be late rather than lost (an overloaded timer consumer):
            # warn first, so the driver is never expired without a warning.
            await on_timer_fired(
                deps,
                TimerFired(
                    booking_id=row.id,
                    kind="warning",
                    version=row.version,
                    end_time=row.end_time,
                    fire_at=row.end_time,
                ),
            )
        await on_timer_fired(
            deps,
            TimerFired(
                booking_id=row.id,
                kind="expiry",
                version=row.version,
                end_time=row.end_time,
                fire_at=row.end_time,
            ),
        )
    return len(rows)

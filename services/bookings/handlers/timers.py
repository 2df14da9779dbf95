"""timers.fired.booking.>: a warning or an expiry fired by the NATS server (and the
sweep that expires overdue bookings whose fired timer never came)."""

from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from services.bookings import domain, storage
from services.bookings.handlers.common import SOURCE, Deps, booking_event_data, parse_id
from services.bookings.storage import bookings
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.errors import DomainError
from services.contracts.timers import TimerFired
from services.runtime.metrics import TIMER_LATENESS
from services.runtime.outbox import pending

# Fires per transaction in the overdue sweep (a booking's warning and expiry may fall
# into two batches; they are still applied in order).
SWEEP_BATCH = 50


async def on_timer_fired(deps: Deps, fired: TimerFired) -> float | None:
    """`on_timers_fired` for one fired timer."""
    return (await on_timers_fired(deps, [fired]))[0]


async def on_timers_fired(deps: Deps, fired: list[TimerFired]) -> list[float | None]:
    """Apply fired warnings and expiries in one transaction; for each, None when done
    (ack) or seconds to wait before it is redelivered (this host's clock is behind the
    NATS server's). Fires of one booking are applied in the order given.

    The booking rows are locked (in id order), so a renewal racing an expiry either
    commits first (the version moves on and the fire is stale) or waits and then sees
    `expired`. One transaction per batch: round trips to PostgreSQL, not the rules,
    are what a fire costs (profiled in a replay).
    """
    now = deps.clock()
    for f in fired:
        TIMER_LATENESS.labels(f.kind).observe(max(0.0, (now - f.fire_at).total_seconds()))
    booking_ids = [_valid_id(f.booking_id) for f in fired]
    ids = sorted({i for i in booking_ids if i is not None})
    outcomes: list[float | None] = [None] * len(fired)
    freed: list[tuple[str, str]] = []
    async with deps.engine.begin() as conn:
        rows = {r.id: r for r in await storage.get_bookings_for_update(conn, ids)}
        # The state each fire is judged against, moved on by the fires before it.
        state = {
            i: domain.BookingClock(r.status, r.version, r.end_time, r.warned_version)
            for i, r in rows.items()
        }
        warned: list[str] = []
        expired: list[str] = []
        events = []
        for k, (f, booking_id) in enumerate(zip(fired, booking_ids, strict=True)):
            clock = state.get(booking_id) if booking_id else None
            if clock is None:
                continue  # no such booking: nothing to do
            row = rows[booking_id]
            people = row.staff_ids
            if f.kind == "warning":
                if domain.warning_is_due(clock, f.version):
                    state[booking_id] = replace(clock, warned_version=clock.version)
                    warned.append(booking_id)
                    data = booking_event_data(row, people)
                    events.append(new_event(subjects.BOOKING_EXPIRING, SOURCE, data, row.id))
                continue
            decision = domain.decide_expiry(clock, f.version, now)
            if decision is domain.ExpiryDecision.RETRY:
                outcomes[k] = (clock.end_time - now).total_seconds()
            elif decision is domain.ExpiryDecision.EXPIRE:
                state[booking_id] = replace(clock, status="expired")
                expired.append(booking_id)
                after = SimpleNamespace(
                    **(row._asdict() | {"status": "expired", "updated_at": now})
                )
                data = booking_event_data(after, people)
                events.append(new_event(subjects.BOOKING_EXPIRED, SOURCE, data, row.id))
                freed.append((row.lot_id, row.slot_id))
        if warned:
            await conn.execute(
                bookings.update()
                .where(bookings.c.id.in_(warned))
                .values(warned_version=bookings.c.version)
            )
        if expired:
            await conn.execute(
                bookings.update()
                .where(bookings.c.id.in_(expired))
                .values(status="expired", updated_at=now)
            )
        rows = [pending(e) for e in events]
        await storage.add_pending(conn, rows)
    if rows:
        deps.committed(rows)
    for lot_id, slot_id in freed:
        await deps.slot_changed(lot_id, slot_id, None)
    return outcomes


def _valid_id(value: str) -> str | None:
    try:
        return parse_id(value, "booking")
    except DomainError:
        return None


async def sweep_overdue(deps: Deps, overdue_seconds: float, limit: int = 200) -> int:
    """Expire active bookings whose end passed more than `overdue_seconds` ago; return
    how many. A safety net, not the clock: the server-fired expiry normally comes within
    a second, but a fired timer can be lost (its TTL ran out while every bookings replica
    was down for longer). A booking not yet warned for its period is warned first (late)
    rather than expired silently. The fires are applied SWEEP_BATCH at a time, in one
    transaction each, as the timer consumer's are: the sweep runs when the system is
    already behind. Safe with replicas: each fire is judged against the locked row, so a
    booking two replicas sweep at once is warned and expired once."""
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
    fires: list[TimerFired] = []
    for row in rows:
        kinds = ("expiry",) if row.warned_version == row.version else ("warning", "expiry")
        # A booking's warning goes first: its timers may be late rather than lost (an
        # overloaded timer consumer), and a driver is never expired without a warning.
        fires.extend(
            TimerFired(
                booking_id=row.id,
                kind=kind,
                version=row.version,
                end_time=row.end_time,
                fire_at=row.end_time,
            )
            for kind in kinds
        )
    for start in range(0, len(fires), SWEEP_BATCH):
        await on_timers_fired(deps, fires[start : start + SWEEP_BATCH])
    return len(rows)

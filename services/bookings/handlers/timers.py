"""timers.fired.booking.>: a warning or an expiry fired by the NATS server (and the
sweep that expires overdue bookings whose fired timer never came)."""

from dataclasses import replace
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa

from services.bookings import domain, storage
from services.bookings.handlers.common import SOURCE, Deps, booking_event_data, parse_id
from services.bookings.storage import bookings
from services.contracts import subjects
from services.contracts.envelope import new_event
from services.contracts.errors import DomainError
from services.contracts.timers import TimerFired
from services.runtime.db import raw_connection
from services.runtime.metrics import TIMER_LATENESS
from services.runtime.outbox import Pending, pending

# Expiry fires per batch in the overdue sweep.
SWEEP_BATCH = 50
# Reads and decisions per batch before the fires of a booking that changed every time
# (renewed in between, each time) are handed back for redelivery after
# RETRY_CHANGED_SECONDS.
FIRE_TRIES = 5
RETRY_CHANGED_SECONDS = 0.1


async def on_timer_fired(deps: Deps, fired: TimerFired) -> float | None:
    """`on_timers_fired` for one fired timer."""
    return (await on_timers_fired(deps, [fired]))[0]


async def on_timers_fired(deps: Deps, fired: list[TimerFired]) -> list[float | None]:
    """Apply fired warnings and expiries; for each, None when done (ack) or seconds to
    wait before it is redelivered (this host's clock is behind the NATS server's, or its
    booking kept changing under it). Fires of one booking are applied in the order given.

    Two round trips per batch, as a renewal's: read the bookings, decide, then one
    statement (`storage.apply_fires`) writes each booking's new state with its events
    only if the booking is still as read. So a renewal racing an expiry either lands
    first (the version moves on and the fire is stale) or finds the booking `expired`.
    The fires of a booking that changed in between are decided again from a new read,
    up to FIRE_TRIES times. Round trips to PostgreSQL, not the rules, are what a fire
    costs (benchmarks/bookings_paths.py).
    """
    now = deps.clock()
    for f in fired:
        TIMER_LATENESS.labels(f.kind).observe(max(0.0, (now - f.fire_at).total_seconds()))
    booking_ids = [_valid_id(f.booking_id) for f in fired]
    outcomes: list[float | None] = [None] * len(fired)
    todo = {i for i in booking_ids if i is not None}
    freed: list[tuple[str, str]] = []
    async with raw_connection(deps.engine) as raw:
        for _ in range(FIRE_TRIES):
            if not todo:
                break
            rows = {r.id: r for r in await storage.fetch_bookings(raw, sorted(todo))}
            batch = _decide(fired, booking_ids, rows, todo, now, outcomes)
            applied = await storage.apply_fires(
                raw, batch.changes, now, batch.events, batch.event_bookings
            )
            written = [
                p for p, b in zip(batch.events, batch.event_bookings, strict=True) if b in applied
            ]
            if written:
                deps.committed(written)
            freed += [batch.freed[i] for i in applied if i in batch.freed]
            todo = {x.booking_id for x in batch.changes} - applied
    for k, booking_id in enumerate(booking_ids):
        if booking_id in todo:
            outcomes[k] = RETRY_CHANGED_SECONDS
    for lot_id, slot_id in freed:
        await deps.slot_changed(lot_id, slot_id, None)
    return outcomes


class _Decided(NamedTuple):
    """One round's writes: per booking its change, the events in fire order (with the
    booking of each), and the (lot, slot) an expiry frees."""

    changes: list[storage.FiredChange]
    events: list[Pending]
    event_bookings: list[str]
    freed: dict[str, tuple[str, str]]


def _decide(
    fired: list[TimerFired],
    booking_ids: list[str | None],
    rows: dict[str, storage.BookingRow],
    todo: set[str],
    now: datetime,
    outcomes: list[float | None],
) -> _Decided:
    """Judge the fires of the bookings in `todo` against `rows` (as read), in order, each
    against the state the fires before it left; sets `outcomes[k]` for a fire that came
    early by this host's clock."""
    state: dict[str, domain.BookingClock] = {}
    events: list[Pending] = []
    event_bookings: list[str] = []
    freed: dict[str, tuple[str, str]] = {}
    for k, (f, booking_id) in enumerate(zip(fired, booking_ids, strict=True)):
        if booking_id not in todo or booking_id not in rows:
            continue  # done in an earlier round, or no such booking: nothing to do
        row = rows[booking_id]
        clock = state.get(booking_id) or domain.BookingClock(
            row.status, row.version, row.end_time, row.warned_version
        )
        outcomes[k] = None
        if f.kind == "warning":
            if domain.warning_is_due(clock, f.version):
                state[booking_id] = replace(clock, warned_version=clock.version)
                events.append(_warning(row))
                event_bookings.append(booking_id)
            continue
        decision = domain.decide_expiry(clock, f.version, now)
        if decision is domain.ExpiryDecision.RETRY:
            outcomes[k] = (clock.end_time - now).total_seconds()
        elif decision is domain.ExpiryDecision.EXPIRE:
            if domain.expiry_warns_first(clock):
                events.append(_warning(row))
                event_bookings.append(booking_id)
            state[booking_id] = replace(clock, status="expired", warned_version=clock.version)
            after = row._replace(status="expired", updated_at=now)
            data = booking_event_data(after, row.staff_ids)
            events.append(pending(new_event(subjects.BOOKING_EXPIRED, SOURCE, data, row.id)))
            event_bookings.append(booking_id)
            freed[booking_id] = (row.lot_id, row.slot_id)
    changes = [
        storage.FiredChange(i, rows[i].version, rows[i].warned_version, c.status, c.warned_version)
        for i, c in state.items()
    ]
    return _Decided(changes, events, event_bookings, freed)


def _warning(row: storage.BookingRow) -> Pending:
    """The `booking.expiring` event of the booking's current period."""
    data = booking_event_data(row, row.staff_ids)
    return pending(new_event(subjects.BOOKING_EXPIRING, SOURCE, data, row.id))


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
    rather than expired silently. The fires are applied SWEEP_BATCH at a time, as the
    timer consumer's are, since the sweep runs when the system is already behind. Safe
    with replicas: a fire's write applies only to the row as it was read, so a booking
    two replicas sweep at once is warned and expired once."""
    cutoff = deps.clock() - timedelta(seconds=overdue_seconds)
    async with deps.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(bookings.c.id, bookings.c.version, bookings.c.end_time)
                .where(bookings.c.status == "active", bookings.c.end_time < cutoff)
                .order_by(bookings.c.end_time)
                .limit(limit)
            )
        ).all()
    # Only the expiries: one of a booking not yet warned for its period sends the
    # warning first (domain.expiry_warns_first).
    fires = [
        TimerFired(
            booking_id=row.id,
            kind="expiry",
            version=row.version,
            end_time=row.end_time,
            fire_at=row.end_time,
        )
        for row in rows
    ]
    for start in range(0, len(fires), SWEEP_BATCH):
        await on_timers_fired(deps, fires[start : start + SWEEP_BATCH])
    return len(rows)

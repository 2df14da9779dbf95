"""What to schedule for a booking, with no I/O.

A booking has two timers: the warning at end_time - warning_seconds and the expiry
at end_time (times are UTC datetimes). Created and renewed bookings (re)schedule both;
cancelled and declined ones remove them. An expired booking needs nothing: it expired
because its expiry fired, and a one-shot `@at` schedule is gone once it fired (the
warning fired before it). Where the overdue sweep expired it instead, a schedule still
to come fires late and is dropped as stale (the booking is no longer active).

Events of one booking can reach the timers service out of order: a `booking.created`
whose handling failed while NATS was away is redelivered after the `booking.renewed`
made meanwhile. A schedule therefore never replaces one of a newer version
(`replaces`), or the renewed booking's warning and expiry would be lost and only the
overdue sweep would end it, half a minute late (seen in the nats-server kill test).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.contracts import subjects
from services.contracts.bookings import BookingEventData
from services.contracts.timers import TimerFired

SCHEDULING_EVENTS = (subjects.BOOKING_CREATED, subjects.BOOKING_RENEWED)
REMOVING_EVENTS = (subjects.BOOKING_CANCELLED, subjects.BOOKING_DECLINED)


@dataclass(frozen=True)
class Schedule:
    """One message schedule: publish `body` to `target` at `fire_at` (UTC)."""

    subject: str
    target: str
    fire_at: datetime
    msg_id: str
    body: TimerFired


def rfc3339(at: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: the form `Nats-Schedule: @at` accepts.
    Rounded up to the next millisecond, never down: a schedule must not fire before
    `at` (truncating fired up to 1 ms early)."""
    at = at.astimezone(UTC)
    if at.microsecond % 1000:
        at += timedelta(microseconds=1000 - at.microsecond % 1000)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def replaces(pending_version: int | None, version: int) -> bool:
    """Whether a schedule of the booking's `version` should take the place of the one
    pending on its subject (`pending_version`, None: none is pending, it fired or was
    never made). Only a newer version does: an equal one is the same schedule again (a
    redelivery), an older one a late event."""
    return pending_version is None or pending_version < version


def schedules_for(booking: BookingEventData) -> list[Schedule]:
    """The warning and the expiry of the booking's current period.

    The message id carries the booking's version (`<booking>:<version>:<kind>`): a
    replacement that reused the old id would be dropped as a duplicate and the old
    schedule would stay (docs/nats.md, the schedule dedupe trap).
    """
    warn_at = booking.end_time - timedelta(seconds=booking.warning_seconds)
    out = []
    for kind, at in (("warning", warn_at), ("expiry", booking.end_time)):
        out.append(
            Schedule(
                subject=subjects.timer_schedule_subject(booking.booking_id, kind),
                target=subjects.timer_fired_subject(booking.booking_id, kind),
                fire_at=at,
                msg_id=f"{booking.booking_id}:{booking.version}:{kind}",
                body=TimerFired(
                    booking_id=booking.booking_id,
                    kind=kind,
                    version=booking.version,
                    end_time=booking.end_time,
                    fire_at=at,
                ),
            )
        )
    return out

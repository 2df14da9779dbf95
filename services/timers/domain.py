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
The server enforces it: each publish names the subject's last sequence it expects
(`Nats-Expected-Last-Subject-Sequence`), guessed from what this process stored before
(`ScheduleBook`), and only a wrong guess costs a read.
"""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from services.contracts import subjects
from services.contracts.bookings import BookingEventData
from services.contracts.timers import TimerFired

SCHEDULING_EVENTS = (subjects.BOOKING_CREATED, subjects.BOOKING_RENEWED)
REMOVING_EVENTS = (subjects.BOOKING_CANCELLED, subjects.BOOKING_DECLINED)
KINDS = ("warning", "expiry")


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
    # isoformat, not strftime: strftime here was 2.6% of the timers service's samples
    # on the replay's busiest hour (py-spy); this takes about two thirds of its time.
    return at.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


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
    for kind, at in zip(KINDS, (warn_at, booking.end_time), strict=True):
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


class Stored(NamedTuple):
    """A schedule this process stored: its stream sequence, booking version and time."""

    seq: int
    version: int
    fire_at: datetime


class ScheduleBook:
    """What this process last stored on each schedule subject, to guess the sequence a
    conditional publish should expect without reading it first. Only a guess: the
    server checks it, and a wrong one (another replica wrote the subject, the schedule
    fired late, this process restarted) costs one read and a second try.

    Bounded to `max_subjects` (two per booking); the oldest entries go first. An
    OrderedDict, not a dict: a dict that drops its oldest key over and over finds it
    by scanning past every key dropped before (`next(iter(d))`), which took 12.7% of
    the timers service's CPU once the book was full on the replay's busiest hour.
    """

    def __init__(self, max_subjects: int = 100_000) -> None:
        self.max_subjects = max_subjects
        self._stored: OrderedDict[str, Stored] = OrderedDict()

    def expected(self, subject: str, version: int, now: datetime) -> int | None:
        """The sequence to expect on `subject` for a schedule of `version` at `now`
        (UTC), or None: this process stored this version or a newer one there, so
        nothing is to be published. 0 (the subject is empty) when nothing is known, or
        when what was stored has fired by now (a fired one-shot schedule is removed)."""
        stored = self._stored.get(subject)
        if stored is None:
            return 0
        if not replaces(stored.version, version):
            return None
        return stored.seq if stored.fire_at > now else 0

    def stored(self, subject: str, seq: int, version: int, fire_at: datetime) -> None:
        """Remember that `subject` holds the schedule of `version` at `seq`."""
        self._stored[subject] = Stored(seq, version, fire_at)
        self._stored.move_to_end(subject)  # the newest entry
        while len(self._stored) > self.max_subjects:
            self._stored.popitem(last=False)

    def forget(self, subject: str) -> None:
        """Nothing is known of `subject` any more (purged, or read to be another's)."""
        self._stored.pop(subject, None)

    def __len__(self) -> int:
        return len(self._stored)

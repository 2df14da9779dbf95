"""Handle booking events: publish, replace or purge the booking's message schedules."""

import asyncio
from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from services.contracts import subjects
from services.contracts.bookings import BookingEventData
from services.contracts.envelope import decode_envelope
from services.contracts.timers import TimerFired
from services.timers import domain

_encoder = msgspec.json.Encoder()
_data_decoder = msgspec.json.Decoder(BookingEventData)
_fired_decoder = msgspec.json.Decoder(TimerFired)

# JetStream's error code for a publish whose Nats-Expected-Last-Subject-Sequence does
# not match what the subject holds (a wrong guess, or it changed since we read it).
WRONG_LAST_SEQUENCE = 10071
# Conditional publishes before giving up (the consumer then retries the event): each
# refusal means the guess was wrong or another schedule landed or fired meanwhile.
SCHEDULE_TRIES = 5
PUBLISH_TIMEOUT = 10.0  # seconds to wait for the server to store a schedule


class ScheduleContended(Exception):
    """The booking's schedules kept changing under us for SCHEDULE_TRIES tries."""


def booking_of(payload: bytes) -> str:
    """The booking id a booking event is about (its CloudEvents `subject`): the key that
    keeps one booking's events in order while different bookings' overlap."""
    return decode_envelope(payload).subject or ""


async def on_booking_event(
    js: JetStreamContext, payload: bytes, fired_ttl: str, book: domain.ScheduleBook
) -> None:
    """Schedule, replace or remove the timers of the booking the event is about.

    Idempotent: a redelivered event finds its own schedules stored and publishes
    nothing, or purges an already empty subject. A late event (older version than the
    pending schedule) publishes nothing either (`domain.replaces`). Raises
    ScheduleContended, or the NATS error, for the consumer to retry the event.
    """
    event = decode_envelope(payload)
    booking = _data_decoder.decode(event.data)
    if event.type in domain.SCHEDULING_EVENTS:
        await schedule(js, domain.schedules_for(booking), fired_ttl, book)
    elif event.type in domain.REMOVING_EVENTS:
        await js.purge_stream(
            subjects.TIMERS_STREAM, subject=subjects.timer_schedules_of(booking.booking_id)
        )
        for kind in domain.KINDS:
            book.forget(subjects.timer_schedule_subject(booking.booking_id, kind))


async def pending_schedule(js: JetStreamContext, subject: str) -> tuple[int, int | None]:
    """(stream sequence, booking version) of the schedule pending on `subject`, or
    (0, None) when there is none. A body that is not a TimerFired counts as no version:
    it is replaced."""
    try:
        msg = await js.get_last_msg(subjects.TIMERS_STREAM, subject)
    except NotFoundError:
        return 0, None
    try:
        return msg.seq or 0, _fired_decoder.decode(msg.data or b"").version
    except msgspec.DecodeError:  # ValidationError is one too
        return msg.seq or 0, None


async def schedule(
    js: JetStreamContext,
    schedules: list[domain.Schedule],
    fired_ttl: str,
    book: domain.ScheduleBook,
) -> None:
    """Publish those of `schedules` that replace what is pending on their subjects.

    Compare-and-set: each publish carries `Nats-Expected-Last-Subject-Sequence` (0:
    nothing pending), so the server refuses it (error 10071) when the subject holds
    something else: a newer version, or a schedule that landed or fired meanwhile. The
    expected sequence is first guessed from `book` (no round trip); only a refused
    publish reads the subject (`pending_schedule`) and, if ours is newer, tries again.
    In the common case an event costs one pipelined publish, as without the check.
    Raises ScheduleContended after SCHEDULE_TRIES refusals.
    """
    now = datetime.now(UTC)
    expected = {s.subject: book.expected(s.subject, s.body.version, now) for s in schedules}
    for _ in range(SCHEDULE_TRIES):
        todo = [(s, expected[s.subject]) for s in schedules if expected[s.subject] is not None]
        if not todo:
            return
        # js.publish, not publish_async: nats-py 2.16 loses a publish_async's refusal
        # (its reply handler raises the APIError instead of setting it on the future,
        # which then waits out its timeout). Gathered, both go out before either ack
        # is awaited: about one round trip.
        outcomes = await asyncio.gather(
            *(
                js.publish(
                    s.subject,
                    _encoder.encode(s.body),
                    timeout=PUBLISH_TIMEOUT,
                    headers={
                        "Nats-Expected-Stream": subjects.TIMERS_STREAM,
                        "Nats-Expected-Last-Subject-Sequence": str(seq),
                        "Nats-Schedule": f"@at {domain.rfc3339(s.fire_at)}",
                        "Nats-Schedule-Target": s.target,
                        # The fired message removes itself once consumed and old.
                        "Nats-Schedule-TTL": fired_ttl,
                        "Nats-Msg-Id": s.msg_id,
                    },
                )
                for s, seq in todo
            ),
            return_exceptions=True,
        )
        refused = []
        for (s, _), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, APIError) and outcome.err_code == WRONG_LAST_SEQUENCE:
                refused.append(s)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                book.stored(s.subject, outcome.seq, s.body.version, s.fire_at)
                expected[s.subject] = None
        if not refused:
            return
        pending = await asyncio.gather(*(pending_schedule(js, s.subject) for s in refused))
        for s, (seq, version) in zip(refused, pending, strict=True):
            book.forget(s.subject)
            expected[s.subject] = seq if domain.replaces(version, s.body.version) else None
    raise ScheduleContended(f"schedules of {schedules[0].body.booking_id} kept changing")

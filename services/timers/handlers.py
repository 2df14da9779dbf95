"""Handle booking events: publish, replace or purge the booking's message schedules."""

import asyncio

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from services.contracts import subjects
from services.contracts.bookings import BookingEventData
from services.contracts.envelope import decode_envelope
from services.contracts.timers import TimerFired
from services.runtime.natsconn import publish_in_order
from services.timers import domain

_encoder = msgspec.json.Encoder()
_data_decoder = msgspec.json.Decoder(BookingEventData)
_fired_decoder = msgspec.json.Decoder(TimerFired)

# JetStream's error code for a publish whose Nats-Expected-Last-Subject-Sequence no
# longer matches: the subject changed between our read and our publish.
WRONG_LAST_SEQUENCE = 10071
# Reads and conditional publishes before giving up (the consumer then retries the
# event): each lost race means another schedule landed or fired meanwhile.
SCHEDULE_TRIES = 5


class ScheduleContended(Exception):
    """The booking's schedules kept changing under us for SCHEDULE_TRIES tries."""


def booking_of(payload: bytes) -> str:
    """The booking id a booking event is about (its CloudEvents `subject`): the key that
    keeps one booking's events in order while different bookings' overlap."""
    return decode_envelope(payload).subject or ""


async def on_booking_event(js: JetStreamContext, payload: bytes, fired_ttl: str) -> None:
    """Schedule, replace or remove the timers of the booking the event is about.

    Idempotent: a redelivered event finds its own schedules pending and publishes
    nothing, or purges an already empty subject. A late event (older version than the
    pending schedule) publishes nothing either (`domain.replaces`). Raises
    ScheduleContended, or the NATS error, for the consumer to retry the event.
    """
    event = decode_envelope(payload)
    booking = _data_decoder.decode(event.data)
    if event.type in domain.SCHEDULING_EVENTS:
        await schedule(js, domain.schedules_for(booking), fired_ttl)
    elif event.type in domain.REMOVING_EVENTS:
        await js.purge_stream(
            subjects.TIMERS_STREAM, subject=subjects.timer_schedules_of(booking.booking_id)
        )


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


async def schedule(js: JetStreamContext, schedules: list[domain.Schedule], fired_ttl: str) -> None:
    """Publish those of `schedules` that replace what is pending on their subjects.

    Compare-and-set: each publish carries `Nats-Expected-Last-Subject-Sequence`, the
    sequence read just before (0: nothing pending), so a schedule that landed or fired
    in between (another replica, the server's scheduler) makes the server refuse ours,
    and we read and decide again. Two reads (concurrent) and one pipelined publish
    per event, about two round trips. Raises ScheduleContended after SCHEDULE_TRIES
    lost races.
    """
    for _ in range(SCHEDULE_TRIES):
        pending = await asyncio.gather(*(pending_schedule(js, s.subject) for s in schedules))
        todo = [
            (s, seq)
            for s, (seq, version) in zip(schedules, pending, strict=True)
            if domain.replaces(version, s.body.version)
        ]
        if not todo:
            return
        try:
            await publish_in_order(
                js,
                [
                    (
                        s.subject,
                        _encoder.encode(s.body),
                        {
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
                ],
            )
            return
        except APIError as e:
            if e.err_code != WRONG_LAST_SEQUENCE:
                raise
    raise ScheduleContended(f"schedules of {schedules[0].body.booking_id} kept changing")

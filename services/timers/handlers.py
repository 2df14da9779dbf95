"""Handle booking events: publish, replace or purge the booking's message schedules."""

import msgspec
from nats.js import JetStreamContext

from services.contracts import subjects
from services.contracts.bookings import BookingEventData
from services.contracts.envelope import decode_envelope
from services.runtime.natsconn import publish_in_order
from services.timers import domain

_encoder = msgspec.json.Encoder()
_data_decoder = msgspec.json.Decoder(BookingEventData)


def booking_of(payload: bytes) -> str:
    """The booking id a booking event is about (its CloudEvents `subject`): the key that
    keeps one booking's events in order while different bookings' overlap."""
    return decode_envelope(payload).subject or ""


async def on_booking_event(js: JetStreamContext, payload: bytes, fired_ttl: str) -> None:
    """Schedule, replace or remove the timers of the booking the event is about.

    Idempotent: a redelivered event republishes the same schedules (same message ids,
    dropped as duplicates) or purges an already empty subject.
    """
    event = decode_envelope(payload)
    booking = _data_decoder.decode(event.data)
    if event.type in domain.SCHEDULING_EVENTS:
        await publish_in_order(
            js,
            [
                (
                    s.subject,
                    _encoder.encode(s.body),
                    {
                        "Nats-Expected-Stream": subjects.TIMERS_STREAM,
                        "Nats-Schedule": f"@at {domain.rfc3339(s.fire_at)}",
                        "Nats-Schedule-Target": s.target,
                        # The fired message removes itself once consumed and old.
                        "Nats-Schedule-TTL": fired_ttl,
                        "Nats-Msg-Id": s.msg_id,
                    },
                )
                for s in domain.schedules_for(booking)
            ],
        )
    elif event.type in domain.REMOVING_EVENTS:
        await js.purge_stream(
            subjects.TIMERS_STREAM, subject=subjects.timer_schedules_of(booking.booking_id)
        )

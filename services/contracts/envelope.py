"""The CloudEvents 1.0 structured JSON envelope of every domain event on EVENTS.

Publishers set the NATS header `Nats-Msg-Id` to the event `id`, so JetStream drops a
re-published duplicate; consumers key their own idempotency on it as well.
"""

from datetime import UTC, datetime
from typing import Any

import msgspec

from services.contracts.ids import uuid7

SPECVERSION = "1.0"


class CloudEvent(msgspec.Struct, kw_only=True):
    """One domain event. `type` equals the NATS subject; `data` is the event's Struct.

    `time` is a UTC datetime; `subject` is the id of the resource the event is about
    (the booking id for booking.*).
    """

    specversion: str = SPECVERSION
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: Any = None


class RawCloudEvent(msgspec.Struct, kw_only=True):
    """The envelope as received: `data` kept raw until its type is known."""

    specversion: str
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: msgspec.Raw = msgspec.Raw(b"null")


def new_event(type_: str, source: str, data: msgspec.Struct, subject: str | None) -> CloudEvent:
    """Build an event with a fresh UUIDv7 id and the current UTC time."""
    return CloudEvent(
        id=str(uuid7()),
        source=source,
        type=type_,
        time=datetime.now(UTC),
        subject=subject,
        data=data,
    )


_raw_decoder = msgspec.json.Decoder(RawCloudEvent)


def decode_envelope(payload: bytes) -> RawCloudEvent:
    """Decode the envelope of an event; raises msgspec.ValidationError on a bad one."""
    return _raw_decoder.decode(payload)

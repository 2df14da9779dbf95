"""Messages produced by the timers service (fired by the NATS server on its behalf)."""

from datetime import datetime

import msgspec

from services.contracts.subjects import TimerKind


class TimerFired(msgspec.Struct, kw_only=True, frozen=True):
    """Body of a booking timer, published by the server at `fire_at` (a UTC datetime).

    `version` and `end_time` are the booking's period when the timer was scheduled;
    the consumer drops a fire whose period no longer matches the booking (stale).
    """

    booking_id: str
    kind: TimerKind
    version: int
    end_time: datetime
    fire_at: datetime

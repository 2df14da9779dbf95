"""Per-socket rate limit of client frames, no I/O (times are monotonic seconds).

A token bucket: `burst` frames at once, refilled at `rate` per second. A frame with no
token is dropped and counts a strike; strikes drain at one per second, so a client
that keeps sending faster than the rate piles them up, and past `burst` strikes it is
closed (1008). A client that bursts once and slows down is never closed.
"""

from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    OK = "ok"  # handle the frame
    DROP = "drop"  # drop it, tell the client (error frame `rate_limited`)
    CLOSE = "close"  # the client persists: close with 1008


@dataclass
class RateLimit:
    """`check(now)` for each client frame; `rate` frames per second, `burst` at once."""

    rate: float
    burst: int
    tokens: float = field(init=False)
    strikes: float = 0.0
    last: float | None = None

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def check(self, now: float) -> Verdict:
        if self.last is not None:
            elapsed = max(0.0, now - self.last)
            self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
            self.strikes = max(0.0, self.strikes - elapsed)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Verdict.OK
        self.strikes += 1.0
        return Verdict.CLOSE if self.strikes > self.burst else Verdict.DROP

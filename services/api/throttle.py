"""Login throttling rules, with no I/O: how many failed logins an account or a client
address may have, and when the next attempt is allowed.

Generic cell rate algorithm (GCRA): each key (an account, an address) has a
theoretical arrival time `tat` (Unix seconds). A Limit of `attempts` per
`window_seconds` allows `attempts` attempts at once, then one more every
window_seconds / attempts; the whole allowance is back `window_seconds` after the last
attempt. A key never seen behaves as tat = now. One timestamp per key is all the state.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

# Float slack, so that `attempts` attempts at one instant all fit in the window.
EPSILON = 1e-6


@dataclass(frozen=True)
class Limit:
    """`attempts` (>= 1) at once, then one every `window_seconds` / `attempts` seconds."""

    attempts: int
    window_seconds: float

    @property
    def interval(self) -> float:
        """Seconds one attempt occupies."""
        return self.window_seconds / self.attempts


@dataclass(frozen=True)
class Refused:
    """The attempt is refused because of `key`; the next one is allowed in `retry_after`
    whole seconds (>= 1)."""

    key: str
    retry_after: int


def take(tat: float, now: float, limit: Limit) -> float | None:
    """The key's new tat after one more attempt at `now` (Unix seconds), or None when
    the limit refuses it."""
    after = max(tat, now) + limit.interval
    if after - now > limit.window_seconds + EPSILON:
        return None
    return after


def wait_seconds(tat: float, now: float, limit: Limit) -> float:
    """Seconds from `now` until `take` admits an attempt (0 when it does now)."""
    return max(0.0, tat + limit.interval - limit.window_seconds - now)


def admit(
    tats: Mapping[str, float], limits: Mapping[str, Limit], now: float
) -> dict[str, float] | Refused:
    """One attempt at `now` against every key of `limits` (`tats` holds their current
    tats): the new tat of each key when all admit it, else Refused naming the key that
    makes the caller wait longest. Nothing is taken from any key when one refuses."""
    taken: dict[str, float] = {}
    refused: Refused | None = None
    for key, limit in limits.items():
        tat = tats.get(key, now)
        after = take(tat, now, limit)
        if after is not None:
            taken[key] = after
            continue
        wait = max(1, math.ceil(wait_seconds(tat, now, limit) - EPSILON))
        if refused is None or wait > refused.retry_after:
            refused = Refused(key, wait)
    return refused if refused is not None else taken

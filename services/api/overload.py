"""Overload answered early: a bound on the HTTP requests one api process serves at once
and on how long a request may wait for its turn (ASGI middleware).

At most PARKMATE_MAX_INFLIGHT requests run at once in an api process; the next ones
wait for at most PARKMATE_QUEUE_SECONDS. One that gets no turn by then is answered 503
with `Retry-After` (`retry_after_seconds`) and a `detail` saying so, instead of
queueing behind work the system cannot finish in time. So a request is either refused
within PARKMATE_QUEUE_SECONDS of reaching the api, or runs; a running request's calls
to the services each time out after 5 s (also 503 with Retry-After,
services/api/errors.py).

Waiters are served first come first served until the oldest has waited half the bound
(`lifo_after`), and newest first from then on ("adaptive LIFO", as in Facebook's "Fail
at Scale", 2015). A queue that drains within half the bound is served in order, so a
client that keeps a fixed number of requests open (the replay's gate of 100) is
overtaken only by renewals (below). Under sustained overload, first come first served
would make every admitted request wait nearly the whole bound (p50 2.05 s at 400
creates/s offered, docs/benchmarks-bookings.md); newest first serves the admitted ones
at once and lets the oldest, whose clients may be about to give up, take the 503.

Renewals go first: a waiting `POST /api/v1/bookings/{id}/renew` gets a freed slot
before any other waiting request (`urgent`). A renewal races its booking's end: one
handled after the end finds the booking expired and makes a new booking instead (more
work, and the driver's booking lapsed), while a create, a read or an action refused
with 503 is retried after `Retry-After` with nothing lost. So under overload the api
keeps the drivers already parked and refuses newcomers first. Within each class the
order is the adaptive LIFO above.

Never held back: /healthz, /readyz and /metrics (an overloaded api must still look
alive to its probes and scrapes), and WebSocket upgrades (served before Litestar by
ws.WebSocketFront; only `http` scopes are counted here).
"""

import asyncio
import math
import re
from collections import deque

import msgspec

from services.runtime.metrics import API_IN_FLIGHT, API_REJECTED, API_WAITING

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
# The share of PARKMATE_QUEUE_SECONDS the oldest waiter may wait before slots go to
# the newest waiter first.
LIFO_AFTER_SHARE = 0.5
_RENEWAL = re.compile(r"/api/v1/bookings/[^/]+/renew")


def urgent(method: str, path: str) -> bool:
    """Whether a request goes before every other waiting one: a booking's renewal
    (`POST /api/v1/bookings/{id}/renew`, see the module's docstring)."""
    return method == "POST" and _RENEWAL.fullmatch(path) is not None


def lifo_after(queue_seconds: float) -> float:
    """Seconds the oldest waiter may wait before the newest goes first: half the bound."""
    return queue_seconds * LIFO_AFTER_SHARE


def retry_after_seconds(queue_seconds: float) -> int:
    """The Retry-After of the api's 503 answers (whole seconds, at least 1): the wait a
    request may spend queueing, rounded up."""
    return max(1, math.ceil(queue_seconds))


class _Waiter:
    __slots__ = ("since", "turn")

    def __init__(self, turn: asyncio.Future[bool], since: float):
        self.turn = turn
        self.since = since  # loop time (seconds) it started waiting


class Slots:
    """At most `limit` holders at once (`limit` >= 1, else ValueError). `release` hands
    a slot directly to a waiter: an urgent one if any waits, else any; within that class
    the oldest, unless the oldest has waited `lifo_after` seconds or more, then the
    newest (adaptive LIFO, see the module's docstring)."""

    def __init__(self, limit: int, lifo_after: float):
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, not {limit}")
        self.limit = limit
        self.lifo_after = lifo_after
        self.in_flight = 0
        # Only requests still waiting, oldest first, urgent ones apart: one that gave up
        # or was cancelled leaves its queue.
        self._urgent: deque[_Waiter] = deque()
        self._others: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return len(self._urgent) + len(self._others)

    async def acquire(self, timeout: float, urgent: bool = False) -> bool:
        """Take a slot: True at once when one is free, else after waiting for one (at
        most `timeout` seconds; 0: no wait); False when none came in time. An `urgent`
        waiter is handed a slot before the others."""
        # No request waits while a slot is free (release hands slots to waiters first),
        # so taking a free slot here never jumps the queue.
        if self.in_flight < self.limit:
            self.in_flight += 1
            return True
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), loop.time())
        queue = self._urgent if urgent else self._others
        queue.append(waiter)
        timer = loop.call_later(timeout, self._give_up, queue, waiter)
        turn = waiter.turn
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.release()  # handed a slot while being cancelled: pass it on
            elif waiter in queue:
                queue.remove(waiter)
            raise
        finally:
            timer.cancel()

    def _give_up(self, queue: deque[_Waiter], waiter: _Waiter) -> None:
        if not waiter.turn.done():
            waiter.turn.set_result(False)
            queue.remove(waiter)

    def release(self) -> None:
        """Give the slot back: to a waiter if any (urgent ones first; in a queue the
        oldest, or the newest once the oldest has waited `lifo_after` s), else free it."""
        now = asyncio.get_running_loop().time()
        for queue in (self._urgent, self._others):
            while queue:
                standing = now - queue[0].since >= self.lifo_after
                waiter = queue.pop() if standing else queue.popleft()
                if not waiter.turn.done():
                    waiter.turn.set_result(True)  # the slot passes on: in_flight unchanged
                    return
        self.in_flight -= 1


class OverloadMiddleware:
    """ASGI middleware: every HTTP request but EXEMPT's holds one of `slots` while it
    runs, waiting at most `queue_seconds` for it; else 503 with Retry-After. `slots` is
    shared by every route of an app (Litestar builds a middleware stack per route)."""

    def __init__(self, app, slots: Slots, queue_seconds: float):
        self.app = app
        self.slots = slots
        self.queue_seconds = queue_seconds
        retry = retry_after_seconds(queue_seconds)
        self.body = msgspec.json.encode(
            {
                "status_code": 503,
                "detail": f"The api is at capacity: {slots.limit} requests were in flight "
                f"and none finished within {queue_seconds:g} s. Retry after {retry} s "
                "(Retry-After), with the same Idempotency-Key for a POST.",
            }
        )
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"retry-after", str(retry).encode()),
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            return await self.app(scope, receive, send)
        API_WAITING.inc()
        try:
            admitted = await self.slots.acquire(
                self.queue_seconds, urgent(scope["method"], scope["path"])
            )
        finally:
            API_WAITING.dec()
        if not admitted:
            API_REJECTED.inc()
            await send({"type": "http.response.start", "status": 503, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.body})
            return
        API_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            API_IN_FLIGHT.dec()
            self.slots.release()

"""One WebSocket's delivery bookkeeping: which seqs it has accounted for, what waits
for a missing predecessor, and the writing of its frames (through the socket's ASGI
send). No NATS or database I/O: the gateway (gateway.py) fetches from the inbox and
calls these methods; the rules are tested on their own (tests/unit/test_ws_connection.py).

The rules (docs/websocket.md, "Seq, resume and gaps"):

- Nothing is sent before `hello`; what arrives meanwhile waits and is sent after it,
  so `hello` is always the first frame.
- `last_seq` is the highest seq accounted for on this connection: sent, or withheld
  because it was silent (muted, quiet hours). Seqs in (`floor`, `last_seq`] are all
  accounted for; `floor` starts at the seq told in `hello` and moves down when a
  replay (`after_seq`, `resume`) sends older ones. A seq in that range is never sent
  again, so a connection gets each seq at most once.
- A live notification whose predecessor has not arrived waits in `pending`; the
  gateway fills the gap from the inbox. While the gateway fetches (`busy`), live ones
  wait too, and those the fetch already covered are dropped.
- Unread counts carry the inbox `version`; a count older than one already sent is
  never sent. A live notification frame carries the count that came with it
  (`unread_count`), so a new notification costs one frame, not two.
"""

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any

import msgspec

from services.contracts import notifier as n

CLOSE_TRY_AGAIN = 1013  # too slow to read its frames, or the inbox could not fill a gap

_encoder = msgspec.json.Encoder()


async def _resume(step: Coroutine, waiting_on: Any) -> None:
    """Run coroutine `step`, started by hand and suspended on the asyncio future
    `waiting_on`, to its end, resuming it as asyncio.Task does: once what it waits for
    is done, send it None."""
    while True:
        if isinstance(waiting_on, asyncio.Future):
            waiting_on._asyncio_future_blocking = False
            await asyncio.wait([waiting_on])
        else:  # a bare `yield` (asyncio.sleep(0)): just let the loop run once
            await asyncio.sleep(0)
        try:
            waiting_on = step.send(None)
        except StopIteration:
            return


def _current_task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop (a close from a plain callback in tests)
        return None


class Connection:
    """One socket of `user_id` (with the token's `roles`); `queue_size` frames may wait
    to be written before the socket counts as too slow and is closed with 1013. `send`
    is the socket's ASGI send callable (None in tests that only look at the queue)."""

    __slots__ = (
        "alive",
        "asgi_send",
        "busy",
        "close_code",
        "closed",
        "count_version",
        "early",
        "early_count",
        "floor",
        "gap_task",
        "last_seq",
        "lot_topics",
        "missed_pings",
        "next_ping",
        "pending",
        "queue",
        "queue_size",
        "reader",
        "ready",
        "roles",
        "sync",
        "topics",
        "user_id",
        "withheld",
        "writer",
    )

    def __init__(
        self,
        user_id: str,
        queue_size: int,
        send: Any = None,
        lot_topics: Any = None,
        roles: list[str] | None = None,
    ) -> None:
        self.user_id = user_id
        self.roles = roles or []
        self.asgi_send = send
        self.lot_topics = lot_topics
        self.queue_size = queue_size
        self.queue: deque[bytes] = deque()
        self.writer: asyncio.Task | None = None  # writes the queue while it is not empty
        self.ready = False  # `hello` was queued
        self.busy = True  # a fetch is under way (hello's counts as one)
        self.early: list[Any] = []  # frames that came before `hello`, sent after it
        self.early_count: tuple[int, int] | None = None  # newest (count, version) before it
        self.pending: dict[int, n.LiveNotification] = {}
        self.withheld: set[int] = set()  # silent seqs accounted for but not sent
        self.last_seq = 0
        self.floor = 0
        self.count_version = -1
        self.sync = asyncio.Lock()  # one inbox fetch at a time
        self.gap_task: asyncio.Task | None = None
        self.alive = True  # a frame arrived since the last ping
        self.missed_pings = 0
        self.next_ping = 0.0  # loop time of the next ping (set at `hello`)
        self.closed = False
        self.reader: asyncio.Task | None = None  # the task reading client frames
        self.close_code = 1000
        self.topics: set[str] = set()  # lot ids this socket watches (see topics.py)

    # ----- the send queue -----

    def send(self, frame: Any) -> None:
        """Queue a frame (before `hello`: keep it for after); a full queue means a slow
        reader: close with 1013, never skip a frame."""
        if self.closed:
            return
        if not self.ready:
            self.early.append(frame)
            return
        if len(self.queue) >= self.queue_size:
            self.close(CLOSE_TRY_AGAIN)
            return
        self.queue.append(_encoder.encode(frame))
        if self.writer is None and self.asgi_send is not None:
            self._write_now()

    def close(self, code: int) -> None:
        """Mark the connection closed with `code` (the first code wins) and stop
        reading client frames."""
        if not self.closed:
            self.close_code = code
            self.closed = True
            reader = self.reader
            if reader is not None and reader is not _current_task():
                reader.cancel()

    def _write_now(self) -> None:
        """Write queued frames here and now, as long as the socket takes them without
        waiting; when one has to wait (the peer reads slowly and the transport paused
        writing), a task finishes it and the rest of the queue.

        Why not a task per frame or a writer task per socket: a frame is written while
        the live message that caused it is handled, with no task to create or wake (the
        profile of 1,000 sockets put 6% of the api's CPU in create_task alone), and an
        idle socket holds no task. Starting the ASGI send coroutine by hand is what
        Python 3.12's eager tasks do; `_resume` continues it exactly as a task would.
        """
        while self.queue and self.writer is None and self.close_code != CLOSE_TRY_AGAIN:
            text = self.queue.popleft().decode()
            step = self.asgi_send({"type": "websocket.send", "text": text})
            try:
                waiting_on = step.send(None)
            except StopIteration:
                continue
            except Exception:  # the peer is gone; the reader sees the disconnect
                self.queue.clear()
                self.close(self.close_code)
                return
            self.writer = asyncio.get_running_loop().create_task(
                self._finish_writing(step, waiting_on)
            )

    async def _finish_writing(self, step: Coroutine, waiting_on: Any) -> None:
        """Finish the send `step` that suspended on `waiting_on`, then write the queue.
        What is queued at a close still goes out (an `error` frame saying why, say),
        except after 1013: that reader is too slow, so it resumes from the inbox."""
        try:
            await _resume(step, waiting_on)
            while self.queue and self.close_code != CLOSE_TRY_AGAIN:
                text = self.queue.popleft().decode()
                await self.asgi_send({"type": "websocket.send", "text": text})
        except Exception:  # the peer is gone; the reader sees the disconnect
            self.queue.clear()
            self.close(self.close_code)
        finally:
            self.writer = None

    async def flushed(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the queued frames to be written."""
        writer = self.writer
        if writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(writer), timeout)
            except TimeoutError:
                writer.cancel()

    # ----- hello -----

    def greet(self, summary: n.InboxSummary) -> None:
        """Queue `hello` (the first frame), then what arrived before it."""
        self.last_seq = max(self.last_seq, summary.last_seq)
        self.floor = summary.last_seq
        self.count_version = max(self.count_version, summary.version)
        self.ready = True
        self.send(
            {
                "type": "hello",
                "user_id": self.user_id,
                "unread_count": summary.unread_count,
                "last_seq": summary.last_seq,
            }
        )
        early, self.early = self.early, []
        for frame in early:
            self.send(frame)
        if self.early_count is not None:
            self.count(*self.early_count)
            self.early_count = None

    # ----- live messages -----

    def live(self, message: n.Live) -> None:
        """A message from notify.user.<id>."""
        if isinstance(message, n.LiveNotification):
            seq = message.notification.seq
            if seq > self.last_seq:
                self.pending[seq] = message
                if not self.busy:
                    self.drain()
            elif message.unread_count is not None:
                self.count(message.unread_count, message.version)
        elif isinstance(message, n.LiveUnreadCount):
            self.count(message.count, message.version)
        else:
            self.send(message)

    def count(self, count: int, version: int, always: bool = False) -> None:
        """Send `unread_count` unless a newer version was sent already (`always`: the
        answer to get_unread_count). Before `hello`, the newest one waits for it."""
        if not self.ready:
            if self.early_count is None or version > self.early_count[1]:
                self.early_count = (count, version)
            return
        if always or version > self.count_version:
            self.count_version = max(self.count_version, version)
            self.send({"type": "unread_count", "count": count})

    def drain(self) -> bool:
        """Send the pending notifications whose predecessors are all accounted for;
        drop those already covered. True when a gap remains (the gateway fills it)."""
        for seq in [s for s in self.pending if s <= self.last_seq]:
            stale = self.pending.pop(seq)
            if stale.unread_count is not None:
                self.count(stale.unread_count, stale.version)
        while (message := self.pending.pop(self.last_seq + 1, None)) is not None:
            self.last_seq += 1
            count = message.unread_count
            newer = count is not None and message.version > self.count_version
            if newer:
                self.count_version = message.version
            if message.push:
                frame: dict[str, Any] = {
                    "type": "notification",
                    "notification": message.notification,
                }
                if newer:
                    frame["unread_count"] = count
                self.send(frame)
            else:
                self.withheld.add(self.last_seq)
                if newer:
                    self.send({"type": "unread_count", "count": count})
        return bool(self.pending)

    def first_missing(self) -> tuple[int, int] | None:
        """(after, up_to): the seqs a gap fill must fetch, or None when there is no gap."""
        if not self.pending:
            return None
        return self.last_seq, min(self.pending) - 1

    # ----- what the gateway fetched from the inbox -----

    def filled(self, items: list[n.Notification], up_to: int | None = None) -> None:
        """Account for notifications fetched to fill a gap or catch up (all with seq >
        `last_seq` are new here): pushed ones are sent, silent ones withheld as live.
        `up_to`: the fetch covered every seq up to it (deleted ones included)."""
        for item in items:
            if item.seq <= self.last_seq:
                continue
            self.last_seq = item.seq
            if item.silent:
                self.withheld.add(item.seq)
            else:
                self.send({"type": "notification", "notification": item})
        if up_to is not None:
            self.last_seq = max(self.last_seq, up_to)

    def replayed(self, items: list[n.Notification], after_seq: int) -> None:
        """Account for a replay of every notification after `after_seq` (`resume` or
        ?after_seq): send each one this connection has not sent, silent ones too
        (flagged `silent`), in seq order."""
        for item in items:
            already = self.floor < item.seq <= self.last_seq and item.seq not in self.withheld
            if already:
                continue
            self.withheld.discard(item.seq)
            self.last_seq = max(self.last_seq, item.seq)
            self.send({"type": "notification", "notification": item})
        self.floor = min(self.floor, after_seq)

    def finish_fetch(self) -> bool:
        """End a fetch: live ones that waited are sent. True when a gap remains."""
        self.busy = False
        return self.drain()

"""The live-delivery side of the WebSocket gateway: NATS in, sockets out.

One wildcard subscription on notify.user.* per api process routes each live message
to the sockets of its user here (a dict look-up on the subject; messages of users with
no socket here are dropped before decoding). No NATS request or subscription is made
per socket, so opening one costs nothing on NATS, and any number of api replicas can
run: each receives every live message and keeps those of its own sockets.

Core NATS may drop a message: a slow-consumer cut, a reconnect of our connection or of
the notifier's, a notifier that died between its commit and its publish. The inbox
has every seq, so the gateway repairs from it (docs/websocket.md, "Seq, resume and
gaps"):

- a gap (seq N+2 arrives, N+1 has not after `GAP_WAIT` seconds) is fetched from the
  inbox; a fetch that fails is retried `GAP_TRIES` times, then the socket is closed
  with 1013 so the client resumes: a socket is never skipped past a seq silently;
- a loss that no later message reveals (the last ones before a cut) is caught by a
  catch-up of every socket: after our connection reconnects, after a slow-consumer
  error on our subscription, and when a notifier announces on notify.sync that it
  (re)started or reconnected. One `notifier.inbox.summaries` request per 1,000 users
  tells which sockets are behind; only those fetch, a bounded number at a time.

Also here: the summaries `hello` needs, batched (`summary`: sockets opening together
share one request), and the application heartbeat (one loop pings each socket every
`ping_seconds`, spread over the interval; two unanswered pings close with 4408).
"""

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.api.wsconn import CLOSE_TRY_AGAIN, Connection
from services.contracts import notifier as n
from services.contracts import subjects
from services.runtime.metrics import NOTIFICATION_LATENCY, WS_CATCH_UPS, WS_REPAIRS
from services.runtime.micro import RemoteError, call

log = structlog.get_logger()

CLOSE_HEARTBEAT = 4408  # two pings went unanswered
# The api is shutting down (a rolling update, a scale-in): reconnect with after_seq and
# another replica answers. 1001, not uvicorn's 1012, because docs/websocket.md promised
# 1001 first and clients treat both alike.
CLOSE_GOING_AWAY = 1001
GAP_WAIT = 0.5  # seconds a later seq waits for an earlier one before we fetch it
GAP_TRIES = 4  # inbox fetches for one gap before the socket is closed with 1013
RETRY_BASE = 0.25  # seconds before the second try; doubles each time
RESUME_PAGE = 200  # notifications per inbox page
SUMMARY_BATCH = 1000  # users per notifier.inbox.summaries request
SUMMARY_LINGER = 0.002  # seconds a `hello` summary waits for others to share its request
ACK_BATCH = 1000  # acks per notifier.inbox.ack_batch request
ACK_LINGER = 0.02  # seconds an `ack` waits for others to share its request
HEARTBEAT_TICKS = 20  # the heartbeat wakes this many times per ping interval
CATCH_UP_CONCURRENCY = 16  # sockets fetching from the inbox at once during a catch-up
# A live message is small; these bound memory, not throughput: past them NATS drops and
# the catch-up repairs (see `on_slow_consumer`).
SUB_PENDING_MSGS = 1_000_000
SUB_PENDING_BYTES = 512 * 1024 * 1024

_live_decoder = msgspec.json.Decoder(n.Live)
_latency = NOTIFICATION_LATENCY.labels("gateway")


class Gateway:
    """Routes notify.user.<id> messages to that user's sockets in this process, and
    repairs what the live path lost from the inbox."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.users: dict[str, set[Connection]] = {}
        self.sub: Subscription | None = None
        self._catch_up: asyncio.Task | None = None
        self._catch_up_again = False
        self._tasks: set[asyncio.Task] = set()
        self.closing: int | None = None  # the close code once close_sockets was called
        self._summaries_wanted: dict[str, list[asyncio.Future]] = {}
        self._summaries_timer: asyncio.TimerHandle | None = None
        self._acks: list[tuple[Connection, int]] = []
        self._acks_timer: asyncio.TimerHandle | None = None

    # ----- lifecycle -----

    async def start(self, ping_seconds: float) -> None:
        """Subscribe to every user's live subject and to notify.sync (the server knows
        both before this returns, so a `hello` read after it misses nothing), and start
        pinging sockets every `ping_seconds`."""
        self.sub = await self.nc.subscribe(
            subjects.NOTIFY_USER_WILDCARD,
            cb=self._deliver,
            pending_msgs_limit=SUB_PENDING_MSGS,
            pending_bytes_limit=SUB_PENDING_BYTES,
        )
        await self.nc.subscribe(subjects.NOTIFY_SYNC, cb=self._on_sync)
        await self.nc.flush()
        self._spawn(self.heartbeat(ping_seconds))

    def close_sockets(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Close every socket with `code`, and every socket attached from now on as soon
        as it is: the api is draining (entrypoints.py) and its clients should resume on
        another replica."""
        self.closing = code
        for conns in list(self.users.values()):
            for conn in list(conns):
                conn.close(code)

    async def close_all(self) -> None:
        """Close every socket with 1001 (the server is going away) and stop the
        gateway's own tasks (the heartbeat, catch-ups)."""
        self.close_sockets(CLOSE_GOING_AWAY)
        for task in list(self._tasks):
            task.cancel()

    def attach(self, conn: Connection) -> None:
        """From now on live messages of `conn.user_id` reach `conn` (it buffers them
        until `hello`). Once the gateway is closing, `conn` is closed at once."""
        self.users.setdefault(conn.user_id, set()).add(conn)
        if self.closing is not None:
            conn.close(self.closing)

    def detach(self, conn: Connection) -> None:
        conns = self.users.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.users[conn.user_id]
        if conn.gap_task is not None:
            conn.gap_task.cancel()

    def connections(self) -> Iterable[Connection]:
        for conns in list(self.users.values()):
            yield from list(conns)

    # ----- live messages -----

    async def _deliver(self, msg: Msg) -> None:
        conns = self.users.get(msg.subject[len(subjects.NOTIFY_USER_PREFIX) :])
        if not conns:
            return
        try:
            message = _live_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("undecodable live message", subject=msg.subject)
            return
        for conn in list(conns):
            conn.live(message)
            if conn.pending and not conn.busy:
                self.watch_gap(conn)
        if isinstance(message, n.LiveNotification):
            # Frames are written as they are queued unless a socket reads slowly, so
            # this is when the user's sockets got it. Clocks of two hosts: never < 0.
            age = datetime.now(UTC) - message.notification.created_at
            _latency.observe(max(0.0, age.total_seconds()))

    def watch_gap(self, conn: Connection) -> None:
        """Fill `conn`'s gap from the inbox unless its predecessor arrives in time."""
        if conn.gap_task is None and not conn.closed:
            conn.gap_task = self._spawn(self._fill_gap(conn))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ----- repairs from the inbox -----

    async def fetch(
        self, user_id: str, after_seq: int, up_to: int | None = None
    ) -> list[n.Notification]:
        """`user_id`'s notifications with seq > `after_seq` (and <= `up_to`), every
        page, ascending. Raises RemoteError when the inbox does not answer."""
        out: list[n.Notification] = []
        while True:
            page = await call(
                self.nc,
                subjects.NOTIFIER_INBOX_LIST,
                n.InboxAfterRequest(
                    user_id=user_id, after_seq=after_seq, limit=RESUME_PAGE, up_to_seq=up_to
                ),
                n.NotificationList,
            )
            out += page.items
            if len(page.items) < RESUME_PAGE and not page.more:
                return out
            after_seq = page.items[-1].seq

    async def _fill_gap(self, conn: Connection) -> None:
        """After GAP_WAIT, fetch the seqs still missing below the lowest pending one."""
        await asyncio.sleep(GAP_WAIT)
        conn.gap_task = None
        await self._fill(conn, "gap", conn.first_missing)

    async def catch_up(self, conn: Connection, head: int) -> None:
        """Send `conn` every pushed notification after its `last_seq` up to `head` (a
        head the inbox reported; later ones arrive live)."""
        await self._fill(
            conn, "catch_up", lambda: (conn.last_seq, head) if conn.last_seq < head else None
        )

    async def _fill(
        self, conn: Connection, kind: str, span: Callable[[], tuple[int, int] | None]
    ) -> None:
        """Fetch the seqs in `span()` = (after, up_to] from the inbox into `conn`, live
        ones waiting meanwhile; `span` is read under the connection's lock, and None
        means nothing is missing any more. `kind` labels the repair metric."""
        async with conn.sync:
            missing = span()
            if missing is None or conn.closed:
                return
            after, up_to = missing
            conn.busy = True
            try:
                items = await self._with_retries(
                    conn, lambda: self.fetch(conn.user_id, after, up_to)
                )
                if items is not None:
                    WS_REPAIRS.labels(kind).inc()
                    conn.filled(items, up_to)
            finally:
                gap_left = conn.finish_fetch()
        if gap_left:
            self.watch_gap(conn)

    async def _with_retries(self, conn: Connection, fetch):
        """`await fetch()`, tried GAP_TRIES times with backoff; when every try fails,
        close the socket with 1013 and return None."""
        delay = RETRY_BASE
        for attempt in range(GAP_TRIES):
            try:
                return await fetch()
            except RemoteError as e:
                if attempt == GAP_TRIES - 1 or conn.closed:
                    log.warning(
                        "inbox fetch failed; closing the socket so the client resumes",
                        user_id=conn.user_id,
                        code=e.code,
                    )
                    WS_REPAIRS.labels("failed").inc()
                    conn.close(CLOSE_TRY_AGAIN)
                    return None
                await asyncio.sleep(delay)
                delay *= 2
        return None

    def catch_up_all(self, reason: str) -> None:
        """Check every socket here against the inbox (in the background); one run at a
        time, and one more when asked again meanwhile. `reason`: reconnected,
        slow_consumer or notifier_sync (a metric label)."""
        log.info("catching up every socket from the inbox", reason=reason)
        WS_CATCH_UPS.labels(reason).inc()
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up_again = True
            return
        self._catch_up = self._spawn(self._catch_up_loop())

    async def _catch_up_loop(self) -> None:
        while True:
            self._catch_up_again = False
            await self._catch_up_once()
            if not self._catch_up_again:
                return

    async def _catch_up_once(self) -> None:
        user_ids = [u for u, conns in self.users.items() if any(c.ready for c in conns)]
        limit = asyncio.Semaphore(CATCH_UP_CONCURRENCY)

        async def one(conn: Connection, summary: n.InboxSummary) -> None:
            async with limit:
                await self.catch_up(conn, summary.last_seq)
            conn.count(summary.unread_count, summary.version)

        jobs = []
        for start in range(0, len(user_ids), SUMMARY_BATCH):
            batch = user_ids[start : start + SUMMARY_BATCH]
            summaries = await self._summaries_until_answered(batch)
            for user_id, summary in zip(batch, summaries, strict=True):
                for conn in list(self.users.get(user_id, ())):
                    if conn.ready:
                        jobs.append(one(conn, summary))
        await asyncio.gather(*jobs)
        log.info("checked every socket against the inbox", users=len(user_ids))

    async def _summaries_until_answered(self, user_ids: list[str]) -> list[n.InboxSummary]:
        """Summaries of `user_ids`, retried (backoff up to 5 s) until the notifier
        answers: a catch-up usually follows an outage."""
        delay = RETRY_BASE
        while True:
            try:
                return await self._summaries(user_ids)
            except RemoteError as e:
                log.warning("inbox summaries unavailable; retrying", code=e.code)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _summaries(self, user_ids: list[str]) -> list[n.InboxSummary]:
        reply = await call(
            self.nc,
            subjects.NOTIFIER_INBOX_SUMMARIES,
            n.InboxSummariesRequest(user_ids=user_ids),
            n.InboxSummaries,
        )
        return reply.items

    # ----- hello's summary, batched -----

    async def summary(self, user_id: str) -> n.InboxSummary:
        """`user_id`'s unread count, last seq and inbox version, read after the call.

        Sockets that open within SUMMARY_LINGER seconds of each other share one
        notifier.inbox.summaries request (10,000 sockets opening at once cost tens of
        requests, not 10,000). Raises RemoteError when the inbox does not answer.
        """
        future = asyncio.get_running_loop().create_future()
        self._summaries_wanted.setdefault(user_id, []).append(future)
        if len(self._summaries_wanted) >= SUMMARY_BATCH:
            self._send_summaries()
        elif self._summaries_timer is None:
            self._summaries_timer = asyncio.get_running_loop().call_later(
                SUMMARY_LINGER, self._send_summaries
            )
        return await future

    def _send_summaries(self) -> None:
        if self._summaries_timer is not None:
            self._summaries_timer.cancel()
            self._summaries_timer = None
        wanted, self._summaries_wanted = self._summaries_wanted, {}
        if wanted:
            self._spawn(self._answer_summaries(wanted))

    async def _answer_summaries(self, wanted: dict[str, list[asyncio.Future]]) -> None:
        try:
            summaries = await self._summaries(list(wanted))
        except RemoteError as e:
            for futures in wanted.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(e)
            return
        for futures, summary in zip(wanted.values(), summaries, strict=True):
            for future in futures:
                if not future.done():
                    future.set_result(summary)

    # ----- acks, batched -----

    def ack(self, conn: Connection, seq: int) -> None:
        """Record that `conn` received `seq` (the inbox's delivered_at). Acks of every
        socket within ACK_LINGER seconds share one notifier.inbox.ack_batch request:
        sockets ack every frame, so one request and one statement per ack would cost as
        much as the delivery itself. An unknown seq gets a `not_found` error frame, an
        unanswered request an `unavailable` one, on the socket that sent the ack."""
        self._acks.append((conn, seq))
        if len(self._acks) >= ACK_BATCH:
            self._send_acks()
        elif self._acks_timer is None:
            self._acks_timer = asyncio.get_running_loop().call_later(ACK_LINGER, self._send_acks)

    def _send_acks(self) -> None:
        if self._acks_timer is not None:
            self._acks_timer.cancel()
            self._acks_timer = None
        acks, self._acks = self._acks, []
        if acks:
            self._spawn(self._record_acks(acks))

    async def _record_acks(self, acks: list[tuple[Connection, int]]) -> None:
        request = n.AckBatch(items=[n.AckRequest(conn.user_id, seq) for conn, seq in acks])
        try:
            result = await call(
                self.nc, subjects.NOTIFIER_INBOX_ACK_BATCH, request, n.AckBatchResult
            )
        except RemoteError as e:
            log.warning("acks not recorded", code=e.code, acks=len(acks))
            detail = "The inbox is unavailable; your acks were not recorded, send them again."
            for conn in dict.fromkeys(conn for conn, _ in acks):
                conn.send({"type": "error", "code": "unavailable", "detail": detail})
            return
        for k in result.missing:
            conn, seq = acks[k]
            conn.send(
                {
                    "type": "error",
                    "code": "not_found",
                    "detail": f"No notification with seq {seq} in your inbox.",
                }
            )

    # ----- what tells us the live path may have lost something -----

    async def on_reconnected(self) -> None:
        """Our NATS connection came back: whatever was published meanwhile is lost."""
        self.catch_up_all("reconnected")

    def on_slow_consumer(self, sub: Subscription) -> None:
        """The client library dropped a message of `sub` (its queue was full)."""
        if sub is self.sub:
            self.catch_up_all("slow_consumer")

    async def _on_sync(self, msg: Msg) -> None:
        self.catch_up_all("notifier_sync")

    # ----- heartbeat -----

    async def heartbeat(self, interval: float) -> None:
        """Ping each socket every `interval` seconds, counted from its `hello`; one that
        has sent nothing since its previous ping misses it, and two misses in a row
        close it with 4408. The loop wakes HEARTBEAT_TICKS times per interval, so pings
        are spread rather than sent to every socket at once."""
        tick = interval / HEARTBEAT_TICKS
        while True:
            await asyncio.sleep(tick)
            now = asyncio.get_running_loop().time()
            for conn in self.connections():
                if not conn.ready or now < conn.next_ping:
                    continue
                conn.next_ping = now + interval
                conn.missed_pings = 0 if conn.alive else conn.missed_pings + 1
                if conn.missed_pings >= 2:
                    conn.close(CLOSE_HEARTBEAT)
                    continue
                conn.alive = False
                conn.send({"type": "ping"})

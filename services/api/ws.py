"""The WebSocket gateway: GET /ws (CONTRACT.md section 4, README "WebSocket protocol").

One NATS subscription on notify.user.<id> per connected user per process, shared by
all that user's sockets here and dropped with the last one; nothing else is kept per
user, so any number of api replicas can run. Every socket has a bounded send queue and
its own sender task: a slow reader is disconnected (1013) without stalling the others.

Notification frames carry the inbox `seq`, and a socket sends them in seq order, never
twice. Every stored notification is published live (silenced ones with `push` false),
so the gateway sees every seq: it holds back a seq that arrives before its
predecessor, and if the predecessor has not arrived after `GAP_WAIT` seconds (lost on
the way, or its publisher died after the commit) fetches it from the inbox. While the
greeting or a `resume` replay is being sent, live ones are held back too, then
flushed, dropping any seq already sent. Unread counts carry the inbox version and an
older one never overwrites a newer one.

Also per socket: an application heartbeat (`ping` every `ws_ping_seconds`; two missed
answers close with 4408), a rate limit on client frames (error `rate_limited`, then
1008), and a close with 4401 when the token expires.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.api import identity
from services.api.auth import bearer_token
from services.api.topics import LotTopics
from services.api.wslimits import RateLimit, Verdict
from services.contracts import notifier as n
from services.contracts import subjects
from services.runtime.metrics import WEBSOCKETS
from services.runtime.micro import RemoteError, call

log = structlog.get_logger()

CLOSE_UNAUTHORIZED = 4401  # missing, bad or expired token
CLOSE_HEARTBEAT = 4408  # two pings went unanswered
CLOSE_POLICY = 1008  # kept sending faster than the rate limit
CLOSE_TOO_BIG = 1009  # a frame over MAX_FRAME (enforced by the server, see entrypoints)
CLOSE_TRY_AGAIN = 1013  # too slow to read its frames, or the inbox did not answer
MAX_FRAME = 64 * 1024
RESUME_PAGE = 200
GAP_WAIT = 0.5  # seconds a later seq waits for an earlier one before we fetch it

_encoder = msgspec.json.Encoder()


class ClientFrame(msgspec.Struct, kw_only=True):
    """Any client frame; fields used depend on `type`."""

    type: str
    after_seq: int | None = None
    id: str | None = None
    seq: int | None = None
    topic: str | None = None


_client_decoder = msgspec.json.Decoder(ClientFrame)
_live_decoder = msgspec.json.Decoder(n.Live)


def _error(code: str, detail: str) -> dict[str, str]:
    return {"type": "error", "code": code, "detail": detail}


class Connection:
    """One socket: its send queue, the seq and count bookkeeping, liveness.

    `last_seq` is the highest seq accounted for on this socket (sent, or known to be
    silent). Live notifications wait in `pending` until every lower seq is accounted
    for; `on_gap` is called when one waits for a missing predecessor.
    """

    def __init__(
        self,
        socket: WebSocket | None,
        user_id: str,
        queue_size: int,
        lot_topics: LotTopics | None = None,
        on_gap: Callable[[], None] | None = None,
    ):
        self.socket = socket
        self.user_id = user_id
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_size)
        self.buffering = True  # until the greeting or a replay is sent
        self.pending: dict[int, n.LiveNotification] = {}
        self.last_seq = 0
        self.hello_seq = 0  # last_seq told in `hello`: later seqs are sent live
        self.count_version = -1
        self.sync = asyncio.Lock()  # one replay or gap fill at a time
        self.on_gap = on_gap
        self.gap_pending = False
        self.alive = True  # a frame arrived since the last ping
        self.closed = asyncio.Event()
        self.close_code = 1000
        self.topics: set[str] = set()  # lot ids this socket watches (see topics.py)
        self.lot_topics = lot_topics

    def send(self, frame: Any) -> None:
        """Queue a frame; a full queue means a slow reader: close it."""
        if self.closed.is_set():
            return
        try:
            self.queue.put_nowait(_encoder.encode(frame))
        except asyncio.QueueFull:
            self.close(CLOSE_TRY_AGAIN)

    def live(self, message: n.Live) -> None:
        """A message from notify.user.<id>."""
        if isinstance(message, n.LiveNotification):
            if message.notification.seq > self.last_seq:
                self.pending[message.notification.seq] = message
                if not self.buffering:
                    self.drain()
            if message.unread_count is not None:
                self.count(message.unread_count, message.version)
        elif isinstance(message, n.LiveUnreadCount):
            self.count(message.count, message.version)
        else:
            self.send(message)

    def count(self, count: int, version: int, always: bool = False) -> None:
        """Send `unread_count` unless a newer version was sent already (`always`: the
        answer to get_unread_count)."""
        if always or version > self.count_version:
            self.count_version = max(self.count_version, version)
            self.send({"type": "unread_count", "count": count})

    def drain(self) -> None:
        """Send pending notifications whose predecessors are all accounted for."""
        for seq in [s for s in self.pending if s <= self.last_seq]:
            del self.pending[seq]
        while self.last_seq + 1 in self.pending:
            message = self.pending.pop(self.last_seq + 1)
            self.last_seq += 1
            if message.push:
                self.send({"type": "notification", "notification": message.notification})
        if self.pending and not self.gap_pending and self.on_gap is not None:
            self.gap_pending = True
            self.on_gap()

    def replayed(self, notifications: list[n.Notification], silent_too: bool = True) -> None:
        """Send notifications fetched from the inbox, skipping seqs this connection has
        already accounted for since `hello` (a replay sends silent ones too, flagged; a
        gap fill only those that were pushed live)."""
        for item in notifications:
            if self.hello_seq < item.seq <= self.last_seq:
                continue
            self.last_seq = max(self.last_seq, item.seq)
            if silent_too or not item.silent:
                self.send({"type": "notification", "notification": item})

    def flush(self) -> None:
        """End buffering: send what arrived meanwhile, skipping seqs already sent."""
        self.buffering = False
        self.drain()

    def close(self, code: int) -> None:
        if not self.closed.is_set():
            self.close_code = code
            self.closed.set()
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)


class Gateway:
    """Routes notify.user.<id> messages to that user's sockets in this process."""

    def __init__(self, nc: Client):
        self.nc = nc
        self.users: dict[str, tuple[Any, set[Connection]]] = {}
        self._lock = asyncio.Lock()

    async def attach(self, conn: Connection) -> None:
        async with self._lock:
            entry = self.users.get(conn.user_id)
            if entry is None:
                sub = await self.nc.subscribe(
                    subjects.notify_user_subject(conn.user_id), cb=self._deliver
                )
                # The server must know the subscription before `hello` reads the inbox,
                # or a notification committed in between could miss this socket.
                await self.nc.flush()
                entry = (sub, set())
                self.users[conn.user_id] = entry
            entry[1].add(conn)

    async def detach(self, conn: Connection) -> None:
        async with self._lock:
            entry = self.users.get(conn.user_id)
            if entry is None:
                return
            entry[1].discard(conn)
            if not entry[1]:
                del self.users[conn.user_id]
                with contextlib.suppress(Exception):
                    await entry[0].unsubscribe()

    async def _deliver(self, msg: Msg) -> None:
        user_id = msg.subject[len(subjects.NOTIFY_USER_PREFIX) :]
        entry = self.users.get(user_id)
        if entry is None:
            return
        try:
            message = _live_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("undecodable live message", subject=msg.subject)
            return
        for conn in list(entry[1]):
            conn.live(message)

    async def close_all(self) -> None:
        for _, conns in list(self.users.values()):
            for conn in list(conns):
                conn.close(1001)


async def _sender(conn: Connection) -> None:
    while True:
        frame = await conn.queue.get()
        if frame is None:
            return
        await conn.socket.send_text(frame.decode())


async def _fetch(
    conn: Connection, nc: Client, after_seq: int, up_to: int | None = None
) -> list[n.Notification]:
    """The user's notifications after `after_seq` (to `up_to`), all pages, ascending."""
    out: list[n.Notification] = []
    while True:
        page = await call(
            nc,
            subjects.NOTIFIER_INBOX_LIST,
            n.InboxAfterRequest(
                user_id=conn.user_id, after_seq=after_seq, limit=RESUME_PAGE, up_to_seq=up_to
            ),
            n.NotificationList,
        )
        out += page.items
        if len(page.items) < RESUME_PAGE:
            return out
        after_seq = page.items[-1].seq


async def _replay(conn: Connection, nc: Client, after_seq: int) -> None:
    async with conn.sync:
        conn.buffering = True
        try:
            conn.replayed(await _fetch(conn, nc, after_seq))
        finally:
            conn.flush()


async def _fill_gap(conn: Connection, nc: Client) -> None:
    """After GAP_WAIT, fetch from the inbox the seqs still missing below the lowest
    pending one, send those that were pushed live, then go on in order."""
    await asyncio.sleep(GAP_WAIT)
    async with conn.sync:
        conn.gap_pending = False
        if conn.closed.is_set() or not conn.pending:
            return
        first = min(conn.pending)
        if first > conn.last_seq + 1:
            conn.buffering = True
            try:
                items = await _fetch(conn, nc, conn.last_seq, first - 1)
                conn.replayed(items, silent_too=False)
                conn.last_seq = max(conn.last_seq, first - 1)  # deleted ones included
            except RemoteError:
                log.warning("gap fill failed; the client can resume", user_id=conn.user_id)
                conn.last_seq = max(conn.last_seq, first - 1)
            finally:
                conn.flush()
        else:
            conn.drain()


async def _call_and_report(conn: Connection, coro) -> Any:
    """Await a notifier request; its error goes back as an error frame (None returned)."""
    try:
        return await coro
    except RemoteError as e:
        if e.code == "unavailable":
            conn.send(
                _error("unavailable", "The inbox is unavailable; retry or resume in a moment.")
            )
        else:
            conn.send(_error(e.code, e.detail))
        return None


async def _handle_frame(conn: Connection, nc: Client, raw: str) -> None:
    try:
        frame = _client_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        conn.send(_error("bad_frame", f"Frames are JSON objects with a string `type`: {e}"))
        return
    kind = frame.type
    if kind == "ping":
        conn.send({"type": "pong"})
    elif kind == "pong":
        pass  # liveness is recorded for every frame
    elif kind == "resume":
        if frame.after_seq is None or frame.after_seq < 0:
            conn.send(
                _error("bad_frame", "resume needs after_seq, an integer >= 0 (0 for everything).")
            )
            return
        await _call_and_report(conn, _replay(conn, nc, frame.after_seq))
    elif kind == "get_unread_count":
        summary = await _call_and_report(
            conn,
            call(
                nc,
                subjects.NOTIFIER_INBOX_SUMMARY,
                n.InboxSummaryRequest(user_id=conn.user_id),
                n.InboxSummary,
            ),
        )
        if summary is not None:
            conn.count(summary.unread_count, summary.version, always=True)
    elif kind == "mark_read":
        if not frame.id:
            conn.send(_error("bad_frame", "mark_read needs id, the notification's id."))
            return
        await _call_and_report(
            conn,
            call(
                nc,
                subjects.NOTIFIER_INBOX_READ,
                n.NotificationRef(user_id=conn.user_id, id=frame.id),
                n.Notification,
            ),
        )
    elif kind == "mark_all_read":
        await _call_and_report(
            conn,
            call(nc, subjects.NOTIFIER_INBOX_READ_ALL, n.UserRef(user_id=conn.user_id), n.Changed),
        )
    elif kind == "ack":
        if frame.seq is None or frame.seq < 1:
            conn.send(_error("bad_frame", "ack needs seq, the notification's seq (>= 1)."))
            return
        await _call_and_report(
            conn,
            call(
                nc,
                subjects.NOTIFIER_INBOX_ACK,
                n.AckRequest(user_id=conn.user_id, seq=frame.seq),
                n.Acked,
            ),
        )
    elif kind in ("subscribe", "unsubscribe") and conn.lot_topics is not None:
        await conn.lot_topics.handle(conn, kind, frame.topic)
    else:
        conn.send(
            _error(
                "unknown_type",
                f"Unknown frame type {kind!r}; see the README's WebSocket protocol section.",
            )
        )


async def _heartbeat(conn: Connection, interval: float) -> None:
    """Ping every `interval` seconds; close with 4408 after two unanswered pings."""
    missed = 0
    while not conn.closed.is_set():
        await asyncio.sleep(interval)
        missed = 0 if conn.alive else missed + 1
        if missed >= 2:
            conn.close(CLOSE_HEARTBEAT)
            return
        conn.alive = False
        conn.send({"type": "ping"})


async def _receive(conn: Connection, nc: Client, limit: RateLimit) -> None:
    last_warning = -1.0
    try:
        while not conn.closed.is_set():
            raw = await conn.socket.receive_text()
            conn.alive = True
            now = time.monotonic()
            verdict = limit.check(now)
            if verdict is Verdict.CLOSE:
                conn.close(CLOSE_POLICY)
                return
            if verdict is Verdict.DROP:
                if now - last_warning >= 1.0:
                    last_warning = now
                    conn.send(
                        _error(
                            "rate_limited",
                            f"More than {limit.rate:g} frames per second: frames are being "
                            "dropped; slow down or the socket is closed (1008).",
                        )
                    )
                continue
            await _handle_frame(conn, nc, raw)
    except WebSocketDisconnect:
        conn.close(1000)


def _after_seq_param(value: str | None) -> int | None:
    """?after_seq=N (an integer >= 0) or None when absent or not one."""
    if value is None or not value.isdigit():
        return None
    return int(value)


@websocket("/ws")
async def ws_endpoint(socket: WebSocket) -> None:
    """Authenticate, greet with `hello` (then, with ?after_seq=N, replay every
    notification after N), then relay live ones and answer frames."""
    state = socket.app.state
    settings = state.settings
    await socket.accept()
    token = socket.query_params.get("token") or bearer_token(socket.headers.get("authorization"))
    try:
        if not token:
            raise identity.BadToken("missing token: connect with ?token=<access_token>")
        claims = identity.verify_token(settings.jwt_secret, token)
    except identity.BadToken as e:
        await socket.close(code=CLOSE_UNAUTHORIZED, reason=str(e)[:120])
        return
    after_seq = _after_seq_param(socket.query_params.get("after_seq"))
    gateway: Gateway = state.gateway
    nc: Client = state.nc
    tasks: set[asyncio.Task] = set()

    def spawn(coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    conn = Connection(socket, claims.user_id, settings.ws_send_queue, state.lot_topics)
    conn.on_gap = lambda: spawn(_fill_gap(conn, nc))
    await gateway.attach(conn)
    WEBSOCKETS.inc()
    sender = asyncio.create_task(_sender(conn))
    expiry = asyncio.get_running_loop().call_later(
        max(0.0, claims.exp - time.time()), conn.close, CLOSE_UNAUTHORIZED
    )
    receiver = asyncio.create_task(
        _receive(conn, nc, RateLimit(settings.ws_rate, settings.ws_burst))
    )
    heartbeat = asyncio.create_task(_heartbeat(conn, settings.ws_ping_seconds))
    try:
        try:
            summary = await call(
                nc,
                subjects.NOTIFIER_INBOX_SUMMARY,
                n.InboxSummaryRequest(user_id=conn.user_id),
                n.InboxSummary,
            )
        except RemoteError:
            conn.close(CLOSE_TRY_AGAIN)
        else:
            async with conn.sync:
                conn.hello_seq = summary.last_seq
                conn.last_seq = max(conn.last_seq, summary.last_seq)
                conn.count_version = max(conn.count_version, summary.version)
                conn.send(
                    {
                        "type": "hello",
                        "user_id": conn.user_id,
                        "unread_count": summary.unread_count,
                        "last_seq": summary.last_seq,
                    }
                )
                try:
                    if after_seq is not None:  # ?after_seq=N: the replay before any live one
                        conn.replayed(await _fetch(conn, nc, after_seq))
                except RemoteError:
                    conn.close(CLOSE_TRY_AGAIN)
                finally:
                    conn.flush()
        await asyncio.wait(
            [receiver, asyncio.create_task(conn.closed.wait())], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        expiry.cancel()
        conn.close(conn.close_code)
        for task in (receiver, heartbeat, *tasks):
            task.cancel()
        await gateway.detach(conn)
        await state.lot_topics.detach(conn)
        WEBSOCKETS.dec()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sender, 2.0)
        sender.cancel()
        with contextlib.suppress(Exception):
            await socket.close(code=conn.close_code)
